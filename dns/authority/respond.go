package authority

import (
	"errors"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/dnsserver"
	"github.com/applayer/applayer/dns/zone"
)

// ServeDNS answers one query for the DNS server (dnsserver.Handler): over
// UDP from the answer cache when it can, over TCP with zone transfers and
// signed answers written on the connection.
func (s *Server) ServeDNS(req *dnsserver.Request, out []byte) []byte {
	if rc, ok := s.recursive(req); ok {
		return s.serveRecursive(req, out, rc)
	}
	if req.Proto == dnsserver.TCP {
		s.m.tcpQueries.Inc()
		if req.Stream != nil {
			if reply, done := s.serveStream(req, out); done {
				return reply
			}
		}
		reply, _ := s.respond(req, out)
		return reply
	}
	s.m.udpQueries.Inc()
	zs := s.zones.Load()
	var reply []byte
	if zs.fast != nil && s.beforeAnswer == nil {
		reply = s.answerFast(zs.fast, req, out)
	}
	switch {
	case reply != nil:
	case s.cache != nil:
		if reply = s.cache.get(zs, req.Wire, out, req.Now); reply != nil {
			s.m.rcode(int(reply[3] & 0xf))
			break
		}
		fallthrough
	default:
		var cacheable bool
		reply, cacheable = s.respond(req, out)
		if reply != nil && cacheable {
			s.cache.put(zs, req.Wire, reply, req.Now)
		}
	}
	if s.rrl != nil && len(reply) > 0 {
		reply = s.limit(req.From.Addr(), reply, zs)
	}
	return reply
}

// Respond answers one wire-format query. It returns the wire answer
// (packed into buf when it fits) or nil when the input deserves silence
// (a response, or fewer than 12 bytes). It never panics: a panic while
// answering becomes SERVFAIL.
func (s *Server) Respond(wire []byte, from netip.AddrPort, tcp bool, buf []byte) []byte {
	req := &dnsserver.Request{Wire: wire, From: from, Local: s.local, Proto: dnsserver.UDP, Now: s.deps.Now(), MaxUDP: s.cfg.MaxUDPSize}
	if tcp {
		req.Proto = dnsserver.TCP
	}
	return s.srv.Respond(req, buf)
}

// respond answers req and says whether the answer may be cached (it
// depends only on the query's bytes and the zones).
func (s *Server) respond(r *dnsserver.Request, buf []byte) (out []byte, cacheable bool) {
	wire := r.Wire
	if len(wire) < 12 || wire[2]&0x80 != 0 {
		s.m.dropped.Inc()
		return nil, false
	}
	req, err := r.Msg()
	if err != nil {
		s.m.rcode(dns.RcodeFormatError)
		return dnsserver.HeaderReply(wire, dns.RcodeFormatError, buf), false
	}
	tcp := r.Proto == dnsserver.TCP
	if t := req.IsTsig(); t != nil {
		return s.respondTSIG(r, req, t, buf), false
	}
	m, cacheable := s.handle(req, r.From, tcp)
	s.m.rcode(m.Rcode)
	// Compressed as NSD and Knot do (smaller datagrams; the UDP answer
	// cache pays the packing cost once per distinct query).
	if !tcp {
		m.Truncate(r.MaxSize())
		if m.Truncated {
			s.m.truncated.Inc()
		}
	}
	// After Truncate: it turns compression off for a message that fits
	// uncompressed.
	m.Compress = true
	out, err = m.PackBuffer(buf)
	if err != nil {
		s.log.Debug("pack answer", "err", err)
		m = new(dns.Msg)
		m.SetRcode(req, dns.RcodeServerFailure)
		out, _ = m.PackBuffer(buf)
		return out, false
	}
	return out, cacheable
}

// respondTSIG answers a signed query: verified, answered, and the answer
// signed with the same key (RFC 8945); a failed check gets NOTAUTH.
func (s *Server) respondTSIG(r *dnsserver.Request, req *dns.Msg, t *dns.TSIG, buf []byte) (out []byte) {
	tcp := r.Proto == dnsserver.TCP
	k, code := s.verifyTSIG(r.Wire, t)
	if code != 0 {
		s.m.rcode(dns.RcodeNotAuth)
		return tsigRejectWire(req, t, code, buf)
	}
	m, _ := s.handle(req, r.From, tcp)
	s.m.rcode(m.Rcode)
	if !tcp {
		m.Truncate(r.MaxSize() - len(k.name) - len(k.alg) - 64)
	}
	m.SetTsig(k.name, k.alg, tsigFudge, s.deps.Now().Unix())
	out, _, err := dns.TsigGenerate(m, k.secret, t.MAC, false)
	if err != nil {
		s.log.Debug("tsig sign", "err", err)
		return nil
	}
	return out
}

// Handle answers a parsed query (not a transfer). It is the server's
// semantics, independent of the transport; Respond adds truncation. A
// TSIG in req is taken as verified (Respond checks it first).
func (s *Server) Handle(req *dns.Msg, from netip.AddrPort, tcp bool) *dns.Msg {
	m, _ := s.handle(req, from, tcp)
	return m
}

func (s *Server) handle(req *dns.Msg, from netip.AddrPort, tcp bool) (*dns.Msg, bool) {
	if s.beforeAnswer != nil {
		s.beforeAnswer(req)
	}
	m, cacheable, _ := s.handleWith(s.zones.Load(), req, from, tcp, &s.rotate)
	return m, cacheable
}

// handleWith is handle with the zones and the counter that rotates
// address sets given; it
// also returns the size of the set it rotated (0: none), for the answer
// table, which precomputes every rotation.
func (s *Server) handleWith(zs *zoneSet, req *dns.Msg, from netip.AddrPort, tcp bool, rotate *atomic.Uint32) (*dns.Msg, bool, int) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionDesired = req.RecursionDesired
	if len(req.Question) != 1 {
		m.Question = nil
		m.Rcode = dns.RcodeFormatError
		return m, false, 0
	}
	opt, nopt := findOPT(req)
	if nopt > 1 || tsigMisplaced(req) {
		m.Rcode = dns.RcodeFormatError
		return m, false, 0
	}
	do := false
	if opt != nil {
		do = opt.Do()
		ro := s.replyOPT(opt, do)
		m.Extra = append(m.Extra, ro)
		if opt.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			return m, false, 0
		}
		if !s.options(opt, ro, from) {
			m.Rcode = dns.RcodeFormatError
			return m, false, 0
		}
	}
	switch req.Opcode {
	case dns.OpcodeQuery:
	case dns.OpcodeNotify:
		s.notified(req, from, m)
		return m, false, 0
	default:
		m.Rcode = dns.RcodeNotImplemented
		return m, false, 0
	}
	q := req.Question[0]
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		m.Rcode = dns.RcodeRefused
		return m, false, 0
	}
	switch q.Qtype {
	case dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY, 0:
		m.Rcode = dns.RcodeFormatError
		return m, false, 0
	case dns.TypeAXFR, dns.TypeIXFR:
		// Transfers go over TCP (serveStream); over UDP, AXFR is refused and
		// IXFR gets TC so the client retries over TCP.
		if q.Qtype == dns.TypeIXFR && !tcp {
			m.Truncated = true
			return m, false, 0
		}
		m.Rcode = dns.RcodeFormatError
		return m, false, 0
	case dns.TypeMAILA, dns.TypeMAILB:
		m.Rcode = dns.RcodeNotImplemented
		return m, false, 0
	}
	key := zone.Key(q.Name)
	z := zs.find(key, q.Qtype)
	if z == nil {
		m.Rcode = dns.RcodeRefused
		return m, false, 0
	}
	// The OPT record goes last: take it off while sections fill.
	extra := m.Extra
	m.Extra = nil
	l := lookup{z: z, m: m, do: do && z.Signed(), rotate: rotate}
	l.run(q)
	m.Extra = append(m.Extra, extra...)
	return m, !l.rotated && (opt == nil || len(opt.Option) == 0), l.rotatedN
}

// serveStream answers what a TCP query needs the connection for: signed
// queries (checked and answered through req.Stream, which signs) and zone
// transfers. done is false for the other queries.
func (s *Server) serveStream(r *dnsserver.Request, buf []byte) (reply []byte, done bool) {
	w := r.Stream
	if len(r.Wire) < 12 || r.Wire[2]&0x80 != 0 {
		return nil, false
	}
	req, err := r.Msg()
	if err != nil {
		return nil, false
	}
	from := r.From
	t := req.IsTsig()
	if t != nil {
		if err := w.TsigStatus(); err != nil {
			code := dns.RcodeBadSig
			if _, ok := s.tsig[strings.ToLower(t.Hdr.Name)]; !ok {
				code = dns.RcodeBadKey
			} else if errors.Is(err, dns.ErrTime) {
				code = dns.RcodeBadTime
			}
			s.log.Info("tsig check failed", "remote", from.String(), "key", t.Hdr.Name, "err", err)
			return tsigRejectWire(req, t, code, buf), true
		}
	}
	if len(req.Question) == 1 && (req.Question[0].Qtype == dns.TypeAXFR || req.Question[0].Qtype == dns.TypeIXFR) && req.Opcode == dns.OpcodeQuery {
		s.transfer(w, req, from)
		return nil, true
	}
	if t != nil {
		m := s.Handle(req, from, true)
		m.Compress = true
		m.SetTsig(t.Hdr.Name, t.Algorithm, tsigFudge, s.deps.Now().Unix())
		if err := w.WriteMsg(m); err != nil {
			s.log.Debug("tcp write", "remote", from.String(), "err", err)
		}
		return nil, true
	}
	return nil, false
}
