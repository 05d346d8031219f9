package router

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/dnsserver"
)

// zoneWire is the zone's fixed parts, packed once: the domain's wire name
// (lower case), the SOA's and the NS records' rdata.
type zoneWire struct {
	name []byte   // lower-cased wire form of the domain
	soa  []byte   // SOA rdata (uncompressed names)
	ns   [][]byte // NS rdata
	ttl  uint32
}

func newZoneWire(domain string, ns []string, ttl uint32) (zoneWire, error) {
	z := zoneWire{ttl: ttl}
	pack := func(name string) ([]byte, error) {
		b := make([]byte, 256)
		n, err := dns.PackDomainName(dns.Fqdn(strings.ToLower(name)), b, 0, nil, false)
		if err != nil {
			return nil, fmt.Errorf("name %q: %w", name, err)
		}
		return b[:n], nil
	}
	var err error
	if z.name, err = pack(domain); err != nil {
		return z, err
	}
	mname, err := pack(ns[0])
	if err != nil {
		return z, err
	}
	rname, err := pack("hostmaster." + domain)
	if err != nil {
		return z, err
	}
	z.soa = append(append([]byte(nil), mname...), rname...)
	// serial 1, refresh 3600, retry 600, expire 86400, minimum = ttl
	for _, v := range []uint32{1, 3600, 600, 86400, ttl} {
		z.soa = binary.BigEndian.AppendUint32(z.soa, v)
	}
	for _, n := range ns {
		b, err := pack(n)
		if err != nil {
			return z, err
		}
		z.ns = append(z.ns, b)
	}
	return z, nil
}

// locate finds where the domain begins in a lower-cased wire name: the
// offset of the suffix equal to the domain at a label boundary, or -1
// when the name is not in the zone.
func (z *zoneWire) locate(name []byte) int {
	off := 0
	for off < len(name) {
		if len(name)-off == len(z.name) && string(name[off:]) == string(z.name) {
			return off
		}
		if name[off] == 0 {
			break
		}
		off += int(name[off]) + 1
	}
	return -1
}

// ecs is a query's Client Subnet option.
type ecs struct {
	present bool
	family  uint16
	source  uint8
	addr    netip.Addr // masked to source bits
	raw     []byte     // the ADDRESS octets as sent
}

var errECS = errors.New("router: malformed client subnet option")

// parseECS reads the Client Subnet option from the OPT record's rdata.
// A malformed option (unknown family, prefix longer than the family's,
// too few or too many address octets, bits set beyond the source prefix)
// is an error: FORMERR, as RFC 7871 section 7.2.1 asks.
func parseECS(rdata []byte) (ecs, error) {
	var e ecs
	for len(rdata) >= 4 {
		code := binary.BigEndian.Uint16(rdata)
		l := int(binary.BigEndian.Uint16(rdata[2:]))
		if 4+l > len(rdata) {
			return e, errECS
		}
		opt := rdata[4 : 4+l]
		rdata = rdata[4+l:]
		if code != dns.EDNS0SUBNET {
			continue
		}
		if e.present || len(opt) < 4 {
			return e, errECS
		}
		e.present = true
		e.family = binary.BigEndian.Uint16(opt)
		e.source = opt[2]
		if opt[3] != 0 { // SCOPE must be 0 in queries
			return e, errECS
		}
		e.raw = opt[4:]
		var max int
		switch e.family {
		case 1:
			max = 32
		case 2:
			max = 128
		default:
			return e, errECS
		}
		if int(e.source) > max || len(e.raw) != (int(e.source)+7)/8 {
			return e, errECS
		}
		var buf [16]byte
		copy(buf[:], e.raw)
		if e.source%8 != 0 && len(e.raw) > 0 && e.raw[len(e.raw)-1]&(0xff>>(e.source%8)) != 0 {
			return e, errECS
		}
		if e.family == 1 {
			e.addr = netip.AddrFrom4([4]byte(buf[:4]))
		} else {
			e.addr = netip.AddrFrom16(buf)
		}
	}
	if len(rdata) != 0 {
		return e, errECS
	}
	return e, nil
}

// optRdata returns the rdata of the query's OPT record (q parsed by
// dnsserver.ParseQuery, EDNS set).
func optRdata(wire []byte, q *dnsserver.Query) []byte {
	off := q.NameEnd + 4
	if off+11 > len(wire) {
		return nil
	}
	l := int(binary.BigEndian.Uint16(wire[off+9:]))
	if off+11+l > len(wire) {
		return nil
	}
	return wire[off+11 : off+11+l]
}

// ServeDNS answers one query (dnsserver.Handler). Plain queries are
// answered on a fast path that packs the reply by hand; anything else
// (ANY, odd flags, unparsable) goes through miekg/dns.
func (s *Server) ServeDNS(req *dnsserver.Request, out []byte) []byte {
	q, ok := req.Query()
	if !ok {
		return s.slow(req, out)
	}
	s.m.queries(req.Proto)
	var e ecs
	if q.EDNS {
		var err error
		if e, err = parseECS(optRdata(req.Wire, q)); err != nil {
			s.m.formerr.Inc()
			return s.errorReply(req, dns.RcodeFormatError, out)
		}
	}
	name := q.Key[:len(q.Key)-3]
	at := s.zone.locate(name)
	if at < 0 {
		s.m.refused.Inc()
		return s.errorReply(req, dns.RcodeRefused, out)
	}
	// header and question, as asked
	out = append(out[:0], req.Wire[:q.NameEnd+4]...)
	out[2] = 0x84 | req.Wire[2]&0x01 // QR, AA, RD as asked
	out[3] = req.Wire[3] & 0x10      // CD as asked, RCODE 0
	var an, ns uint16
	scope := uint8(0)
	switch {
	case at == 0 && q.Qtype == dns.TypeSOA:
		out, an = s.appendSOA(out, 12), 1
	case at == 0 && q.Qtype == dns.TypeNS:
		for _, rd := range s.zone.ns {
			out = appendRR(out, 12, dns.TypeNS, s.zone.ttl, rd)
			an++
		}
	case at == 0 || (q.Qtype != dns.TypeA && q.Qtype != dns.TypeAAAA):
		out, ns = s.appendSOA(out, 12+at), 1
	default:
		var a netip.Addr
		a, scope = s.decide(req, e, name)
		switch {
		case !a.IsValid():
			return s.errorReply(req, dns.RcodeServerFailure, out)
		case a.Is4() && q.Qtype == dns.TypeA:
			b := a.As4()
			out, an = appendRR(out, 12, dns.TypeA, s.zone.ttl, b[:]), 1
		case a.Is6() && q.Qtype == dns.TypeAAAA:
			b := a.As16()
			out, an = appendRR(out, 12, dns.TypeAAAA, s.zone.ttl, b[:]), 1
		default:
			out, ns = s.appendSOA(out, 12+at), 1
		}
	}
	binary.BigEndian.PutUint16(out[4:], 1)
	binary.BigEndian.PutUint16(out[6:], an)
	binary.BigEndian.PutUint16(out[8:], ns)
	binary.BigEndian.PutUint16(out[10:], 0)
	if q.EDNS {
		binary.BigEndian.PutUint16(out[10:], 1)
		out = appendOPT(out, &e, scope)
	}
	s.m.noerror.Inc()
	return out
}

// appendRR appends a record whose owner is the name at offset owner (a
// compression pointer).
func appendRR(out []byte, owner int, typ uint16, ttl uint32, rdata []byte) []byte {
	out = append(out, 0xC0|byte(owner>>8), byte(owner))
	out = binary.BigEndian.AppendUint16(out, typ)
	out = binary.BigEndian.AppendUint16(out, dns.ClassINET)
	out = binary.BigEndian.AppendUint32(out, ttl)
	out = binary.BigEndian.AppendUint16(out, uint16(len(rdata)))
	return append(out, rdata...)
}

func (s *Server) appendSOA(out []byte, owner int) []byte {
	return appendRR(out, owner, dns.TypeSOA, s.zone.ttl, s.zone.soa)
}

// appendOPT appends the reply's OPT record: our buffer size, and the
// client subnet echoed with its scope when the query had one.
func appendOPT(out []byte, e *ecs, scope uint8) []byte {
	out = append(out, 0)
	out = binary.BigEndian.AppendUint16(out, dns.TypeOPT)
	out = binary.BigEndian.AppendUint16(out, 1232)
	out = append(out, 0, 0, 0, 0)
	if !e.present {
		return binary.BigEndian.AppendUint16(out, 0)
	}
	if e.source == 0 {
		scope = 0 // RFC 7871 7.2.1: no address given, the answer is for all
	}
	l := 4 + len(e.raw)
	out = binary.BigEndian.AppendUint16(out, uint16(4+l))
	out = binary.BigEndian.AppendUint16(out, dns.EDNS0SUBNET)
	out = binary.BigEndian.AppendUint16(out, uint16(l))
	out = binary.BigEndian.AppendUint16(out, e.family)
	out = append(out, e.source, scope)
	return append(out, e.raw...)
}

func (s *Server) errorReply(req *dnsserver.Request, rcode int, out []byte) []byte {
	switch rcode {
	case dns.RcodeServerFailure:
		s.m.servfail.Inc()
	}
	return dnsserver.ErrorReply(req, rcode, false, 1232, out)
}

// slow answers what the fast path does not read: other opcodes (NOTIMP),
// EDNS versions (BADVERS), zone transfers (REFUSED: the zone is
// computed per client, there is nothing to transfer), and ANY (answered
// as A, RFC 8482 allows a subset).
func (s *Server) slow(req *dnsserver.Request, out []byte) []byte {
	s.m.queries(req.Proto)
	m, err := req.Msg()
	if err != nil || m.Response {
		s.m.formerr.Inc()
		return s.errorReply(req, dns.RcodeFormatError, out)
	}
	if m.Opcode != dns.OpcodeQuery {
		return s.errorReply(req, dns.RcodeNotImplemented, out)
	}
	if len(m.Question) != 1 || len(m.Answer) != 0 || len(m.Ns) != 0 {
		s.m.formerr.Inc()
		return s.errorReply(req, dns.RcodeFormatError, out)
	}
	opt := m.IsEdns0()
	if opt != nil && opt.Version() != 0 {
		r := new(dns.Msg)
		r.SetRcode(m, dns.RcodeBadVers)
		r.SetEdns0(1232, false)
		b, _ := r.PackBuffer(out)
		return b
	}
	q := m.Question[0]
	if q.Qclass != dns.ClassINET {
		s.m.refused.Inc()
		return s.errorReply(req, dns.RcodeRefused, out)
	}
	name := make([]byte, 256)
	n, err := dns.PackDomainName(strings.ToLower(q.Name), name, 0, nil, false)
	if err != nil {
		s.m.formerr.Inc()
		return s.errorReply(req, dns.RcodeFormatError, out)
	}
	name = name[:n]
	at := s.zone.locate(name)
	if at < 0 || q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		s.m.refused.Inc()
		return s.errorReply(req, dns.RcodeRefused, out)
	}
	var e ecs
	if opt != nil {
		buf := make([]byte, len(req.Wire)+64)
		n, perr := dns.PackRR(opt, buf, 0, nil, false)
		if perr != nil || n < 11 {
			s.m.formerr.Inc()
			return s.errorReply(req, dns.RcodeFormatError, out)
		}
		if e, err = parseECS(buf[11:n]); err != nil {
			s.m.formerr.Inc()
			return s.errorReply(req, dns.RcodeFormatError, out)
		}
	}
	r := new(dns.Msg)
	r.SetReply(m)
	r.Authoritative = true
	soa := func() dns.RR {
		rr, _ := dns.NewRR(fmt.Sprintf("%s %d IN SOA %s hostmaster.%s 1 3600 600 86400 %d", s.cfg.Domain, s.zone.ttl, s.cfg.NS[0], s.cfg.Domain, s.zone.ttl))
		return rr
	}
	if at == 0 || (q.Qtype != dns.TypeANY && q.Qtype != dns.TypeA && q.Qtype != dns.TypeAAAA) {
		// the apex, or a type the router does not route: SOA
		rr := soa()
		if at == 0 && (q.Qtype == dns.TypeSOA || q.Qtype == dns.TypeANY) {
			r.Answer = append(r.Answer, rr)
		} else {
			r.Ns = append(r.Ns, rr)
		}
		if opt != nil {
			r.SetEdns0(1232, false)
		}
		b, err := r.PackBuffer(out)
		if err != nil {
			return s.errorReply(req, dns.RcodeServerFailure, out)
		}
		s.m.noerror.Inc()
		return b
	}
	a, scope := s.decide(req, e, name)
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: s.zone.ttl}
	switch {
	case !a.IsValid():
		return s.errorReply(req, dns.RcodeServerFailure, out)
	case a.Is4():
		hdr.Rrtype = dns.TypeA
		r.Answer = append(r.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
	default:
		hdr.Rrtype = dns.TypeAAAA
		r.Answer = append(r.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
	}
	if len(r.Answer) == 0 {
		r.Ns = append(r.Ns, soa())
	}
	if opt != nil {
		r.SetEdns0(1232, false)
		if e.present {
			sub := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: e.family, SourceNetmask: e.source, SourceScope: scope, Address: e.addr.AsSlice()}
			if e.source == 0 {
				sub.SourceScope = 0
			}
			r.IsEdns0().Option = append(r.IsEdns0().Option, sub)
		}
	}
	b, err := r.PackBuffer(out)
	if err != nil {
		return s.errorReply(req, dns.RcodeServerFailure, out)
	}
	s.m.noerror.Inc()
	return b
}
