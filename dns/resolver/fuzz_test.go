package resolver

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func seedReplies(f *testing.F) {
	m := new(dns.Msg)
	m.SetQuestion("www.example.test.", dns.TypeA)
	m.Response = true
	m.Ns = append(m.Ns, &dns.NS{Hdr: dns.RR_Header{Name: "example.test.", Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: 60}, Ns: "ns.example.test."})
	m.Extra = append(m.Extra, &dns.A{Hdr: dns.RR_Header{Name: "ns.example.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: []byte{192, 0, 2, 1}})
	b, _ := m.Pack()
	f.Add(b)
	m.Ns, m.Extra = nil, nil
	m.Answer = []dns.RR{
		&dns.DNAME{Hdr: dns.RR_Header{Name: "example.test.", Rrtype: dns.TypeDNAME, Class: dns.ClassINET, Ttl: 60}, Target: "x.test."},
		&dns.CNAME{Hdr: dns.RR_Header{Name: "www.example.test.", Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 60}, Target: "www.x.test."},
	}
	b, _ = m.Pack()
	f.Add(b)
}

// FuzzReplyProcessing feeds arbitrary bytes through the path an upstream
// reply takes: matching, the bailiwick filter, classification, chain
// extraction and negative-answer handling. It must never panic.
func FuzzReplyProcessing(f *testing.F) {
	seedReplies(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		s := &Server{}
		q := new(dns.Msg)
		q.SetQuestion("www.example.test.", dns.TypeA)
		if len(b) >= 2 {
			q.Id = uint16(b[0])<<8 | uint16(b[1])
		}
		m, ok := s.match(q, b)
		if !ok {
			m = new(dns.Msg)
			if m.Unpack(b) != nil {
				return
			}
		}
		for _, zone := range []string{".", "test.", "example.test."} {
			c := m.Copy()
			sanitize(c, zone)
			for _, rr := range append(append(c.Answer, c.Ns...), c.Extra...) {
				if !dns.IsSubDomain(zone, rr.Header().Name) {
					t.Fatalf("sanitize kept %v outside %s", rr, zone)
				}
			}
			k, child := classify(c, "www.example.test.", dns.TypeA, zone)
			if k == kindReferral && (!dns.IsSubDomain(zone, child) || child == zone) {
				t.Fatalf("referral to %q from %q", child, zone)
			}
			extractChain(c.Answer, "www.example.test.", dns.TypeA)
			negativeAuthority(c)
		}
		ttlOffsets(b)
	})
}

// FuzzParseQuery checks the fast-path query parser against a full unpack:
// whatever it accepts must be a well-formed query with the same question.
func FuzzParseQuery(f *testing.F) {
	for _, e := range []bool{false, true} {
		m := new(dns.Msg)
		m.SetQuestion("WwW.example.test.", dns.TypeAAAA)
		if e {
			m.SetEdns0(1232, true)
		}
		b, _ := m.Pack()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var q query
		if parseQuery(b, &q) != nil {
			return
		}
		m := new(dns.Msg)
		if err := m.Unpack(b); err != nil {
			t.Fatalf("fast path accepted what unpack rejects: %v", err)
		}
		if len(m.Question) != 1 || m.Question[0].Qtype != q.Qtype {
			t.Fatalf("question mismatch: %v vs type %d", m.Question, q.Qtype)
		}
		want := make([]byte, 256)
		n, err := dns.PackDomainName(strings.ToLower(m.Question[0].Name), want, 0, nil, false)
		if err != nil || string(want[:n]) != string(q.Key[:len(q.Key)-3]) {
			t.Fatalf("name %q vs %q (%v)", q.Key, m.Question[0].Name, err)
		}
	})
}
