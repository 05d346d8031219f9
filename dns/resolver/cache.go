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

func (s *store[V]) del(key []byte) {
	sh := &s.shards[s.shard(key)]
	sh.mu.Lock()
	delete(sh.m, string(key))
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

// rrEntry is a cached RRset or negative answer for one name and type.
type rrEntry struct {
	rrs []dns.RR
	// sigs are the RRSIGs covering rrs.
	sigs []dns.RR
	// neg is 0 for data, dns.RcodeNameError for a nonexistent name or
	// dns.RcodeSuccess+1 (nodata) for a name without the type.
	neg int
	// soa holds the negative answer's SOA and denial records.
	soa  []dns.RR
	rank uint8
	sec  security
	// ede is the reason for a bogus state.
	ede *dns.EDNS0_EDE
	// zone is the delegating zone of a typeDSRef entry.
	zone    string
	stored  time.Time
	expires time.Time
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

// msgEntry is a packed reply ready for the fast path.
type msgEntry struct {
	wire    []byte
	ttls    []uint16
	stored  time.Time
	expires time.Time
	// origTTL is the entry's lifetime, for prefetch decisions.
	origTTL    time.Duration
	qname      string
	qtype      uint16
	hits       atomic.Uint32
	prefetched atomic.Bool
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

// withTTL returns copies of rrs with their TTLs counted down to now.
func withTTL(rrs []dns.RR, stored, now time.Time) []dns.RR {
	el := uint32(max(0, now.Sub(stored)/time.Second))
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
