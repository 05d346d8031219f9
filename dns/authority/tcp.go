package authority

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/trace"
)

func (s *Server) serveTCP(w dns.ResponseWriter, req *dns.Msg) {
	s.m.tcpQueries.Inc()
	from, _ := netip.ParseAddrPort(w.RemoteAddr().String())
	if t := req.IsTsig(); t != nil {
		// miekg/dns checked the MAC on the wire bytes (TsigSecret).
		if err := w.TsigStatus(); err != nil {
			code := dns.RcodeBadSig
			if _, ok := s.tsig[strings.ToLower(t.Hdr.Name)]; !ok {
				code = dns.RcodeBadKey
			} else if errors.Is(err, dns.ErrTime) {
				code = dns.RcodeBadTime
			}
			s.log.Info("tsig check failed", "remote", from.String(), "key", t.Hdr.Name, "err", err)
			w.Write(tsigRejectWire(req, t, code, nil))
			return
		}
	}
	if len(req.Question) == 1 && (req.Question[0].Qtype == dns.TypeAXFR || req.Question[0].Qtype == dns.TypeIXFR) && req.Opcode == dns.OpcodeQuery {
		if s.deps.Trace.Enabled() {
			s.deps.Trace.Publish(trace.Event{From: from.String(), To: s.local, Proto: "dns/tcp", Summary: Summary(req), Bytes: req.Len()})
		}
		s.transfer(w, req, from)
		return
	}
	if t := req.IsTsig(); t != nil {
		m := s.Handle(req, from, true)
		m.Compress = true
		m.SetTsig(t.Hdr.Name, t.Algorithm, tsigFudge, s.deps.Now().Unix())
		if err := w.WriteMsg(m); err != nil {
			s.log.Debug("tcp write", "remote", from.String(), "err", err)
		}
		return
	}
	wire, err := req.Pack()
	if err != nil {
		m := new(dns.Msg)
		m.SetRcodeFormatError(req)
		w.WriteMsg(m)
		return
	}
	out := s.Respond(wire, from, true, make([]byte, 0, 4096))
	if out == nil {
		return
	}
	if _, err := w.Write(out); err != nil {
		s.log.Debug("tcp write", "remote", from.String(), "err", err)
		return
	}
	if s.deps.Trace.Enabled() {
		s.traceMsg(s.local, from.String(), "dns/tcp", out)
	}
}

// limitListener caps concurrent connections; extra ones wait in Accept.
type limitListener struct {
	net.Listener
	sem chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
