package cache

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// entry is one stored response. Entries are immutable once stored: an
// update (RFC 9111 section 3.2, after a 304) stores a new entry that shares
// the body, so readers need no lock.
type entry struct {
	key       string   // primary key
	vkey      string   // secondary key (Vary)
	varyNames []string // the fields the response varies on
	status    int
	header    http.Header // stored header, hop-by-hop fields removed, no Age
	body      []byte

	reqTime, respTime time.Time
	date              time.Time     // Date, or respTime without a valid one
	corrInitAge       time.Duration // corrected_initial_age (section 4.2.3)
	lifetime          time.Duration // freshness lifetime (section 4.2.1)
	cc                Directives    // the stored response's Cache-Control
	targeted          bool          // cc came from a targeted field (RFC 9213)
	etag, lastMod     string

	// memory LRU links, guarded by memStore.mu
	prev, next *entry
	// wire is the precomputed header for FastHit, built on first use.
	wire atomic.Pointer[wire]
	// disk is the entry's file in the disk tier, if any, whose recency a
	// memory hit refreshes.
	disk atomic.Pointer[diskItem]
}

func (e *entry) size() int64 {
	n := int64(len(e.body)) + int64(len(e.key)+len(e.vkey)) + 256
	for k, vs := range e.header {
		n += int64(len(k))
		for _, v := range vs {
			n += int64(len(v)) + 16
		}
	}
	return n
}

// dateOf returns a response's Date, or respTime when it has none that
// parses.
func dateOf(h http.Header, respTime time.Time) time.Time {
	if ds := h["Date"]; len(ds) > 0 {
		if t, err := http.ParseTime(ds[0]); err == nil {
			return t
		}
	}
	return respTime
}

// moreRecent reports whether e is a more recent response than o: RFC 9111
// section 4 picks, among several stored responses that could answer a
// request, "the most recent response (as determined by the Date header
// field)". Equal dates fall back to the time received.
func (e *entry) moreRecent(o *entry) bool {
	if !e.date.Equal(o.date) {
		return e.date.After(o.date)
	}
	return e.respTime.After(o.respTime)
}

// currentAge is current_age of RFC 9111 section 4.2.3.
func (e *entry) currentAge(now time.Time) time.Duration {
	resident := now.Sub(e.respTime)
	if resident < 0 {
		resident = 0
	}
	return e.corrInitAge + resident
}

// mustRevalidate reports whether the entry may never be served stale
// without validation: must-revalidate, proxy-revalidate, or s-maxage
// (which implies proxy-revalidate, section 5.2.2.10).
func (e *entry) mustRevalidate() bool {
	return e.cc.MustRevalidate() || e.cc.ProxyRevalidate() || e.cc.SMaxAge >= 0
}

// memStore is the memory tier: a map from primary key to the stored
// variants, with a byte budget enforced by least-recently-used eviction.
type memStore struct {
	// clock is the disk tier's access clock (nil without a disk tier).
	clock  *diskStore
	mu     sync.Mutex
	m      map[string][]*entry
	head   entry // sentinel: head.next is most recent
	bytes  int64
	budget int64
	count  int
	// onEvict is told about each evicted entry (outside no lock
	// guarantees: called with mu held; must not call back).
	onEvict func(*entry)
}

func newMemStore(budget int64) *memStore {
	s := &memStore{m: map[string][]*entry{}, budget: budget}
	s.head.next, s.head.prev = &s.head, &s.head
	return s
}

func (s *memStore) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (s *memStore) pushFront(e *entry) {
	e.next = s.head.next
	e.prev = &s.head
	s.head.next.prev = e
	s.head.next = e
}

// get returns the variant of key that matches the request's header, and
// whether any variant of key is stored at all.
func (s *memStore) get(key string, h http.Header) (*entry, bool) {
	s.mu.Lock()
	vs, any := s.m[key]
	var found *entry
	for _, e := range vs {
		if e.vkey == "" && len(e.varyNames) == 0 || VaryKey(e.varyNames, h) == e.vkey {
			if found == nil || e.moreRecent(found) {
				found = e
			}
		}
	}
	if found != nil && s.head.next != found {
		s.unlink(found)
		s.pushFront(found)
	}
	s.mu.Unlock()
	if found != nil && s.clock != nil {
		if it := found.disk.Load(); it != nil {
			s.clock.touch(it)
		}
	}
	return found, any
}

// variants returns every stored variant of key.
func (s *memStore) variants(key string) []*entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*entry(nil), s.m[key]...)
}

// put stores e, replacing a variant with the same secondary key, and
// evicts least recently used entries over the budget.
func (s *memStore) put(e *entry) {
	sz := e.size()
	s.mu.Lock()
	defer s.mu.Unlock()
	vs := s.m[e.key]
	replaced := false
	for i, old := range vs {
		if old.vkey == e.vkey {
			s.unlink(old)
			s.bytes -= old.size()
			vs[i] = e
			replaced = true
			break
		}
	}
	if !replaced {
		vs = append(vs, e)
		s.count++
	}
	s.m[e.key] = vs
	s.pushFront(e)
	s.bytes += sz
	for s.bytes > s.budget && s.head.prev != &s.head && s.head.prev != e {
		s.removeLocked(s.head.prev, true)
	}
}

// replace swaps old for e if old is still stored (a 304 update).
func (s *memStore) replace(old, e *entry) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	vs := s.m[old.key]
	for i, v := range vs {
		if v == old {
			s.unlink(old)
			s.bytes -= old.size()
			vs[i] = e
			s.pushFront(e)
			s.bytes += e.size()
			return true
		}
	}
	return false
}

// removeEntry drops e if it is still stored.
func (s *memStore) removeEntry(e *entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.m[e.key] {
		if v == e {
			s.removeLocked(e, false)
			return
		}
	}
}

func (s *memStore) removeLocked(e *entry, evicted bool) {
	vs := s.m[e.key]
	for i, v := range vs {
		if v == e {
			vs = append(vs[:i:i], vs[i+1:]...)
			break
		}
	}
	if len(vs) == 0 {
		delete(s.m, e.key)
	} else {
		s.m[e.key] = vs
	}
	s.unlink(e)
	s.bytes -= e.size()
	s.count--
	if evicted && s.onEvict != nil {
		s.onEvict(e)
	}
}

// remove drops every variant of key; it returns how many.
func (s *memStore) remove(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	vs := append([]*entry(nil), s.m[key]...)
	for _, e := range vs {
		s.removeLocked(e, false)
	}
	return len(vs)
}

// removePrefix drops every entry whose primary key starts with prefix.
func (s *memStore) removePrefix(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, vs := range s.m {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		for _, e := range append([]*entry(nil), vs...) {
			s.removeLocked(e, false)
			n++
		}
	}
	return n
}

func (s *memStore) usage() (objects int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count, s.bytes
}
