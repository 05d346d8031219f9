package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
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

// countedConn decrements the open-connection counts once when closed.
type countedConn struct {
	net.Conn
	n    *atomic.Int64
	s    *Server
	peer netip.Addr // counted against the per-client limit when valid
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.n.Add(-1)
		if c.peer.IsValid() {
			c.s.releaseClient(c.peer)
		}
	})
	return c.Conn.Close()
}

// admitClient counts a connection from peer against the per-client limit
// (trusted proxies are exempt: they carry many clients); false when the
// peer is at the limit. A valid returned address is to be released.
func (s *Server) admitClient(c net.Conn) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}, true
	}
	peer := ap.Addr().Unmap()
	if s.trustedPeer(peer) {
		return netip.Addr{}, true
	}
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if s.perClient[peer] >= s.cfg.MaxConnsPerClient {
		return netip.Addr{}, false
	}
	s.perClient[peer]++
	return peer, true
}

func (s *Server) releaseClient(peer netip.Addr) {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if s.perClient[peer]--; s.perClient[peer] <= 0 {
		delete(s.perClient, peer)
	}
}

// busy answers a connection refused for a limit and closes it.
func busy(c net.Conn) {
	c.SetWriteDeadline(time.Now().Add(time.Second))
	io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	c.Close()
}

// CloseWrite half-closes the connection when it supports it.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

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

// handoff is the net.Listener net/http serves: connections the fast path
// hands over.
type handoff struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func newHandoff(addr net.Addr) *handoff {
	return &handoff{ch: make(chan net.Conn), done: make(chan struct{}), addr: addr}
}

func (h *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.ch:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

func (h *handoff) Close() error {
	h.once.Do(func() { close(h.done) })
	return nil
}

func (h *handoff) Addr() net.Addr { return h.addr }

// give hands c to net/http; false when the server is closing.
func (h *handoff) give(c net.Conn) bool {
	select {
	case h.ch <- c:
		return true
	case <-h.done:
		return false
	}
}

// acceptLoop accepts client connections until the listener closes.
func (s *Server) acceptLoop(ln net.Listener) {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay < time.Second {
				delay *= 2
			}
			s.log.Warn("accept failed", "err", err)
			select {
			case <-time.After(delay):
			case <-s.stop:
				return
			}
			continue
		}
		delay = 0
		if s.conns.Add(1) > int64(s.cfg.MaxConns) {
			s.conns.Add(-1)
			busy(c)
			continue
		}
		peer, ok := s.admitClient(c)
		if !ok {
			s.conns.Add(-1)
			busy(c)
			continue
		}
		c = &countedConn{Conn: c, n: &s.conns, s: s, peer: peer}
		s.mu.Lock()
		select {
		case <-s.stop:
			s.mu.Unlock()
			c.Close()
			return
		default:
		}
		s.fast[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveFast(c)
	}
}

func (s *Server) serveFast(c net.Conn) {
	handed := false
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("panic on the fast path", "panic", v)
			io.WriteString(c, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		}
		s.mu.Lock()
		delete(s.fast, c)
		s.mu.Unlock()
		if !handed {
			c.Close()
		}
		s.wg.Done()
	}()
	fc := &fastConn{s: s, c: c, br: bufio.NewReaderSize(c, fastBufSize), out: c}
	if cc, ok := c.(*countedConn); ok {
		if tc, ok := cc.Conn.(*net.TCPConn); ok {
			fc.out = tc
		}
	}
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		fc.peer = ap.Addr().Unmap()
	}
	if !s.allowedPeer(fc.peer) || s.deps.Trace.Enabled() {
		handed = s.handOver(fc)
		return
	}
	// The first request's header must arrive within the header timeout of
	// the connection's start (as net/http and nginx's client_header_timeout);
	// a later one's within the header timeout of its first byte, after
	// at most the idle timeout without one.
	fc.hdrDeadline = time.Now().Add(s.cfg.ReadHeaderTimeout.D())
	c.SetReadDeadline(fc.hdrDeadline)
	for {
		n, ok, err := fc.next()
		if err != nil {
			return
		}
		if !ok {
			handed = s.handOver(fc)
			return
		}
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

func (s *Server) handOver(fc *fastConn) bool {
	fc.c.SetDeadline(time.Time{})
	return s.handoff.give(&replayConn{Conn: fc.c, br: fc.br, hdrDeadline: fc.hdrDeadline})
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
