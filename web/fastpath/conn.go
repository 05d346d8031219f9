package fastpath

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/applayer/applayer/internal/transport"
)

// BufSize is the read buffer of a busy connection: a request header that
// does not fit is handed to net/http (which enforces its own limit).
const BufSize = 8192

// inlineBody is the largest body copied into the batch's header buffer;
// larger ones are written from where they are (one more iovec).
const inlineBody = 4096

// parkWait is how long a connection waits for its next request in its
// goroutine before it is parked (when the server parks at all).
const parkWait = 25 * time.Millisecond

// maxBatch caps the bytes a batch of pipelined responses gathers before
// it is written.
const maxBatch = 256 << 10

// Handler answers requests on the fast path.
type Handler interface {
	// ServeFast answers r by appending its complete response to w and
	// returns true, or returns false having appended nothing: the
	// connection then goes to net/http, r first.
	ServeFast(r *Request, w *Writer) bool
}

// Verdict is Config.Preface's decision on a connection's first bytes.
type Verdict int

// Verdicts.
const (
	// HTTP1: serve the connection here.
	HTTP1 Verdict = iota
	// More: read more bytes first.
	More
	// Reject: close the connection without an answer.
	Reject
	// Divert: give the connection, bytes replayed, to Config.Divert.
	Divert
)

// Config configures a Server. Zero durations take the documented
// defaults.
type Config struct {
	// ReadHeaderTimeout bounds a request header: the first within this
	// of the connection's start, later ones within this of their first
	// byte. Default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a connection idle this long between requests,
	// and bounds each batch's write. Default 60s.
	IdleTimeout time.Duration
	// MaxHeaderBytes: a larger request header is handed over (net/http
	// answers 431). At most (and default) BufSize.
	MaxHeaderBytes int
	// HandOver receives a connection the fast path gives up, reading the
	// bytes it buffered first; it returns false when it cannot take it
	// (the connection is then closed).
	HandOver func(c net.Conn) bool
	// Preface, when set, decides from a connection's first bytes (full:
	// no more fit) whether it is HTTP/1 at all.
	Preface func(b []byte, full bool) Verdict
	// Divert receives the connections Preface diverts, as HandOver.
	Divert func(c net.Conn) bool
}

// Server runs the fast path on the connections of a
// transport.StreamServer (it is its Handler).
type Server struct {
	cfg   Config
	h     Handler
	pool  sync.Pool // *state
	date  atomic.Pointer[dateLine]
	clock func() time.Time
	held  atomic.Int64 // buffers (states) connections hold now
	// slack is how far an idle or write deadline may lag behind exact
	// before it is moved (moving one costs a timer update): a second, or
	// a quarter of a shorter IdleTimeout.
	slack time.Duration
}

// dateLine is a cached "Date: ...\r\n" field for one second.
type dateLine struct {
	sec  int64
	line []byte
}

// New returns a fast-path server answering with h.
func New(cfg Config, h Handler) *Server {
	if cfg.ReadHeaderTimeout <= 0 {
		cfg.ReadHeaderTimeout = 10 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 60 * time.Second
	}
	if cfg.MaxHeaderBytes <= 0 || cfg.MaxHeaderBytes > BufSize {
		cfg.MaxHeaderBytes = BufSize
	}
	s := &Server{cfg: cfg, h: h, clock: time.Now, slack: min(time.Second, cfg.IdleTimeout/4)}
	s.pool.New = func() any { return new(state) }
	return s
}

// state is what a connection needs only while it has bytes to work on:
// pooled, so an idle keep-alive connection holds no buffer.
type state struct {
	buf  [BufSize]byte
	r, w int // buffered bytes are buf[r:w]
	req  Request
	wr   Writer
}

// conn is one connection on the fast path.
type conn struct {
	s   *Server
	tc  *transport.Conn
	raw syscall.RawConn // nil when the connection has none
	st  *state          // nil while idle with nothing buffered
	// hdrDeadline is the current request header's deadline, zero while
	// the connection is idle between requests.
	hdrDeadline time.Time
	// rdl and wdl are the idle read and write deadlines last set: moved
	// only when a second or more stale (a deadline costs a timer update).
	rdl, wdl time.Time
	// last is when the last batch began (the idle deadline counts from
	// it: one clock read per batch).
	last time.Time
	// readFn and writeFn are the RawConn callbacks (nil without raw); rn,
	// rerr, wb and werr carry their results.
	readFn, writeFn func(uintptr) bool
	rn              int
	rerr, werr      error
	wb              []byte
	// sendFn is the RawConn callback writing out, a batch with file
	// bodies.
	sendFn  func(uintptr) bool
	out     []part
	fin     bool // the batch being written is the last (sysWriteLast)
	preface bool // Preface has not decided yet
	gone    bool // handed over: no longer ours
	fresh   bool // nothing read yet
}

// Writer gathers the responses of one batch of pipelined requests.
// Handlers append header bytes to B and bodies with Body.
type Writer struct {
	// B is the batch's buffer: append a response's header (and small
	// bodies, through Body) to it.
	B     []byte
	segs  []seg
	iov   net.Buffers
	close bool
	c     *conn
	now   time.Time
}

// seg is a large body written after B[:end]: bytes, or (done set) n
// bytes at off of the file with descriptor fd, sent with sendfile(2).
type seg struct {
	end    int
	body   []byte
	fd     int
	off, n int64
	done   Releaser
}

// Releaser lets go of a file a response body is sent from (SendFile).
type Releaser interface {
	// Release is called once the batch holding the body was written, or
	// abandoned.
	Release()
}

// part is one piece of a batch being written by sendReady: bytes, or
// (file set) n bytes of a file from off.
type part struct {
	b      []byte
	file   bool
	fd     int
	off, n int64
}

// Body appends a response body: copied into B when small, else written
// from b (which must stay unchanged until the batch is written).
func (w *Writer) Body(b []byte) {
	if len(b) <= inlineBody {
		w.B = append(w.B, b...)
		return
	}
	w.segs = append(w.segs, seg{end: len(w.B), body: b})
}

// CanSendFile reports whether SendFile may be used on this connection:
// on Linux, when the fast path writes the socket itself.
func (w *Writer) CanSendFile() bool { return canSendFile && w.c.raw != nil }

// SendFile appends a response body of n bytes at offset off of the file
// with descriptor fd (a regular file, open until done.Release), sent with
// sendfile(2) after the bytes before it (which go out with MSG_MORE, so
// a response's header and the start of its body share a segment). Use it
// only when CanSendFile. The file's offset is not used or moved, so many
// connections may send from one descriptor. A file that turns out shorter
// than off+n closes the connection (the response cannot be completed).
func (w *Writer) SendFile(fd int, off, n int64, done Releaser) {
	w.segs = append(w.segs, seg{end: len(w.B), fd: fd, off: off, n: n, done: done})
}

// AppendDate appends the Date field line ("Date: ...\r\n"), rebuilt at
// most once a second.
func (w *Writer) AppendDate(dst []byte) []byte {
	return append(dst, w.c.s.dateLine(w.now)...)
}

// Now is the time the batch began (one clock read per batch).
func (w *Writer) Now() time.Time { return w.now }

// CloseAfter closes the connection after this response (the handler
// writes "Connection: close"). A request with Connection: close does so
// by itself.
func (w *Writer) CloseAfter() { w.close = true }

// Remote is the client's address.
func (w *Writer) Remote() netip.AddrPort { return w.c.tc.RemoteAddrPort() }

// LocalAddr is the connection's local address.
func (w *Writer) LocalAddr() net.Addr { return w.c.tc.LocalAddr() }

// Len is the number of bytes gathered so far.
func (w *Writer) Len() int {
	n := len(w.B)
	for _, s := range w.segs {
		n += len(s.body) + int(s.n)
	}
	return n
}

func (s *Server) dateLine(now time.Time) []byte {
	sec := now.Unix()
	if d := s.date.Load(); d != nil && d.sec == sec {
		return d.line
	}
	b := append([]byte("Date: "), now.UTC().AppendFormat(nil, http.TimeFormat)...)
	b = append(b, "\r\n"...)
	s.date.Store(&dateLine{sec, b})
	return b
}

// ServeConn implements transport.Handler.
func (s *Server) ServeConn(_ context.Context, tc *transport.Conn) {
	c := &conn{s: s, tc: tc, preface: s.cfg.Preface != nil, fresh: true}
	if sc, ok := tc.Conn.(syscall.Conn); ok && canRaw {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
			c.readFn, c.writeFn, c.sendFn = c.readReady, c.writeReady, c.sendReady
		}
	}
	if !c.serve() {
		return // handed over
	}
	c.release()
}

// HandOverNow gives a connection to Config.HandOver before reading from
// it (e.g. for clients the fast path must not serve).
func (s *Server) HandOverNow(tc *transport.Conn) {
	c := &conn{s: s, tc: tc}
	c.handOver(false, s.cfg.HandOver)
}

// getState takes an empty buffer from the pool.
func (s *Server) getState() *state {
	st := s.pool.Get().(*state)
	st.r, st.w = 0, 0
	s.held.Add(1)
	return st
}

// putState gives a buffer back to the pool.
func (s *Server) putState(st *state) {
	s.held.Add(-1)
	s.pool.Put(st)
}

// Buffers reports how many read buffers (of BufSize bytes) connections
// hold now: those with bytes to work on. An idle connection holds none.
func (s *Server) Buffers() int { return int(s.held.Load()) }

func (c *conn) release() {
	if c.st != nil {
		c.s.putState(c.st)
		c.st = nil
	}
}

// readReady is the RawConn.Read callback: it reads what the socket has
// into the connection's buffer, taking one from the pool only when there
// are bytes (an idle connection waits without one), and returns false to
// wait in the poller when there are none. RawConn.Read clears the
// poller's readiness before the first call, so the first call asks the
// socket: one read(2) when the next request is already there.
func (c *conn) readReady(fd uintptr) bool {
	st := c.st
	if st == nil {
		st = c.s.getState()
	}
	for {
		n, errno := sysRead(fd, st.buf[st.w:])
		switch errno {
		case 0:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if c.st == nil {
				c.s.putState(st)
			}
			return false
		default:
			c.rerr = os.NewSyscallError("read", errno)
		}
		c.st = st
		if errno == 0 {
			if n == 0 {
				c.rerr = io.EOF
			}
			st.w += n
			c.rn = n
		}
		return true
	}
}

// writeReady is the RawConn.Write callback: it writes c.wb, returning
// false to wait in the poller when the socket's buffer is full.
func (c *conn) writeReady(fd uintptr) bool {
	for len(c.wb) > 0 {
		var n int
		var errno syscall.Errno
		if c.fin {
			n, errno = sysWriteLast(fd, c.wb)
		} else {
			n, errno = sysWrite(fd, c.wb)
		}
		switch errno {
		case 0:
			c.wb = c.wb[n:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werr = os.NewSyscallError("write", errno)
			return true
		}
	}
	return true
}

// read reads into the connection's buffer (taking one when it has none).
func (c *conn) read() (int, error) {
	if c.raw == nil {
		if c.st == nil {
			c.st = c.s.getState()
		}
		st := c.st
		n, err := c.tc.Read(st.buf[st.w:])
		st.w += n
		return n, err
	}
	c.rn, c.rerr = 0, nil
	if err := c.raw.Read(c.readFn); err != nil {
		return 0, err
	}
	return c.rn, c.rerr
}

// write writes b whole.
func (c *conn) write(b []byte) error {
	if c.raw == nil {
		_, err := c.tc.Conn.Write(b)
		return err
	}
	c.wb, c.werr = b, nil
	err := c.raw.Write(c.writeFn)
	c.wb = nil
	if err != nil {
		return err
	}
	return c.werr
}

// serve runs the connection; false means it was handed over (and no
// longer ours).
func (c *conn) serve() bool {
	tc, cfg := c.tc, &c.s.cfg
	c.hdrDeadline = time.Now().Add(cfg.ReadHeaderTimeout)
	for {
		if !tc.SetIdle() {
			return true // shutting down
		}
		if c.hdrDeadline.IsZero() {
			if d := c.last.Add(cfg.IdleTimeout); d.Sub(c.rdl) > time.Second {
				tc.SetReadDeadline(d)
				c.rdl = d
			}
		} else {
			tc.SetReadDeadline(c.hdrDeadline)
			c.rdl = time.Time{}
		}
		end, ok := c.readHead()
		if !ok {
			return !c.gone
		}
		tc.SetBusy()
		st := c.st
		w := &st.wr
		c.last = time.Now()
		w.B, w.segs, w.close, w.c, w.now = w.B[:0], w.segs[:0], false, c, c.last
		for end > 0 {
			head := st.buf[st.r : st.r+end]
			if end > cfg.MaxHeaderBytes || !Parse(head, &st.req) || !c.s.h.ServeFast(&st.req, w) {
				if !c.flush(false) {
					return true
				}
				return c.giveUp(false)
			}
			st.r += end
			if st.req.Close {
				w.close = true
			}
			if w.close || w.Len() > maxBatch {
				break
			}
			end, _ = ScanHead(st.buf[st.r:st.w])
		}
		if !c.flush(w.close) || w.close || tc.ShuttingDown() {
			return true
		}
		c.hdrDeadline = time.Time{}
	}
}

// flush writes the batch; last says the connection is closed right after.
func (c *conn) flush(last bool) bool {
	w := &c.st.wr
	if len(w.B) == 0 && len(w.segs) == 0 {
		return true
	}
	if d := w.now.Add(c.s.cfg.IdleTimeout); d.Sub(c.wdl) > time.Second {
		c.tc.SetWriteDeadline(d)
		c.wdl = d
	}
	var err error
	switch {
	case len(w.segs) == 0:
		c.fin = last
		err = c.write(w.B)
		c.fin = false
	case w.files():
		err = c.sendParts(w)
		// A file may take long to send: the idle timeout counts from
		// its end.
		c.last = time.Now()
	default:
		iov, prev := w.iov[:0], 0
		for _, s := range w.segs {
			if s.end > prev {
				iov = append(iov, w.B[prev:s.end])
			}
			iov = append(iov, s.body)
			prev = s.end
		}
		if prev < len(w.B) {
			iov = append(iov, w.B[prev:])
		}
		w.iov = iov
		_, err = iov.WriteTo(c.tc.Conn)
		clear(w.iov[:cap(w.iov)]) // don't keep evicted bodies alive
	}
	for _, s := range w.segs {
		if s.done != nil {
			s.done.Release()
		}
	}
	clear(w.segs)
	w.B, w.segs = w.B[:0], w.segs[:0]
	return err == nil
}

// files reports whether the batch has a body sent from a file.
func (w *Writer) files() bool {
	for _, s := range w.segs {
		if s.done != nil {
			return true
		}
	}
	return false
}

// errTruncated: a file sent with SendFile ended before its body did.
var errTruncated = errors.New("fastpath: file shorter than its response body (changed while sent)")

// sendParts writes a batch with file bodies (CanSendFile held when they
// were added, so the connection is raw).
func (c *conn) sendParts(w *Writer) error {
	out, prev := c.out[:0], 0
	for _, s := range w.segs {
		if s.end > prev {
			out = append(out, part{b: w.B[prev:s.end]})
		}
		if s.done != nil {
			out = append(out, part{file: true, fd: s.fd, off: s.off, n: s.n})
		} else {
			out = append(out, part{b: s.body})
		}
		prev = s.end
	}
	if prev < len(w.B) {
		out = append(out, part{b: w.B[prev:]})
	}
	c.out, c.werr = out, nil
	err := c.raw.Write(c.sendFn)
	clear(out[:cap(out)])
	c.out = out[:0]
	if err != nil {
		return err
	}
	return c.werr
}

// sendReady is the RawConn.Write callback for sendParts: bytes with
// send(2) (MSG_MORE while more follows), file bodies with sendfile(2).
// Before waiting in the poller after progress it moves the write
// deadline on, so the idle timeout bounds a stall, not a long download.
func (c *conn) sendReady(fd uintptr) bool {
	progress := false
	for len(c.out) > 0 {
		p := &c.out[0]
		var n int
		var errno syscall.Errno
		op := "write"
		if p.file {
			op = "sendfile"
			if p.n == 0 {
				c.out = c.out[1:]
				continue
			}
			n, errno = sysSendfile(fd, p.fd, &p.off, p.n)
			if errno == 0 {
				if n == 0 {
					c.werr = errTruncated
					return true
				}
				p.n -= int64(n)
			}
		} else {
			if len(p.b) == 0 {
				c.out = c.out[1:]
				continue
			}
			n, errno = sysSend(fd, p.b, len(c.out) > 1)
			if errno == 0 {
				p.b = p.b[n:]
			}
		}
		switch errno {
		case 0:
			progress = true
		case syscall.EINTR:
		case syscall.EAGAIN:
			if progress {
				if d := time.Now().Add(c.s.cfg.IdleTimeout); d.Sub(c.wdl) > c.s.slack {
					c.tc.SetWriteDeadline(d)
					c.wdl = d
				}
			}
			return false
		default:
			c.werr = os.NewSyscallError(op, errno)
			return true
		}
	}
	return true
}

// readHead makes sure a complete request header is buffered and returns
// its length. ok false means the connection was closed or handed over.
func (c *conn) readHead() (end int, ok bool) {
	cfg := &c.s.cfg
	for {
		if st := c.st; st != nil && st.r < st.w {
			b := st.buf[st.r:st.w]
			if c.preface {
				switch cfg.Preface(b, st.r == 0 && st.w == BufSize) {
				case More:
					goto read
				case Reject:
					return 0, false
				case Divert:
					return 0, c.giveUp2(cfg.Divert)
				}
				c.preface = false
			}
			end, done := ScanHead(b)
			if end > 0 {
				return end, true
			}
			if done || len(b) >= cfg.MaxHeaderBytes {
				return 0, c.giveUp(false) // not plain CRLF framing or large: net/http decides
			}
			if c.hdrDeadline.IsZero() {
				// A request has begun: its header must be complete within
				// the header timeout of its first byte. The deadline is set
				// once, never moved by later bytes (a slowloris client
				// sends one at a time).
				c.hdrDeadline = time.Now().Add(cfg.ReadHeaderTimeout)
				c.tc.SetReadDeadline(c.hdrDeadline)
				c.rdl = time.Time{}
			}
		}
	read:
		if c.st != nil && c.st.r == c.st.w {
			c.release() // idle: wait without a buffer
		}
		var n int
		var err error
		if c.st == nil && c.raw != nil && !c.fresh && c.tc.Parkable() {
			// Many connections: one that stays idle waits without a
			// goroutine (the server runs the handler again when bytes
			// come); one whose next request comes within parkWait keeps
			// its goroutine (parking and waking cost more than the wait).
			idle := c.rdl
			if c.tc.ParkAtOnce() && c.tc.Park(idle) {
				// Not yet in Go's netpoller, never parked: waiting would
				// move it there, parking costs less.
				c.gone = true
				return 0, false
			}
			c.tc.SetReadDeadline(time.Now().Add(parkWait))
			c.rdl = time.Time{} // the idle deadline is set again before the next wait
			n, err = c.read()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if c.tc.Park(idle) {
					c.gone = true
					return 0, false
				}
				c.tc.SetReadDeadline(idle)
				c.rdl = idle
				n, err = c.read()
			}
		} else {
			if st := c.st; st != nil && st.w == BufSize {
				if st.r == 0 {
					return 0, c.giveUp(true)
				}
				st.w = copy(st.buf[:], st.buf[st.r:st.w])
				st.r = 0
			}
			n, err = c.read()
		}
		c.fresh = false
		if err != nil && n == 0 {
			if st := c.st; st != nil && st.r < st.w {
				return 0, c.giveUp(true) // let net/http answer the partial request
			}
			return 0, false
		}
	}
}

// giveUp hands the connection to net/http; partial says the buffered
// header is incomplete. It returns false (for readHead's ok) after
// marking the state as handed over.
func (c *conn) giveUp(partial bool) bool {
	c.handOver(partial, c.s.cfg.HandOver)
	return false
}

func (c *conn) giveUp2(to func(net.Conn) bool) bool {
	c.handOver(false, to)
	return false
}

// handOver passes the connection, with the bytes the fast path buffered,
// to, which owns it from then on; it keeps its slot until closed.
func (c *conn) handOver(partial bool, to func(net.Conn) bool) {
	c.tc.SetDeadline(time.Time{})
	nc, release := c.tc.Detach()
	var prefix []byte
	var consumed func()
	if st := c.st; st != nil {
		prefix = st.buf[st.r:st.w]
		s := c.s
		consumed = func() { s.putState(st) }
	}
	c.st, c.gone = nil, true
	rc := transport.ReplayConn(nc, transport.Replay{Prefix: prefix, Consumed: consumed, Closed: release})
	if partial && !c.hdrDeadline.IsZero() {
		rc = &cappedConn{Conn: rc, hdrDeadline: c.hdrDeadline}
	}
	if !to(rc) {
		rc.Close()
	}
}

// cappedConn is a connection handed over in the middle of a request
// header: net/http's first read deadline (its header timeout, counted
// from the hand-over) is capped by the header's deadline, so handing over
// does not give a slow client a second header timeout.
type cappedConn struct {
	net.Conn
	hdrDeadline time.Time
}

func (r *cappedConn) SetReadDeadline(t time.Time) error {
	if !r.hdrDeadline.IsZero() && !t.IsZero() {
		if t.After(r.hdrDeadline) {
			t = r.hdrDeadline
		}
		r.hdrDeadline = time.Time{}
	}
	return r.Conn.SetReadDeadline(t)
}

func (r *cappedConn) SetDeadline(t time.Time) error {
	if err := r.SetReadDeadline(t); err != nil {
		return err
	}
	return r.Conn.SetWriteDeadline(t)
}

// CloseWrite half-closes the connection when it supports it.
func (r *cappedConn) CloseWrite() error {
	if cw, ok := r.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return r.Conn.Close()
}
