package resolver

import (
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestStoreSizeBound(t *testing.T) {
	now := time.Now()
	s := newRRCache(64, 0)
	for i := range 1000 {
		s.put(rrKey(fmt.Sprintf("n%d.example.", i), dns.TypeA), &rrEntry{expires: now.Add(time.Duration(i) * time.Second)})
	}
	if n := s.len(); n > 64 {
		t.Fatalf("store holds %d entries, bound 64", n)
	}
	if s.s.evicted.Load() < 1000-64 {
		t.Errorf("evicted %d", s.s.evicted.Load())
	}
	// The newest (latest-expiring) entry survives eviction.
	if _, ok := s.get(rrKey("n999.example.", dns.TypeA)); !ok {
		t.Errorf("latest entry evicted")
	}
}

func TestPrefetchRefreshesPopularEntries(t *testing.T) {
	h := newHierarchy(t, 0)
	r := startResolver(t, h, nil)
	ask(t, r.addr, "www.example.test", dns.TypeA)
	ask(t, r.addr, "www.example.test", dns.TypeA)
	before := h.example.Queries.Load()
	r.clock.Advance(280 * time.Second) // TTL 300: in the last 10%
	ask(t, r.addr, "www.example.test", dns.TypeA)
	deadline := time.Now().Add(5 * time.Second)
	for h.example.Queries.Load() == before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling for the background refresh
	}
	if h.example.Queries.Load() == before {
		t.Fatal("no prefetch")
	}
	// Wait for the refreshed entry to be stored, then check it outlives the old one.
	for time.Now().Before(deadline) {
		if e, ok := r.msgs.get(mustKey(t, "www.example.test.", dns.TypeA)); ok && e.expiry().After(r.clock.Now().Add(200*time.Second)) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.clock.Advance(30 * time.Second) // the original entry has expired by now
	n := h.example.Queries.Load()
	m := ask(t, r.addr, "www.example.test", dns.TypeA)
	if len(m.Answer) != 2 || h.example.Queries.Load() != n {
		t.Errorf("prefetched entry not served from cache (%d upstream)", h.example.Queries.Load()-n)
	}
	if m.Answer[0].Header().Ttl < 250 {
		t.Errorf("TTL %d: answer not refreshed", m.Answer[0].Header().Ttl)
	}
}

func mustKey(t *testing.T, name string, qtype uint16) []byte {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	b, _ := m.Pack()
	var q query
	if err := parseQuery(b, &q); err != nil {
		t.Fatal(err)
	}
	return q.Key
}
