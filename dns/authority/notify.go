package authority

import (
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// notifyAllowed reports whether a NOTIFY (RFC 1996) for the secondary zone
// src, sent from from, is acted on. As NSD (allow-notify) and Knot (an acl
// with action notify) do, it is accepted from the primary's address and
// from any address or prefix the zone's allow_notify lists; primaries
// often send from another address than the one they serve on (Knot uses
// the host's default source address). When the zone has a primary_key,
// the NOTIFY must be signed with it, and then comes from any address. An
// allow_notify entry naming a key likewise needs the NOTIFY signed with
// it. The TSIG, when present, was verified before the request got here.
func (s *Server) notifyAllowed(src *source, req *dns.Msg, from netip.AddrPort) bool {
	key := ""
	if t := req.IsTsig(); t != nil {
		key = strings.ToLower(t.Hdr.Name)
	}
	a := from.Addr().Unmap()
	if src.cfg.PrimaryKey != "" {
		return key == strings.ToLower(dns.Fqdn(src.cfg.PrimaryKey))
	}
	if pri, err := netip.ParseAddrPort(src.cfg.Primary); err == nil && pri.Addr().Unmap() == a {
		return true
	}
	for _, x := range src.cfg.AllowNotify {
		e, err := parseACL(x, s.tsig)
		if err != nil {
			continue // Validate rejected it already
		}
		if e.prefix != nil && !e.prefix.Contains(a) {
			continue
		}
		if e.key != "" && e.key != key {
			continue
		}
		return true
	}
	return false
}
