package server

import (
	"crypto/tls"
	"net"
	"net/netip"
	"strings"

	"github.com/applayer/applayer/internal/trace"
)

// traceConn publishes a connection's opening or closing (client to server)
// when tracing is on.
func (s *Server) traceConn(c net.Conn, typ, summary string) {
	if !s.deps.Trace.Enabled() {
		return
	}
	s.traceConnAddrs(c.RemoteAddr().String(), c.LocalAddr().String(), typ, summary)
}

// traceRemote is traceConnAddrs for a client's address: formatted only
// when tracing is on (the fast path's accept and close events come once
// per connection).
func (s *Server) traceRemote(from netip.AddrPort, to, typ, summary string) {
	if s.deps.Trace.Enabled() {
		s.traceConnAddrs(from.String(), to, typ, summary)
	}
}

// traceConnAddrs publishes a connection's opening or closing, from the
// client's address to ours, when tracing is on.
func (s *Server) traceConnAddrs(from, to, typ, summary string) {
	if s.deps.Trace.Enabled() {
		s.deps.Trace.Publish(trace.Event{Type: typ, From: from, To: to, Proto: "tcp", Summary: summary})
	}
}

// traceHandshakes returns tc set to publish every completed handshake
// (proto "tls" or "quic") when tracing is on: GetConfigForClient learns the
// connection's addresses and hands the handshake a VerifyConnection that
// publishes the negotiated version, ALPN and cipher suite. With tracing
// off it returns nil and the handshake uses tc unchanged.
func (s *Server) traceHandshakes(tc *tls.Config, proto string) *tls.Config {
	base := tc.Clone()
	// Session ticket keys are made on first use and copied by Clone: made
	// now, every traced handshake's clone shares them and resumption
	// works as without tracing (quic-go's http3 does the same).
	_, _ = base.DecryptTicket(nil, tls.ConnectionState{})
	tc.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		tr := s.deps.Trace
		if !tr.Enabled() || hello.Conn == nil {
			return nil, nil
		}
		from, to := hello.Conn.RemoteAddr().String(), hello.Conn.LocalAddr().String()
		c := base.Clone()
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			tr.Publish(trace.Event{Type: trace.Handshake, From: from, To: to, Proto: proto, Summary: HandshakeSummary(cs)})
			return nil
		}
		return c, nil
	}
	return tc
}

// HandshakeSummary is the trace summary of a completed TLS handshake:
// version, ALPN, cipher suite, server name, resumption.
func HandshakeSummary(cs tls.ConnectionState) string {
	var b strings.Builder
	b.WriteString(tls.VersionName(cs.Version))
	b.WriteString(" handshake")
	if cs.NegotiatedProtocol != "" {
		b.WriteString(" ALPN " + cs.NegotiatedProtocol)
	}
	b.WriteString(" " + tls.CipherSuiteName(cs.CipherSuite))
	if cs.ServerName != "" {
		b.WriteString(" SNI " + cs.ServerName)
	}
	if cs.DidResume {
		b.WriteString(" resumed")
	}
	return b.String()
}
