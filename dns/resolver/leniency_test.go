package resolver

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestMalformedQueries: an unknown EDNS version gets BADVERS with an OPT
// of version 0 (RFC 6891 6.1.3; Unbound does so), two OPT records FORMERR
// (RFC 6891 6.1.1; Unbound), and QTYPE 0 NOTIMP (as Knot answers; Unbound
// and NSD pass it on and answer NOERROR), never SERVFAIL.
func TestMalformedQueries(t *testing.T) {
	h := newHierarchy(t, 0)
	r := startResolver(t, h, nil)
	badvers := new(dns.Msg)
	badvers.SetQuestion("www.example.test.", dns.TypeA)
	badvers.SetEdns0(1232, false)
	badvers.IsEdns0().SetVersion(1)
	twoOPT := new(dns.Msg)
	twoOPT.SetQuestion("www.example.test.", dns.TypeA)
	twoOPT.SetEdns0(1232, false)
	twoOPT.Extra = append(twoOPT.Extra, &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: 4096}})
	qtype0 := new(dns.Msg)
	qtype0.SetQuestion("www.example.test.", 0)
	qtype0.SetEdns0(1232, false)
	c := &dns.Client{Timeout: 5 * time.Second}
	for _, tc := range []struct {
		name  string
		q     *dns.Msg
		rcode int
	}{
		{"EDNS version 1", badvers, dns.RcodeBadVers},
		{"two OPT records", twoOPT, dns.RcodeFormatError},
		{"QTYPE 0", qtype0, dns.RcodeNotImplemented},
	} {
		for _, net := range []string{"udp", "tcp"} {
			c.Net = net
			m, _, err := c.Exchange(tc.q, r.addr)
			if err != nil {
				t.Fatalf("%s over %s: %v", tc.name, net, err)
			}
			if m.Rcode != tc.rcode || len(m.Answer) != 0 {
				t.Errorf("%s over %s: rcode %d (%s) with %d answers, want %s", tc.name, net, m.Rcode, rcodeName(m.Rcode), len(m.Answer), rcodeName(tc.rcode))
			}
			if o := m.IsEdns0(); o == nil || o.Version() != 0 {
				t.Errorf("%s over %s: reply OPT %v, want one of version 0", tc.name, net, o)
			}
		}
	}
	// Still answering properly afterwards.
	if m := ask(t, r.addr, "www.example.test", dns.TypeA); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 2 {
		t.Errorf("normal query after the malformed ones: %v", m)
	}
}

// rcodeName names 16 BADVERS (miekg/dns's table says BADSIG, its TSIG
// meaning).
func rcodeName(rc int) string {
	if rc == dns.RcodeBadVers {
		return "BADVERS"
	}
	return dns.RcodeToString[rc]
}
