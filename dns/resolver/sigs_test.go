package resolver

import (
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// sigsOf returns the RRSIGs of rrs by the type they cover.
func sigsOf(rrs []dns.RR) map[uint16]*dns.RRSIG {
	out := map[uint16]*dns.RRSIG{}
	for _, rr := range rrs {
		if s, ok := rr.(*dns.RRSIG); ok {
			out[s.TypeCovered] = s
		}
	}
	return out
}

// TestRRSIGsInAnswers: clients that set DO get the RRSIGs of every RRset
// of the answer chain, whether the answer comes from iteration, from the
// packed-reply cache or is rebuilt from the RRset cache (another flag
// combination of a cached name); others get none.
func TestRRSIGsInAnswers(t *testing.T) {
	_, cfg := signedTree(t, 0, []signedZone{{origin: "sec.test.", host: 3}})
	r := startValidating(t, cfg)

	// Iteration.
	m := ask(t, r.addr, "www.sec.test", dns.TypeA, withDO)
	if s := sigsOf(m.Answer)[dns.TypeA]; s == nil || !m.AuthenticatedData {
		t.Fatalf("iterated answer with DO: AD=%v, no RRSIG for A\n%v", m.AuthenticatedData, m)
	}
	// Packed-reply cache.
	m = ask(t, r.addr, "www.sec.test", dns.TypeA, withDO)
	if s := sigsOf(m.Answer)[dns.TypeA]; s == nil {
		t.Fatalf("cached answer with DO: no RRSIG\n%v", m)
	}

	// The chain alias -> www, resolved without EDNS: no RRSIGs.
	m = ask(t, r.addr, "alias.sec.test", dns.TypeA)
	if len(m.Answer) != 2 || len(sigsOf(m.Answer)) != 0 {
		t.Fatalf("plain query: want CNAME and A without RRSIGs\n%v", m)
	}
	r.clock.Advance(10 * time.Second)
	before := testutil.ToFloat64(r.m.upstreamQueries)
	// Same name with DO: another packed-reply variant, built from the
	// RRset cache, with both RRsets' signatures, TTLs counted down.
	m = ask(t, r.addr, "alias.sec.test", dns.TypeA, withDO)
	if d := testutil.ToFloat64(r.m.upstreamQueries) - before; d != 0 {
		t.Errorf("%v upstream queries, want an answer from the cache", d)
	}
	sigs := sigsOf(m.Answer)
	if m.Rcode != dns.RcodeSuccess || !m.AuthenticatedData || len(m.Answer) != 4 || sigs[dns.TypeCNAME] == nil || sigs[dns.TypeA] == nil {
		t.Fatalf("DO query from the RRset cache: want CNAME, A and their RRSIGs with AD\n%v", m)
	}
	for _, rr := range m.Answer {
		if ttl := rr.Header().Ttl; ttl > 290 {
			t.Errorf("%v: TTL %d, want counted down (<= 290)", rr, ttl)
		}
	}
	if s := sigs[dns.TypeA]; s.OrigTtl != 300 {
		t.Errorf("RRSIG original TTL %d, want 300 (unchanged)", s.OrigTtl)
	}
	// The signatures still verify the records as served.
	m2 := ask(t, r.addr, "alias.sec.test", dns.TypeA, withCD, withDO)
	if len(sigsOf(m2.Answer)) != 2 {
		t.Errorf("CD+DO: want both RRSIGs\n%v", m2)
	}
	// And without DO, still none.
	m = ask(t, r.addr, "alias.sec.test", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, false) })
	if len(m.Answer) != 2 || len(sigsOf(m.Answer)) != 0 {
		t.Errorf("EDNS without DO: want CNAME and A only\n%v", m)
	}
}
