package server

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// The cleartext port speaks HTTP/1.1 and HTTP/2 with prior knowledge (h2c).
// Instead of letting net/http guess (it waits for 14 bytes, and reads an
// invalid HTTP/2 preface as an HTTP/1 request), a sniffer reads only as
// many bytes as it needs to decide and hands the connection, bytes
// replayed, to an HTTP/1-only or an h2c-only http.Server:
//
//   - a prefix of the 24-byte preface "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n": wait
//     for the rest; the whole preface is h2c, anything else after it is an
//     invalid connection preface and the connection is closed (RFC 9113
//     section 3.4);
//   - a known method followed by a space ("GET ", 4 bytes): HTTP/1;
//   - another token and a space: HTTP/1 when the first line ends in
//     HTTP/d.d (net/http then answers 405, 505, ...), else closed;
//   - anything else (binary, no method): closed without an answer, as an
//     invalid HTTP/2 preface.

const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

type verdict int

const (
	needMore verdict = iota
	isHTTP1
	isH2C
	reject
)

var knownMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
	"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK"}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c < 0x80 && bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0
}

// classify decides what the first bytes of a cleartext connection are;
// full says no more bytes will fit in the sniff buffer.
func classify(b []byte, full bool) verdict {
	n := min(len(b), len(h2Preface))
	if string(b[:n]) == h2Preface[:n] {
		if n == len(h2Preface) {
			return isH2C
		}
		if full {
			return reject
		}
		return needMore
	}
	if len(b) >= 16 && string(b[:16]) == h2Preface[:16] {
		return reject // the preface's request line with a bad remainder
	}
	b = bytes.TrimLeft(b, "\r\n") // RFC 9112 2.2: empty lines before a request
	i := 0
	for i < len(b) && isTokenChar(b[i]) {
		i++
	}
	switch {
	case i == len(b) && !full:
		return needMore
	case i == 0 || i == len(b) || b[i] != ' ':
		return reject
	}
	for _, m := range knownMethods {
		if string(b[:i]) == m {
			return isHTTP1
		}
	}
	eol := bytes.IndexByte(b, '\n')
	if eol < 0 {
		if full {
			return isHTTP1 // a long line from an unknown method: net/http limits it
		}
		return needMore
	}
	line := bytes.TrimRight(b[:eol], "\r")
	v := line[bytes.LastIndexByte(line, ' ')+1:]
	if len(v) == 8 && string(v[:5]) == "HTTP/" && isDigit(v[5]) && v[6] == '.' && isDigit(v[7]) {
		return isHTTP1
	}
	return reject
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

const sniffBufSize = 4 << 10

var sniffBufs = sync.Pool{New: func() any { return new([sniffBufSize]byte) }}

// sniffer accepts on the cleartext listener and dispatches connections to
// an HTTP/1 and an h2c listener.
type sniffer struct {
	ln      net.Listener
	timeout time.Duration
	log     *slog.Logger
	h1, h2  *chanListener

	mu      sync.Mutex
	closed  bool
	pending map[net.Conn]struct{}
	wg      sync.WaitGroup
}

func newSniffer(ln net.Listener, timeout time.Duration, log *slog.Logger) *sniffer {
	s := &sniffer{ln: ln, timeout: timeout, log: log, pending: map[net.Conn]struct{}{}}
	s.h1 = newChanListener(ln.Addr())
	s.h2 = newChanListener(ln.Addr())
	s.wg.Go(s.acceptLoop)
	return s
}

func (s *sniffer) acceptLoop() {
	delay := time.Millisecond
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("accept", "err", err)
			t := time.NewTimer(delay) // e.g. EMFILE: back off, as net/http does
			<-t.C
			delay = min(2*delay, time.Second)
			continue
		}
		delay = time.Millisecond
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.pending[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(func() { s.sniff(c) })
	}
}

func (s *sniffer) sniff(c net.Conn) {
	buf := sniffBufs.Get().(*[sniffBufSize]byte)
	c.SetReadDeadline(time.Now().Add(s.timeout))
	n, v := 0, needMore
	for v == needMore {
		m, err := c.Read(buf[n:])
		n += m
		v = classify(buf[:n], n == len(buf))
		if err != nil && v == needMore {
			v = reject
		}
	}
	c.SetReadDeadline(time.Time{})
	s.mu.Lock()
	delete(s.pending, c)
	s.mu.Unlock()
	var dst *chanListener
	switch v {
	case isHTTP1:
		dst = s.h1
	case isH2C:
		dst = s.h2
	default:
		sniffBufs.Put(buf)
		s.log.Debug("cleartext connection is neither HTTP/1 nor an HTTP/2 preface: closed", "remote", c.RemoteAddr())
		c.Close()
		return
	}
	pc := newPrefixConn(c, buf, n)
	if !dst.deliver(pc) {
		c.Close()
	}
}

// close stops accepting, closes connections still being sniffed and waits
// for the sniffing goroutines.
func (s *sniffer) close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.pending {
		c.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

// chanListener is a net.Listener fed by the sniffer.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener(a net.Addr) *chanListener {
	return &chanListener{addr: a, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// prefixConn replays the sniffed bytes before reading from the connection.
// On TCP it embeds *net.TCPConn so net/http keeps sendfile (ReadFrom) and
// CloseWrite.
type prefixConn struct {
	*net.TCPConn
	p prefix
}

type prefixGeneric struct {
	net.Conn
	p prefix
}

type prefix struct {
	buf  *[sniffBufSize]byte
	rest []byte
}

func (p *prefix) read(b []byte) int {
	n := copy(b, p.rest)
	p.rest = p.rest[n:]
	if len(p.rest) == 0 {
		sniffBufs.Put(p.buf)
		p.buf, p.rest = nil, nil
	}
	return n
}

func newPrefixConn(c net.Conn, buf *[sniffBufSize]byte, n int) net.Conn {
	p := prefix{buf: buf, rest: buf[:n]}
	if tc, ok := c.(*net.TCPConn); ok {
		return &prefixConn{TCPConn: tc, p: p}
	}
	return &prefixGeneric{Conn: c, p: p}
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if c.p.buf != nil {
		return c.p.read(b), nil
	}
	return c.TCPConn.Read(b)
}

func (c *prefixGeneric) Read(b []byte) (int, error) {
	if c.p.buf != nil {
		return c.p.read(b), nil
	}
	return c.Conn.Read(b)
}

// WriteTo replays the prefix before the kernel's fast path.
func (c *prefixConn) WriteTo(w io.Writer) (int64, error) {
	var n int64
	if c.p.buf != nil {
		m, err := w.Write(c.p.rest)
		n += int64(m)
		sniffBufs.Put(c.p.buf)
		c.p.buf, c.p.rest = nil, nil
		if err != nil {
			return n, err
		}
	}
	m, err := c.TCPConn.WriteTo(w)
	return n + m, err
}
