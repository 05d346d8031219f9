package resolver

import (
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestAggressiveNegativeCaching: validated NSEC and NSEC3 records of
// earlier negative answers answer later questions they cover without a
// query (RFC 8198): NODATA from a matching NSEC/NSEC3, NXDOMAIN from NSEC3
// ranges (NSEC NXDOMAIN is in TestDNSSECValidation); names that exist,
// DS questions at a zone's apex and names below a delegation are still
// asked.
func TestAggressiveNegativeCaching(t *testing.T) {
	_, cfg := signedTree(t, 0, []signedZone{
		{origin: "sec.test.", host: 3},
		{origin: "n3.test.", host: 4, nsec3: true, iter: 5},
		{origin: "unsigned.test.", host: 5, unsigned: true},
	})
	r := startValidating(t, cfg)
	upstream := func() float64 { return testutil.ToFloat64(r.m.upstreamQueries) }
	synthesized := func() float64 { return testutil.ToFloat64(r.m.aggressive) }

	// want asks name/qtype with DO and checks the rcode, AD and whether
	// the answer was synthesized (no upstream query, metric up).
	want := func(t *testing.T, name string, qtype uint16, rcode int, synth bool) *dns.Msg {
		t.Helper()
		u, a := upstream(), synthesized()
		m := ask(t, r.addr, name, qtype, withDO)
		if m.Rcode != rcode || !m.AuthenticatedData {
			t.Fatalf("%s %s: rcode %s AD=%v, want %s with AD\n%v", name, dns.TypeToString[qtype], dns.RcodeToString[m.Rcode], m.AuthenticatedData, dns.RcodeToString[rcode], m)
		}
		du, da := upstream()-u, synthesized()-a
		if synth && (du != 0 || da != 1) {
			t.Errorf("%s %s: %v upstream queries, %v synthesized; want an answer from cached NSEC/NSEC3", name, dns.TypeToString[qtype], du, da)
		}
		if !synth && da != 0 {
			t.Errorf("%s %s: synthesized from the NSEC cache, want it asked", name, dns.TypeToString[qtype])
		}
		return m
	}
	// proof checks a synthesized negative answer's authority section: the
	// SOA and the proof records, each with its RRSIG, and nothing else.
	proof := func(t *testing.T, m *dns.Msg, typ uint16, max int) {
		t.Helper()
		var soa, n, sigs int
		for _, rr := range m.Ns {
			switch x := rr.(type) {
			case *dns.SOA:
				soa++
			case *dns.RRSIG:
				sigs++
				if x.TypeCovered != typ && x.TypeCovered != dns.TypeSOA {
					t.Errorf("unexpected %v", x)
				}
			default:
				if rr.Header().Rrtype != typ {
					t.Errorf("unexpected %v", rr)
				}
				n++
			}
		}
		if soa != 1 || n == 0 || n > max || sigs != n+1 {
			t.Errorf("authority: %d SOA, %d %s (max %d), %d RRSIGs; want 1 SOA and each record signed\n%v", soa, n, dns.TypeToString[typ], max, sigs, m)
		}
	}

	t.Run("NSEC NODATA", func(t *testing.T) {
		want(t, "www.sec.test", dns.TypeAAAA, dns.RcodeSuccess, false)
		m := want(t, "www.sec.test", dns.TypeMX, dns.RcodeSuccess, true)
		if len(m.Answer) != 0 {
			t.Errorf("NODATA with answers: %v", m)
		}
		proof(t, m, dns.TypeNSEC, 1)
		// Without DO: the SOA only.
		m = ask(t, r.addr, "www.sec.test", dns.TypeSRV)
		if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 0 || len(m.Ns) != 1 {
			t.Errorf("plain NODATA: %v", m)
		}
		// The type that exists is still asked for and answered.
		m = want(t, "www.sec.test", dns.TypeTXT, dns.RcodeSuccess, false)
		if len(m.Answer) == 0 {
			t.Errorf("TXT: no answer\n%v", m)
		}
		// The apex NSEC says nothing about the DS (in the parent).
		want(t, "sec.test", dns.TypeTXT, dns.RcodeSuccess, false)
		m = want(t, "sec.test", dns.TypeDS, dns.RcodeSuccess, false)
		if len(m.Answer) == 0 {
			t.Errorf("DS: no answer\n%v", m)
		}
		// A name that exists (covered by no cached NSEC) is answered.
		m = want(t, "a.b.sec.test", dns.TypeA, dns.RcodeSuccess, false)
		if len(m.Answer) == 0 {
			t.Errorf("a.b.sec.test: no answer\n%v", m)
		}
	})

	t.Run("NSEC3 NODATA", func(t *testing.T) {
		want(t, "www.n3.test", dns.TypeAAAA, dns.RcodeSuccess, false)
		m := want(t, "www.n3.test", dns.TypeMX, dns.RcodeSuccess, true)
		proof(t, m, dns.TypeNSEC3, 1)
	})

	t.Run("NSEC3 NXDOMAIN", func(t *testing.T) {
		m := want(t, "nx.n3.test", dns.TypeA, dns.RcodeNameError, false)
		// Find another name whose hash the same NSEC3 record covers.
		var cover *dns.NSEC3
		for _, rr := range m.Ns {
			if n, ok := rr.(*dns.NSEC3); ok && n.Cover("nx.n3.test.") {
				cover = n
			}
		}
		if cover == nil {
			t.Fatalf("no NSEC3 covers nx.n3.test\n%v", m)
		}
		name := ""
		for i := 0; i < 1000 && name == ""; i++ {
			if c := fmt.Sprintf("nz%d.n3.test.", i); cover.Cover(c) {
				name = c
			}
		}
		if name == "" {
			t.Fatal("no name found in the covered range")
		}
		m = want(t, name, dns.TypeA, dns.RcodeNameError, true)
		proof(t, m, dns.TypeNSEC3, 3)
		// Any type: the name does not exist.
		want(t, name, dns.TypeTXT, dns.RcodeNameError, true)
		// A name that exists is still resolved.
		m = want(t, "a.b.n3.test", dns.TypeA, dns.RcodeSuccess, false)
		if len(m.Answer) == 0 {
			t.Errorf("a.b.n3.test: no answer\n%v", m)
		}
	})

	t.Run("below a delegation", func(t *testing.T) {
		// test.'s NSEC records are cached by now (DS proofs, NXDOMAIN);
		// names in its child zones are not answered from them.
		want(t, "nope.test", dns.TypeA, dns.RcodeNameError, false)
		m := want(t, "alias.sec.test", dns.TypeA, dns.RcodeSuccess, false)
		if !strings.Contains(m.String(), "192.0.2.1") {
			t.Errorf("alias.sec.test: %v", m)
		}
		// The NSEC at the insecure delegation (NS, no DS) is cached with
		// this NODATA; it proves nothing about names in the child.
		want(t, "unsigned.test", dns.TypeDS, dns.RcodeSuccess, false)
		m = ask(t, r.addr, "www.unsigned.test", dns.TypeA, withDO)
		if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 || m.AuthenticatedData {
			t.Errorf("www.unsigned.test: want an insecure answer\n%v", m)
		}
		m = ask(t, r.addr, "www.unsigned.test", dns.TypeMX, withDO)
		if m.Rcode != dns.RcodeSuccess || m.AuthenticatedData {
			t.Errorf("www.unsigned.test MX: want an insecure NODATA\n%v", m)
		}
	})
}
