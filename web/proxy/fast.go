package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/internal/transport"
)

// The fast path. Every client connection starts here: requests are parsed
// in place and plain GET/HEAD requests for fresh stored responses are
// answered straight from the cache's precomputed header and body with one
// writev. The first request that needs anything else (a miss, a
// validation, request directives, conditionals, a body, CONNECT, ...)
// hands the connection, with the unread bytes, to the net/http server,
// which serves it from then on.

// fastBufSize is the fast path's read buffer: a request header that
// doesn't fit is handed to net/http.
const fastBufSize = 8192

// fastConn is the state of one connection on the fast path.
type fastConn struct {
	s    *Server
	c    net.Conn
	br   *bufio.Reader
	peer netip.Addr
	hdr  []byte
	key  []byte
	// bufs is the response to write: header and body, slices of iov (so
	// no request allocates); WriteTo consumes it.
	bufs net.Buffers
	iov  [2][]byte
	// hdrDeadline is the current request header's deadline, zero while
	// the connection is idle between requests.
	hdrDeadline time.Time
	// out is the connection's *net.TCPConn when it is one: net.Buffers
	// uses writev only on it, not through a wrapper (which would cost a
	// write, and a TCP segment, per buffer).
	out io.Writer
}

// countedConn is a connection handed to net/http: closing it gives its
// slot (the connection and per-client limits) back to the transport.
type countedConn struct {
	net.Conn
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

// CloseWrite half-closes the connection when it supports it.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// busyReply answers a connection refused for a limit.
const busyReply = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

// replayConn is a connection handed to net/http: reads come from the
// fast path's buffer first.
//
// hdrDeadline, when set, is the deadline of a request header that had
// begun on the fast path: net/http's first read deadline (its header
// timeout, counted from the hand-over) is capped by it, so handing over
// does not give a slow client a second header timeout.
type replayConn struct {
	net.Conn
	br          *bufio.Reader
	hdrDeadline time.Time
}

func (r *replayConn) SetReadDeadline(t time.Time) error {
	if !r.hdrDeadline.IsZero() && !t.IsZero() {
		if t.After(r.hdrDeadline) {
			t = r.hdrDeadline
		}
		r.hdrDeadline = time.Time{}
	}
	return r.Conn.SetReadDeadline(t)
}

func (r *replayConn) SetDeadline(t time.Time) error {
	if err := r.SetReadDeadline(t); err != nil {
		return err
	}
	return r.Conn.SetWriteDeadline(t)
}

func (r *replayConn) Read(p []byte) (int, error) { return r.br.Read(p) }

// CloseWrite half-closes the connection when it supports it.
func (r *replayConn) CloseWrite() error {
	if cw, ok := r.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return r.Conn.Close()
}

// newFront returns the transport that accepts client connections for the
// fast path: the connection and per-client limits (trusted proxies exempt:
// they carry many clients) answered with 503, accept back-off, panics
// answered with 500, and s.conns kept as the count of open connections
// (those handed to net/http included, until closed).
func (s *Server) newFront(local string) *transport.StreamServer {
	return transport.NewStreamServer(transport.StreamConfig{
		MaxConns:      s.cfg.MaxConns,
		MaxConnsPerIP: s.cfg.MaxConnsPerClient,
		PerIPExempt:   s.trustedPeer,
		OnReject:      func(c net.Conn, _ transport.RejectReason) { io.WriteString(c, busyReply) },
		OnPanic: func(c net.Conn, _ any) {
			io.WriteString(c, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		},
		Observe: func(e transport.Event) {
			switch e.Kind {
			case transport.EventAccepted:
				s.conns.Add(1)
				s.traceConn(trace.ConnOpen, e.Remote.String(), local, "TCP connection opened")
			case transport.EventClosed:
				s.conns.Add(-1)
				s.traceConn(trace.ConnClose, e.Remote.String(), local, "TCP connection closed")
			}
		},
		Logger: s.log,
	}, transport.HandlerFunc(s.serveFast))
}

// serveFast serves one client connection on the fast path until a request
// needs net/http (the connection is then handed over) or the client goes.
// Between requests the connection is idle: Shutdown closes it.
func (s *Server) serveFast(_ context.Context, tc *transport.Conn) {
	var c net.Conn = tc
	fc := &fastConn{s: s, c: c, br: bufio.NewReaderSize(c, fastBufSize), out: tc.Conn}
	fc.peer = tc.RemoteAddrPort().Addr()
	if !s.allowedPeer(fc.peer) || s.deps.Trace.Enabled() {
		s.handOver(tc, fc)
		return
	}
	// The first request's header must arrive within the header timeout of
	// the connection's start (as net/http and nginx's client_header_timeout);
	// a later one's within the header timeout of its first byte, after
	// at most the idle timeout without one.
	fc.hdrDeadline = time.Now().Add(s.cfg.ReadHeaderTimeout.D())
	c.SetReadDeadline(fc.hdrDeadline)
	for {
		if !tc.SetIdle() {
			return // shutting down
		}
		n, ok, err := fc.next()
		if err != nil {
			return
		}
		if !ok {
			s.handOver(tc, fc)
			return
		}
		tc.SetBusy()
		fc.br.Discard(n)
		c.SetWriteDeadline(time.Now().Add(s.cfg.IdleTimeout.D()))
		_, err = fc.bufs.WriteTo(fc.out)
		fc.iov[1] = nil // don't keep an evicted body alive
		if err != nil {
			return
		}
		select {
		case <-s.stop:
			return
		default:
		}
		fc.hdrDeadline = time.Time{}
		c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout.D()))
	}
}

// handOver passes the connection, with the bytes the fast path buffered,
// to net/http; it keeps its slot until net/http closes it.
func (s *Server) handOver(tc *transport.Conn, fc *fastConn) {
	fc.c.SetDeadline(time.Time{})
	nc, release := tc.Detach()
	rc := &replayConn{Conn: &countedConn{Conn: nc, release: release}, br: fc.br, hdrDeadline: fc.hdrDeadline}
	if !s.handoff.Deliver(rc) {
		rc.Close()
	}
}

// next reads the next request header and, if it can be answered on the
// fast path, prepares the response in fc.bufs and returns the header's
// length. ok false means: hand over (nothing consumed).
func (fc *fastConn) next() (n int, ok bool, err error) {
	var head []byte
	for {
		b, _ := fc.br.Peek(fc.br.Buffered())
		end, done := scanHead(b)
		if end > 0 {
			head = b[:end]
			break
		}
		if done {
			return 0, false, nil // not plain CRLF framing: net/http decides
		}
		if len(b) > 0 && fc.hdrDeadline.IsZero() {
			// A request has begun: its header must be complete within the
			// header timeout of its first byte. The deadline is set once,
			// never moved by later bytes (a slowloris client sends one
			// at a time).
			fc.hdrDeadline = time.Now().Add(fc.s.cfg.ReadHeaderTimeout.D())
			fc.c.SetReadDeadline(fc.hdrDeadline)
		}
		if fc.br.Buffered() == fc.br.Size() {
			return 0, false, nil // a large header: net/http enforces the limit
		}
		if _, err := fc.br.Peek(fc.br.Buffered() + 1); err != nil {
			if fc.br.Buffered() > 0 {
				return 0, false, nil // let net/http answer the partial request
			}
			return 0, false, err
		}
	}
	if !fc.take(head) {
		return 0, false, nil
	}
	return len(head), true, nil
}

// take reports whether the fast path answers the request whose complete
// header (as scanHead framed it) is head, having prepared the response.
func (fc *fastConn) take(head []byte) bool {
	return len(head) <= fc.s.cfg.MaxHeaderBytes && fc.prepare(head)
}

// scanHead finds the end of the request header at the start of b: end is
// its length (through the blank line) when b holds all of it. The fast
// path takes only strict framing: every line ends in CRLF, with no bare
// CR or LF and no other control character but HTAB anywhere, so that it
// can never see the header end, or a field, where net/http sees another.
// done with end 0 means b can't be a header the fast path takes (hand
// it over); neither means more bytes are needed.
func scanHead(b []byte) (end int, done bool) {
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '\r':
			if i+1 == len(b) {
				return 0, false
			}
			if b[i+1] != '\n' {
				return 0, true // bare CR
			}
			if i >= 2 && b[i-1] == '\n' && b[i-2] == '\r' {
				return i + 2, true // CRLF CRLF
			}
			i++ // the LF
		case c == '\n':
			return 0, true // bare LF
		case c < ' ' && c != '\t', c == 0x7f:
			return 0, true // NUL and other controls
		}
	}
	return 0, false
}

// prepare parses one request header and looks it up in the cache.
func (fc *fastConn) prepare(head []byte) bool {
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	method, line, ok1 := bytes.Cut(line, []byte(" "))
	target, proto, ok2 := bytes.Cut(line, []byte(" "))
	if !ok1 || !ok2 || string(proto) != "HTTP/1.1" {
		return false
	}
	isHead := false
	switch string(method) {
	case "GET":
	case "HEAD":
		isHead = true
	default:
		return false
	}
	var host []byte
	haveHost := false
	for len(rest) > 2 {
		var l []byte
		l, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok || !isToken(name) {
			return false // obs-fold or a malformed field: net/http decides
		}
		value = bytes.Trim(value, " \t")
		switch {
		case eqFold(name, "host"):
			if haveHost || !validHost(value) {
				return false
			}
			host, haveHost = value, true
		case eqFold(name, "connection"):
			if !eqFold(value, "keep-alive") {
				return false // close, upgrade or named fields: the general path
			}
		case hasPrefixFold(name, "if-"), eqFold(name, "range"), eqFold(name, "cache-control"),
			eqFold(name, "pragma"), eqFold(name, "authorization"), eqFold(name, "via"),
			eqFold(name, "content-length"), eqFold(name, "transfer-encoding"), eqFold(name, "expect"),
			eqFold(name, "upgrade"), eqFold(name, "max-forwards"):
			return false
		}
	}
	if !haveHost {
		return false // HTTP/1.1 requires Host: net/http answers 400
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	key := fc.key[:0]
	switch {
	case len(target) > 0 && target[0] == '/':
		if !fc.s.reverseHost(host) {
			return false
		}
		key = append(key, "http://"...)
		key = appendHost(key, host)
		key = append(key, target...)
	case hasPrefixFold(target, "http://"):
		if !*fc.s.cfg.Forward {
			return false
		}
		hp := target[len("http://"):]
		slash := bytes.IndexByte(hp, '/')
		if slash < 0 {
			return false
		}
		if fc.s.reverseHost(hp[:slash]) {
			return false // absolute form for a reverse site: the general path decides
		}
		key = append(key, "http://"...)
		key = appendHost(key, hp[:slash])
		key = append(key, hp[slash:]...)
	default:
		return false
	}
	fc.key = key
	hdr, body, ok := fc.s.cache.FastHit(key, isHead, fc.s.via, fc.hdr[:0])
	fc.hdr = hdr
	if !ok {
		return false
	}
	fc.iov[0], fc.iov[1] = hdr, body
	fc.bufs = fc.iov[:1]
	if len(body) > 0 {
		fc.bufs = fc.iov[:2]
	}
	return true
}

// reverseHost reports whether host names a configured reverse site.
func (s *Server) reverseHost(host []byte) bool {
	if len(s.sites) == 0 {
		return false
	}
	if s.sites["*"] != nil {
		return true
	}
	return s.siteFor(string(host)) != nil
}

// appendHost appends host lower-cased, without the default port.
func appendHost(dst, host []byte) []byte {
	if bytes.HasSuffix(host, []byte(":80")) {
		host = host[:len(host)-3]
	}
	for _, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// isToken reports whether b is a non-empty token (RFC 9110 section 5.6.2),
// the only field names net/http accepts.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c >= 0x80 || !tokenByte[c] {
			return false
		}
	}
	return true
}

// validHost reports whether b is a Host value net/http accepts (the bytes
// of golang.org/x/net/http/httpguts.ValidHostHeader).
func validHost(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 || !hostByte[c] {
			return false
		}
	}
	return true
}

var tokenByte, hostByte = func() (tok, host [128]bool) {
	for c := '0'; c <= '9'; c++ {
		tok[c], host[c] = true, true
	}
	for c := 'a'; c <= 'z'; c++ {
		tok[c], host[c] = true, true
		tok[c-'a'+'A'], host[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		tok[c] = true
	}
	for _, c := range "!$%&'()*+,-.:;=[]_~" {
		host[c] = true
	}
	return
}()

func eqFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func hasPrefixFold(b []byte, lower string) bool {
	return len(b) >= len(lower) && eqFold(b[:len(lower)], lower)
}

// traceConn publishes a client connection's opening or closing.
func (s *Server) traceConn(typ, from, to, summary string) {
	if s.deps.Trace.Enabled() {
		s.deps.Trace.Publish(trace.Event{Type: typ, From: from, To: to, Proto: "tcp", Summary: summary})
	}
}
