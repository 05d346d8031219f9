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

// TestAggressiveWildcard: a validated wildcard expansion (the wildcard
// RRset with its RRSIG and the NSEC/NSEC3 proof) answers a later name the
// cached proof covers without any upstream query (RFC 8198 5.3): the
// answer has the queried owner name, the wildcard's RRSIG (labels field
// below the owner's label count) and the proof, it verifies with the
// zone's key, and carries AD. A name outside the proven range, a type the
// wildcard lacks and clients without DO behave as without synthesis.
func TestAggressiveWildcard(t *testing.T) {
	_, cfg := signedTree(t, 0, []signedZone{
		{origin: "sec.test.", host: 3},
		{origin: "n3.test.", host: 4, nsec3: true, iter: 5},
	})
	r := startValidating(t, cfg)
	upstream := func() float64 { return testutil.ToFloat64(r.m.upstreamQueries) }
	synthesized := func() float64 { return testutil.ToFloat64(r.m.aggressiveWildcard) }

	for _, zoneName := range []string{"sec.test.", "n3.test."} {
		t.Run(zoneName, func(t *testing.T) {
			keys := ask(t, r.addr, zoneName, dns.TypeDNSKEY, withDO)
			first := ask(t, r.addr, "x.wild."+zoneName, dns.TypeA, withDO)
			if first.Rcode != dns.RcodeSuccess || !first.AuthenticatedData || len(first.Answer) == 0 {
				t.Fatalf("first wildcard answer: %v", first)
			}
			// A second name: the cached proof must cover it too.
			var name string
			for i := 0; i < 1000 && name == ""; i++ {
				c := fmt.Sprintf("y%d.wild.%s", i, zoneName)
				for _, rr := range first.Ns {
					switch n := rr.(type) {
					case *dns.NSEC:
						if nsecCovers(n, c) {
							name = c
						}
					case *dns.NSEC3:
						if n.Cover(c) {
							name = c
						}
					}
				}
			}
			if name == "" {
				t.Fatalf("no other name covered by the proof in\n%v", first)
			}
			u, s := upstream(), synthesized()
			m := ask(t, r.addr, name, dns.TypeA, withDO)
			if du, ds := upstream()-u, synthesized()-s; du != 0 || ds != 1 {
				t.Fatalf("%s: %v upstream queries, %v synthesized; want 0 and 1", name, du, ds)
			}
			if m.Rcode != dns.RcodeSuccess || !m.AuthenticatedData {
				t.Fatalf("%s: want NOERROR with AD\n%v", name, m)
			}
			var rrs []dns.RR
			var sig *dns.RRSIG
			for _, rr := range m.Answer {
				if !strings.EqualFold(rr.Header().Name, name) {
					t.Errorf("owner %s, want %s", rr.Header().Name, name)
				}
				switch x := rr.(type) {
				case *dns.RRSIG:
					sig = x
				case *dns.A:
					if x.A.String() != "192.0.2.2" {
						t.Errorf("A %v, want 192.0.2.2", x.A)
					}
					rrs = append(rrs, x)
				}
			}
			if len(rrs) != 1 || sig == nil {
				t.Fatalf("%s: want one A and its RRSIG\n%v", name, m)
			}
			if int(sig.Labels) != dns.CountLabel("wild."+zoneName) {
				t.Errorf("RRSIG labels %d, want %d (expanded from *.wild)", sig.Labels, dns.CountLabel("wild."+zoneName))
			}
			verify := func(sig *dns.RRSIG, set []dns.RR) error {
				var err error
				for _, k := range keys.Answer {
					if key, ok := k.(*dns.DNSKEY); ok && key.KeyTag() == sig.KeyTag {
						if err = sig.Verify(key, set); err == nil {
							return nil
						}
					}
				}
				return fmt.Errorf("no key verifies %v: %v", sig, err)
			}
			// TTLs were counted down from the originals: verify with them.
			for _, rr := range rrs {
				rr.Header().Ttl = sig.OrigTtl
			}
			if err := verify(sig, rrs); err != nil {
				t.Errorf("answer: %v", err)
			}
			// The proof: a record covering the name (NSEC) or its next
			// closer (NSEC3), each signed.
			covered := false
			for _, rr := range m.Ns {
				var ok bool
				switch n := rr.(type) {
				case *dns.NSEC:
					ok = nsecCovers(n, name)
				case *dns.NSEC3:
					ok = n.Cover(name) && n.Flags&1 == 0
				case *dns.RRSIG:
					continue
				default:
					t.Errorf("unexpected %v", rr)
					continue
				}
				covered = covered || ok
				var psig *dns.RRSIG
				for _, s := range m.Ns {
					if x, isSig := s.(*dns.RRSIG); isSig && x.TypeCovered == rr.Header().Rrtype && strings.EqualFold(x.Hdr.Name, rr.Header().Name) {
						psig = x
					}
				}
				if psig == nil {
					t.Errorf("unsigned proof %v", rr)
					continue
				}
				c := dns.Copy(rr)
				c.Header().Ttl = psig.OrigTtl
				if err := verify(psig, []dns.RR{c}); err != nil {
					t.Errorf("proof: %v", err)
				}
			}
			if !covered {
				t.Errorf("%s: no proof record covers the name\n%v", name, m)
			}

			// Without DO: the data only, no RRSIG, no proof; still no query.
			u, s = upstream(), synthesized()
			plain := ask(t, r.addr, "z"+name, dns.TypeA)
			if upstream() != u {
				// Not covered by the same proof: asked; that is allowed.
				t.Logf("z%s was asked (outside the cached proof)", name)
			} else if synthesized()-s != 1 {
				t.Errorf("z%s: answered without a query but not synthesized", name)
			}
			if plain.Rcode != dns.RcodeSuccess || len(plain.Answer) != 1 || len(plain.Ns) != 0 {
				t.Errorf("plain client: want one A and nothing else\n%v", plain)
			}
			// A type the wildcard lacks is not synthesized as data.
			s = synthesized()
			m = ask(t, r.addr, name, dns.TypeMX, withDO)
			if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 0 || !m.AuthenticatedData || synthesized() != s {
				t.Errorf("%s MX: want a secure NODATA, not a synthesized answer\n%v", name, m)
			}
			// A name that exists is asked and answered with its own data.
			m = ask(t, r.addr, "www."+zoneName, dns.TypeA, withDO)
			if len(m.Answer) == 0 || !strings.Contains(m.String(), "192.0.2.1") {
				t.Errorf("www.%s: %v", zoneName, m)
			}
		})
	}
}
