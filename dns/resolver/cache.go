package resolver

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

const shards = 16

// store is a size-bounded, sharded map. When a shard is full, an insert
// evicts the entry expiring soonest among a few sampled ones (Go's map
// iteration order is random), which approximates "drop what is least
// useful" without a lock-heavy LRU list on the hit path.
type store[V any] struct {
	seed    maphash.Seed
	perShrd int
	expires func(V) time.Time
	shards  [shards]struct {
		mu sync.RWMutex
		m  map[string]V
	}
	evicted atomic.Uint64
}

func newStore[V any](size int, expires func(V) time.Time) *store[V] {
	s := &store[V]{seed: maphash.MakeSeed(), perShrd: max(1, size/shards), expires: expires}
	for i := range s.shards {
		s.shards[i].m = make(map[string]V)
	}
	return s
}

func (s *store[V]) shard(key []byte) int {
	return int(maphash.Bytes(s.seed, key) % shards)
}

func (s *store[V]) get(key []byte) (V, bool) {
	sh := &s.shards[s.shard(key)]
	sh.mu.RLock()
	v, ok := sh.m[string(key)]
	sh.mu.RUnlock()
	return v, ok
}

func (s *store[V]) put(key []byte, v V) {
	sh := &s.shards[s.shard(key)]
	sh.mu.Lock()
	if _, ok := sh.m[string(key)]; !ok && len(sh.m) >= s.perShrd {
		var victim string
		var vexp time.Time
		n := 0
		for k, e := range sh.m {
			if x := s.expires(e); n == 0 || x.Before(vexp) {
				victim, vexp = k, x
			}
			if n++; n >= 8 {
				break
			}
		}
		delete(sh.m, victim)
		s.evicted.Add(1)
	}
	sh.m[string(key)] = v
	sh.mu.Unlock()
}

func (s *store[V]) len() int {
	n := 0
	for i := range s.shards {
		s.shards[i].mu.RLock()
		n += len(s.shards[i].m)
		s.shards[i].mu.RUnlock()
	}
	return n
}

// flush removes every entry, or with suffix set, those whose key satisfies match.
func (s *store[V]) flush(match func(key string) bool) int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k := range sh.m {
			if match == nil || match(k) {
				delete(sh.m, k)
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// Trust ranks of cached data (RFC 2181 section 5.4.1): data from an
// authoritative answer beats data from a referral or additional section.
const (
	rankGlue   = 1
	rankAuth   = 2
	rankAnswer = 3
)

// rrEntry is a cached RRset or negative answer for one name and type. It
// is kept small (rarely used fields behind x, Unix-nanosecond store time)
// because there is one per cached RRset.
type rrEntry struct {
	rrs []dns.RR
	// x holds the fields most entries do not need, or nil.
	x *rrExtra
	// ede is the reason for a bogus state.
	ede *dns.EDNS0_EDE
	// expires is when the entry stops being fresh.
	expires time.Time
	// stored is when it was cached, in Unix nanoseconds (for TTL countdown).
	stored int64
	// neg is 0 for data, dns.RcodeNameError for a nonexistent name or
	// negNoData for a name without the type.
	neg  int32
	rank uint8
	sec  security
}

// rrExtra holds an rrEntry's rarely needed fields.
type rrExtra struct {
	// sigs are the RRSIGs covering rrs.
	sigs []dns.RR
	// soa holds a negative answer's SOA and denial records.
	soa []dns.RR
	// zone is the delegating zone of a typeDSRef entry.
	zone string
}

// soa returns the entry's negative-answer records.
func (e *rrEntry) soa() []dns.RR {
	if e.x == nil {
		return nil
	}
	return e.x.soa
}

// zone returns the delegating zone of a typeDSRef entry.
func (e *rrEntry) zone() string {
	if e.x == nil {
		return ""
	}
	return e.x.zone
}

// appendTo appends the entry's records and the RRSIGs covering them to
// out, their TTLs counted down to now.
func (e *rrEntry) appendTo(out []dns.RR, now time.Time) []dns.RR {
	out = append(out, withTTL(e.rrs, e.stored, now)...)
	if e.x != nil && len(e.x.sigs) > 0 {
		out = append(out, withTTL(e.x.sigs, e.stored, now)...)
	}
	return out
}

// withSigs returns the extra fields holding sigs, or nil when there are none.
func withSigs(sigs []dns.RR) *rrExtra {
	if len(sigs) == 0 {
		return nil
	}
	return &rrExtra{sigs: sigs}
}

const negNoData = 1 << 8

func rrKey(name string, qtype uint16) []byte {
	b := make([]byte, 0, len(name)+2)
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return append(b, byte(qtype>>8), byte(qtype))
}

// msgEntry is a packed reply ready for the fast path. It is kept small
// (one allocation for the reply and its TTL offsets, no Go time.Time, no
// copy of the question: the cache key has it) because there is one per
// cached answer.
type msgEntry struct {
	// data is the packed reply, then the offsets of its TTL fields
	// (big-endian uint16 each).
	data    []byte
	wireLen uint16
	// life is the entry's lifetime in seconds (stored = expires - life).
	life uint32
	// expires is the expiry time in Unix nanoseconds.
	expires    int64
	hits       atomic.Uint32
	prefetched atomic.Bool
}

func newMsgEntry(wire []byte, offs []uint16, now time.Time, life uint32) *msgEntry {
	data := make([]byte, len(wire), len(wire)+2*len(offs))
	copy(data, wire)
	for _, o := range offs {
		data = append(data, byte(o>>8), byte(o))
	}
	return &msgEntry{data: data, wireLen: uint16(len(wire)), life: life, expires: now.Add(time.Duration(life) * time.Second).UnixNano()}
}

func (e *msgEntry) wire() []byte { return e.data[:e.wireLen] }

// ttlOffsets are the offsets of the reply's TTL fields, packed.
func (e *msgEntry) ttlOffsets() []byte { return e.data[e.wireLen:] }

func (e *msgEntry) expiry() time.Time { return time.Unix(0, e.expires) }

// elapsed is the number of whole seconds since the entry was stored.
func (e *msgEntry) elapsed(now time.Time) uint32 {
	d := now.UnixNano() - (e.expires - int64(e.life)*int64(time.Second))
	return uint32(max(0, d/int64(time.Second)))
}

// rrsetTTL returns the smallest TTL in rrs.
func rrsetTTL(rrs []dns.RR) uint32 {
	var m uint32
	for i, rr := range rrs {
		if t := rr.Header().Ttl; i == 0 || t < m {
			m = t
		}
	}
	return m
}

// withTTL returns copies of rrs with their TTLs counted down to now from
// stored (Unix nanoseconds).
func withTTL(rrs []dns.RR, stored int64, now time.Time) []dns.RR {
	el := uint32(max(0, (now.UnixNano()-stored)/int64(time.Second)))
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		c := dns.Copy(rr)
		h := c.Header()
		if h.Ttl > el {
			h.Ttl -= el
		} else {
			h.Ttl = 0
		}
		out[i] = c
	}
	return out
}
