package authority

import "github.com/miekg/dns"

// tsigMisplaced reports a TSIG record anywhere but last in the additional
// section (or more than one). RFC 8945 5.1 wants FORMERR for it, as Knot
// answers; taking such a message as unsigned would let a signed-looking
// request through an address ACL.
func tsigMisplaced(m *dns.Msg) bool {
	for _, sec := range [][]dns.RR{m.Answer, m.Ns} {
		for _, rr := range sec {
			if rr.Header().Rrtype == dns.TypeTSIG {
				return true
			}
		}
	}
	for i, rr := range m.Extra {
		if rr.Header().Rrtype == dns.TypeTSIG && i != len(m.Extra)-1 {
			return true
		}
	}
	return false
}
