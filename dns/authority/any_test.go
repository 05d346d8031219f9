package authority

import (
	"testing"

	"github.com/miekg/dns"
)

// TestANYMinimal: ANY is answered with one RRset (and its signatures with
// DO), as RFC 8482 allows and Knot answers (tried here: one RRset over UDP
// and TCP), so it no longer amplifies: the whole apex of a signed zone
// was 27 times the query.
func TestANYMinimal(t *testing.T) {
	s := newTestServer(t, Config{Zones: []ZoneConfig{{Origin: "example.com.", File: "testdata/example.com.zone", Sign: &SignConfig{KeyDir: t.TempDir()}}}})
	for _, name := range []string{"example.com.", "www.example.com.", "x.wild.example.com."} {
		for _, tcp := range []bool{false, true} {
			q := new(dns.Msg)
			q.SetQuestion(name, dns.TypeANY)
			q.SetEdns0(1232, true)
			qb, _ := q.Pack()
			out := s.Respond(qb, client, tcp, make([]byte, 65535))
			m := new(dns.Msg)
			if err := m.Unpack(out); err != nil {
				t.Fatal(err)
			}
			types := map[uint16]bool{}
			for _, rr := range m.Answer {
				if sig, ok := rr.(*dns.RRSIG); ok {
					types[sig.TypeCovered] = true
					continue
				}
				types[rr.Header().Rrtype] = true
			}
			if m.Rcode != dns.RcodeSuccess || len(types) != 1 {
				t.Errorf("ANY %s tcp=%v: %s with the types %v, want one RRset\n%v", name, tcp, dns.RcodeToString[m.Rcode], types, m)
			}
			if !tcp && len(out) > 10*len(qb) { // as much as one signed RRset with its proof
				t.Errorf("ANY %s: %d bytes for a %d-byte query", name, len(out), len(qb))
			}
		}
	}
}
