package authority

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/zone"
	"github.com/applayer/applayer/internal/trace"
)

func (s *Server) traceMsg(from, to, proto string, wire []byte) {
	m := new(dns.Msg)
	if err := m.Unpack(wire); err != nil {
		s.deps.Trace.Publish(trace.Event{From: from, To: to, Proto: proto, Summary: "malformed message", Bytes: len(wire)})
		return
	}
	s.deps.Trace.Publish(trace.Event{From: from, To: to, Proto: proto, Summary: Summary(m), Bytes: len(wire)})
}

// Summary describes a DNS message in one line for traces: "query A
// www.example.com. rd" or "response NOERROR aa A www.example.com. 2/0/1".
func Summary(m *dns.Msg) string {
	var b strings.Builder
	if m.Response {
		b.WriteString("response ")
		b.WriteString(dns.RcodeToString[m.Rcode])
	} else if m.Opcode != dns.OpcodeQuery {
		b.WriteString(strings.ToLower(dns.OpcodeToString[m.Opcode]))
	} else {
		b.WriteString("query")
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{m.Authoritative, "aa"}, {m.Truncated, "tc"}, {m.RecursionDesired, "rd"}, {m.RecursionAvailable, "ra"}, {m.AuthenticatedData, "ad"}} {
		if f.on {
			b.WriteString(" " + f.name)
		}
	}
	if len(m.Question) > 0 {
		q := m.Question[0]
		fmt.Fprintf(&b, " %s %s", dns.TypeToString[q.Qtype], q.Name)
	}
	if m.Response {
		fmt.Fprintf(&b, " %d/%d/%d", len(m.Answer), len(m.Ns), len(m.Extra))
	}
	return b.String()
}

// Respond answers one wire-format query. It returns the wire answer
// (packed into buf when it fits) or nil when the input deserves silence
// (a response, or fewer than 12 bytes). It never panics: a panic while
// answering becomes SERVFAIL.
func (s *Server) Respond(wire []byte, from netip.AddrPort, tcp bool, buf []byte) []byte {
	out, _ := s.respond(wire, from, tcp, buf)
	return out
}

// respond is Respond that also says whether the answer may be cached
// (depends only on the query's bytes and the zones).
func (s *Server) respond(wire []byte, from netip.AddrPort, tcp bool, buf []byte) (out []byte, cacheable bool) {
	if len(wire) < 12 || wire[2]&0x80 != 0 {
		s.m.dropped.Inc()
		return nil, false
	}
	if s.deps.Trace.Enabled() {
		proto := "dns/udp"
		if tcp {
			proto = "dns/tcp"
		}
		s.traceMsg(from.String(), s.local, proto, wire)
	}
	req := new(dns.Msg)
	if err := req.Unpack(wire); err != nil {
		s.m.rcode(dns.RcodeFormatError)
		return formErr(wire, buf), false
	}
	if t := req.IsTsig(); t != nil {
		return s.respondTSIG(wire, req, t, from, tcp, buf), false
	}
	defer func() {
		if r := recover(); r != nil {
			s.m.panics.Inc()
			s.log.Error("panic answering query", "panic", r, "remote", from.String())
			m := new(dns.Msg)
			m.SetRcode(req, dns.RcodeServerFailure)
			out, _ = m.PackBuffer(buf)
			cacheable = false
		}
	}()
	m, cacheable := s.handle(req, from, tcp)
	s.m.rcode(m.Rcode)
	// Compressed as NSD and Knot do (smaller datagrams; the UDP answer
	// cache pays the packing cost once per distinct query).
	m.Compress = true
	if !tcp {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = min(max(int(opt.UDPSize()), dns.MinMsgSize), s.cfg.MaxUDPSize)
		}
		m.Truncate(size)
		if m.Truncated {
			s.m.truncated.Inc()
		}
	}
	out, err := m.PackBuffer(buf)
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
func (s *Server) respondTSIG(wire []byte, req *dns.Msg, t *dns.TSIG, from netip.AddrPort, tcp bool, buf []byte) (out []byte) {
	defer func() {
		if r := recover(); r != nil {
			s.m.panics.Inc()
			s.log.Error("panic answering query", "panic", r, "remote", from.String())
			m := new(dns.Msg)
			m.SetRcode(req, dns.RcodeServerFailure)
			out, _ = m.PackBuffer(buf)
		}
	}()
	k, code := s.verifyTSIG(wire, t)
	if code != 0 {
		s.m.rcode(dns.RcodeNotAuth)
		return tsigRejectWire(req, t, code, buf)
	}
	m, _ := s.handle(req, from, tcp)
	s.m.rcode(m.Rcode)
	if !tcp {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = min(max(int(opt.UDPSize()), dns.MinMsgSize), s.cfg.MaxUDPSize)
		}
		m.Truncate(size - len(k.name) - len(k.alg) - 64)
	}
	m.SetTsig(k.name, k.alg, tsigFudge, s.deps.Now().Unix())
	out, _, err := dns.TsigGenerate(m, k.secret, t.MAC, false)
	if err != nil {
		s.log.Debug("tsig sign", "err", err)
		return nil
	}
	return out
}

// formErr answers an unparsable query with its header only: same ID and
// opcode, QR set, RCODE FORMERR, no records.
func formErr(wire, buf []byte) []byte {
	out := append(buf[:0], wire[:12]...)
	out[2] = 0x80 | wire[2]&0x79 // QR, keep opcode and RD
	out[3] = dns.RcodeFormatError
	for i := 4; i < 12; i++ {
		out[i] = 0
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
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionDesired = req.RecursionDesired
	if len(req.Question) != 1 {
		m.Question = nil
		m.Rcode = dns.RcodeFormatError
		return m, false
	}
	opt, nopt := findOPT(req)
	if nopt > 1 || tsigMisplaced(req) {
		m.Rcode = dns.RcodeFormatError
		return m, false
	}
	do := false
	if opt != nil {
		do = opt.Do()
		ro := s.replyOPT(opt, do)
		m.Extra = append(m.Extra, ro)
		if opt.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			return m, false
		}
		if !s.options(opt, ro, from) {
			m.Rcode = dns.RcodeFormatError
			return m, false
		}
	}
	switch req.Opcode {
	case dns.OpcodeQuery:
	case dns.OpcodeNotify:
		s.notified(req, from, m)
		return m, false
	default:
		m.Rcode = dns.RcodeNotImplemented
		return m, false
	}
	q := req.Question[0]
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		m.Rcode = dns.RcodeRefused
		return m, false
	}
	switch q.Qtype {
	case dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY, 0:
		m.Rcode = dns.RcodeFormatError
		return m, false
	case dns.TypeAXFR, dns.TypeIXFR:
		// Transfers go over TCP (serveTCP); over UDP, AXFR is refused and
		// IXFR gets TC so the client retries over TCP.
		if q.Qtype == dns.TypeIXFR && !tcp {
			m.Truncated = true
			return m, false
		}
		m.Rcode = dns.RcodeFormatError
		return m, false
	case dns.TypeMAILA, dns.TypeMAILB:
		m.Rcode = dns.RcodeNotImplemented
		return m, false
	}
	key := zone.Key(q.Name)
	z := s.zones.Load().find(key, q.Qtype)
	if z == nil {
		m.Rcode = dns.RcodeRefused
		return m, false
	}
	// The OPT record goes last: take it off while sections fill.
	extra := m.Extra
	m.Extra = nil
	l := lookup{z: z, m: m, do: do && z.Signed(), rotate: &s.rotate}
	l.run(q)
	m.Extra = append(m.Extra, extra...)
	return m, !l.rotated && (opt == nil || len(opt.Option) == 0)
}
