package resolver

import "github.com/miekg/dns"

// malformedEDNS answers, in resp, a query whose EDNS the resolver cannot
// take (RFC 6891 6.1.1, 6.1.3; as Unbound answers): more than one OPT
// record is FORMERR, an EDNS version other than 0 is BADVERS with an OPT
// of version 0. It reports whether it did.
func malformedEDNS(req, resp *dns.Msg) bool {
	n := 0
	var opt *dns.OPT
	for _, rr := range req.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			n++
			opt = o
		}
	}
	switch {
	case n > 1:
		resp.SetRcode(req, dns.RcodeFormatError)
	case opt != nil && opt.Version() != 0:
		resp.SetRcode(req, dns.RcodeBadVers)
	default:
		return false
	}
	resp.SetEdns0(1232, false)
	return true
}
