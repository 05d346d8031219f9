package authority

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/netip"

	"github.com/miekg/dns"
)

func findOPT(m *dns.Msg) (*dns.OPT, int) {
	var opt *dns.OPT
	n := 0
	for _, rr := range m.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			if opt == nil {
				opt = o
			}
			n++
		}
	}
	return opt, n
}

func (s *Server) replyOPT(req *dns.OPT, do bool) *dns.OPT {
	o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	o.SetUDPSize(uint16(s.cfg.MaxUDPSize))
	if do {
		o.SetDo()
	}
	return o
}

// options handles the query's EDNS options, adding NSID and the cookie
// to ro. It returns false for a malformed cookie (FORMERR).
func (s *Server) options(opt, ro *dns.OPT, from netip.AddrPort) bool {
	for _, o := range opt.Option {
		switch o := o.(type) {
		case *dns.EDNS0_NSID:
			if s.cfg.NSID != "" {
				ro.Option = append(ro.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: hex.EncodeToString([]byte(s.cfg.NSID))})
			}
		case *dns.EDNS0_COOKIE:
			raw, err := hex.DecodeString(o.Cookie)
			if err != nil || len(raw) < 8 || (len(raw) > 8 && len(raw) < 16) || len(raw) > 40 {
				return false
			}
			ro.Option = append(ro.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: hex.EncodeToString(s.serverCookie(raw[:8], from))})
		}
	}
	return true
}

// serverCookie returns the client cookie followed by an RFC 9018 server
// cookie: version 1, three reserved bytes, a timestamp and an 8-byte MAC
// over the client cookie, the header and the client's address.
func (s *Server) serverCookie(client []byte, from netip.AddrPort) []byte {
	out := make([]byte, 0, 24)
	out = append(out, client...)
	out = append(out, 1, 0, 0, 0)
	out = binary.BigEndian.AppendUint32(out, uint32(s.deps.Now().Unix()))
	mac := hmac.New(sha256.New, s.secret[:])
	mac.Write(out)
	ip := from.Addr().As16()
	mac.Write(ip[:])
	return mac.Sum(out)[:24]
}
