package resolver

import (
	"encoding/binary"
	"errors"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/dnsserver"
)

const shards = 16

// cached is what the store keeps: an entry that carries its own key (so
// the maps are keyed by a 64-bit hash, not by a string of their own),
// knows when it expires and what it costs in heap bytes, and has a CLOCK
// reference bit set by lookups.
type cached interface {
	comparable
	cacheKey() []byte
	// expiresAt is the expiry in Unix nanoseconds.
	expiresAt() int64
	// heapBytes is what the entry holds on the heap, its map slot included.
	heapBytes() int
	// negative reports a cached negative answer (NXDOMAIN or NODATA).
	negative() bool
	// touch marks the entry used (its CLOCK reference bit).
	touch()
	// unref clears the reference bit and reports whether it was set.
	unref() bool
}

// store is a sharded cache bounded in entries and in heap bytes. Each
// shard maps a 64-bit hash of the key to the entry, which carries the key
// itself: a lookup compares it, and two keys with the same hash replace
// each other (an eviction, which a cache may do). When a shard is over
// either bound, an insert evicts by a sampled CLOCK: lookups set an
// entry's reference bit; the eviction looks at a few entries in the map's
// random order, takes an expired one or the first whose bit is clear,
// clearing the bits it passes, and otherwise the soonest-expiring one
// sampled. Lookups take only a read lock and write the bit only when it
// is clear, so the hit path stays cheap.
type store[V cached] struct {
	seed     maphash.Seed
	perShrd  int
	bytesCap int64
	shards   [shards]shard[V]
	evicted  atomic.Uint64
	// now returns the time in Unix nanoseconds (eviction prefers
	// expired entries).
	now func() int64
}

// shard is one lock's part of a store: its entries and the heap bytes
// they hold, negative entries' among them.
type shard[V cached] struct {
	mu    sync.RWMutex
	m     map[uint64]V
	bytes int64
	neg   int64
}

// mapSlotBytes is the heap cost of one map slot keyed by uint64 with a
// pointer value, averaged over the map's fill (Go's swiss tables hold
// 8+8 bytes and a control byte per slot at a load of 7/8, and double).
const mapSlotBytes = 24

// newStore returns a store of at most size entries and maxBytes heap
// bytes (0: no byte bound).
func newStore[V cached](size int, maxBytes int64) *store[V] {
	s := &store[V]{seed: maphash.MakeSeed(), perShrd: max(1, size/shards), bytesCap: max(0, maxBytes/shards),
		now: func() int64 { return time.Now().UnixNano() }}
	for i := range s.shards {
		s.shards[i].m = make(map[uint64]V)
	}
	return s
}

func (s *store[V]) hash(key []byte) uint64 { return maphash.Bytes(s.seed, key) }

func (s *store[V]) get(key []byte) (V, bool) {
	h := s.hash(key)
	sh := &s.shards[h%shards]
	sh.mu.RLock()
	v, ok := sh.m[h]
	sh.mu.RUnlock()
	if !ok || string(v.cacheKey()) != string(key) {
		var zero V
		return zero, false
	}
	v.touch()
	return v, true
}

func (s *store[V]) put(key []byte, v V) {
	h := s.hash(key)
	sh := &s.shards[h%shards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old, ok := sh.m[h]; ok {
		s.account(sh, old, -1)
		delete(sh.m, h)
	}
	size := int64(v.heapBytes())
	for len(sh.m) > 0 && (len(sh.m) >= s.perShrd || s.bytesCap > 0 && sh.bytes+size > s.bytesCap) {
		victim := s.victim(sh.m)
		s.account(sh, sh.m[victim], -1)
		delete(sh.m, victim)
		s.evicted.Add(1)
	}
	sh.m[h] = v
	s.account(sh, v, 1)
}

// victim picks the entry to evict from m (not empty), sampling a few.
func (s *store[V]) victim(m map[uint64]V) uint64 {
	now := s.now()
	var soonest uint64
	var sexp int64
	n := 0
	for k, e := range m {
		x := e.expiresAt()
		if x <= now {
			return k
		}
		if !e.unref() {
			return k
		}
		if n == 0 || x < sexp {
			soonest, sexp = k, x
		}
		if n++; n >= 8 {
			break
		}
	}
	return soonest
}

func (s *store[V]) account(sh *shard[V], v V, sign int64) {
	b := sign * int64(v.heapBytes())
	sh.bytes += b
	if v.negative() {
		sh.neg += b
	}
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

// bytes returns the heap bytes the store's entries hold, and how many of
// them negative entries hold.
func (s *store[V]) bytes() (total, negative int64) {
	for i := range s.shards {
		s.shards[i].mu.RLock()
		total += s.shards[i].bytes
		negative += s.shards[i].neg
		s.shards[i].mu.RUnlock()
	}
	return total, negative
}

// each calls fn for every entry, holding one shard's read lock at a time.
func (s *store[V]) each(fn func(V)) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		for _, v := range sh.m {
			fn(v)
		}
		sh.mu.RUnlock()
	}
}

// flush removes every entry, or with match set, those whose key satisfies it.
func (s *store[V]) flush(match func(key string) bool) int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, v := range sh.m {
			if match == nil || match(string(v.cacheKey())) {
				s.account(sh, v, -1)
				delete(sh.m, k)
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// allocBytes approximates what the Go allocator hands out for an object
// of n bytes (its size classes: steps of 16 up to 256, then coarser).
func allocBytes(n int) int {
	switch {
	case n == 0:
		return 0
	case n <= 8:
		return 8
	case n <= 256:
		return (n + 15) &^ 15
	case n <= 1024:
		return (n + 63) &^ 63
	default:
		return (n + 255) &^ 255
	}
}

// Trust ranks of cached data (RFC 2181 section 5.4.1): data from an
// authoritative answer beats data from a referral or additional section.
const (
	rankGlue   = 1
	rankAuth   = 2
	rankAnswer = 3
)

// rrEntry is a cached RRset or negative answer for one name and type, as
// the resolver works with it; the cache keeps it packed (packedRR).
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

// msgEntry is a packed reply ready for the fast path. It is one pointer,
// one word and one byte slice (the size class of 32 bytes) because there
// is one per cached answer: the slice holds the key, the entry's
// lifetime, and the reply without what every query brings itself: its
// ID, its question (the key holds the same name, so the reply's offsets
// do not move) and, when it is the plain one, its OPT record.
type msgEntry struct {
	// data is the key's length (one byte), the key, the lifetime in
	// seconds (uint32; stored = expires - life), the reply's length
	// (uint16), a flag byte (msgPlainOPT), the reply's header after its
	// ID, its records after the question (but the plain OPT), then the
	// offsets of the reply's TTL fields (big-endian uint16 each).
	data []byte
	// state is the expiry time in Unix nanoseconds with its low bits
	// replaced: the reference bit (refBit), whether a prefetch was
	// started (prefetchBit) and the hits counted up to 3 (hitUnit).
	state atomic.Int64
}

// A msgEntry's state bits.
const (
	refBit      = 1
	prefetchBit = 2
	hitUnit     = 4
	stateBits   = 15
)

// msgPlainOPT flags a reply whose last record was the plain OPT record
// (plainOPT with the key's DO bit), which the entry does not keep.
const msgPlainOPT = 1

// plainOPT is the OPT record the resolver's replies carry without EDNS
// options: root owner, type 41, UDP size 1232, no extended RCODE,
// version 0, flags (DO at byte 7), no data.
var plainOPT = [11]byte{0, 0, 41, 1232 >> 8, 1232 & 0xff, 0, 0, 0, 0, 0, 0}

// msgEntryBytes is the heap size of a msgEntry (its size class).
const msgEntryBytes = 32

// newMsgEntry keeps wire, a reply whose question is the one of key (the
// fast path's key: wire name, type, flags), with offs its TTL offsets.
func newMsgEntry(key, wire []byte, offs []uint16, now time.Time, life uint32) (*msgEntry, error) {
	qend, err := questionEnd(wire)
	if err != nil {
		return nil, err
	}
	if qend-12 != len(key)-3+4 || len(key) > 255 {
		return nil, errors.New("reply's question is not the key's")
	}
	body := wire[qend:]
	var flags byte
	opt := plainOPT
	if key[len(key)-1]&2 != 0 { // the key's DO flag
		opt[7] = 0x80
	}
	if key[len(key)-1]&1 != 0 && len(body) >= len(opt) && string(body[len(body)-len(opt):]) == string(opt[:]) {
		body = body[:len(body)-len(opt)]
		flags |= msgPlainOPT
	}
	data := make([]byte, 0, 1+len(key)+7+10+len(body)+2*len(offs))
	data = append(data, byte(len(key)))
	data = append(data, key...)
	data = binary.BigEndian.AppendUint32(data, life)
	data = binary.BigEndian.AppendUint16(data, uint16(len(wire)))
	data = append(data, flags)
	data = append(data, wire[2:12]...)
	data = append(data, body...)
	for _, o := range offs {
		data = binary.BigEndian.AppendUint16(data, o)
	}
	e := &msgEntry{data: data}
	e.state.Store(now.Add(time.Duration(life)*time.Second).UnixNano() &^ stateBits)
	return e, nil
}

// questionEnd returns the offset past a message's one question.
func questionEnd(msg []byte) (int, error) {
	if len(msg) < 12 || binary.BigEndian.Uint16(msg[4:]) != 1 {
		return 0, errors.New("not one question")
	}
	off, err := dnsserver.SkipName(msg, 12)
	if err != nil || off+4 > len(msg) {
		return 0, errors.New("bad question")
	}
	return off + 4, nil
}

func (e *msgEntry) cacheKey() []byte { return e.data[1 : 1+e.data[0]] }

// meta returns the offset of the fields after the key.
func (e *msgEntry) meta() int { return 1 + int(e.data[0]) }

// life is the entry's lifetime in seconds.
func (e *msgEntry) life() uint32 { return binary.BigEndian.Uint32(e.data[e.meta():]) }

// wireLen is the length of the reply.
func (e *msgEntry) wireLen() int { return int(binary.BigEndian.Uint16(e.data[e.meta()+4:])) }

// expiresAt is the expiry in Unix nanoseconds.
func (e *msgEntry) expiresAt() int64 { return e.state.Load() &^ stateBits }
func (e *msgEntry) negative() bool   { return false }
func (e *msgEntry) unref() bool      { return e.state.And(^int64(refBit))&refBit != 0 }

// touch sets the reference bit and counts a hit, writing only while
// either changes (the hit path of a popular entry does not write).
func (e *msgEntry) touch() {
	for {
		v := e.state.Load()
		if v&refBit != 0 && v&stateBits >= 2*hitUnit {
			return
		}
		n := v | refBit
		if n&stateBits < 3*hitUnit {
			n += hitUnit
		}
		if e.state.CompareAndSwap(v, n) {
			return
		}
	}
}

// hits is the number of lookups that found the entry, counted up to 2.
func (e *msgEntry) hits() int64 { return min(2, e.state.Load()&stateBits/hitUnit) }

// startPrefetch reports whether the caller is the first to prefetch e.
func (e *msgEntry) startPrefetch() bool { return e.state.Or(prefetchBit)&prefetchBit == 0 }
func (e *msgEntry) heapBytes() int      { return msgEntryBytes + allocBytes(cap(e.data)) + mapSlotBytes }

// reply appends the cached reply to out[:0] with the ID and question of
// the query b (its spelling of the name: the caller has checked that b's
// key is the entry's) and returns it with the TTL offsets.
func (e *msgEntry) reply(out, b []byte) ([]byte, []byte) {
	m := e.meta()
	klen := int(e.data[0])
	qend := 12 + klen + 1
	wl := e.wireLen()
	plain := e.data[m+6]&msgPlainOPT != 0
	body := wl - qend
	if plain {
		body -= len(plainOPT)
	}
	rest := e.data[m+7:]
	out = append(out[:0], b[0], b[1])
	out = append(out, rest[:10]...)
	out = append(out, b[12:qend]...)
	out = append(out, rest[10:10+body]...)
	if plain {
		out = append(out, plainOPT[:]...)
		if e.data[klen]&2 != 0 { // the key's DO flag
			out[len(out)-4] = 0x80
		}
	}
	return out, rest[10+body:]
}

func (e *msgEntry) expiry() time.Time { return time.Unix(0, e.expiresAt()) }

// elapsed is the number of whole seconds since the entry was stored.
func (e *msgEntry) elapsed(now time.Time) uint32 {
	d := now.UnixNano() - (e.expiresAt() - int64(e.life())*int64(time.Second))
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
