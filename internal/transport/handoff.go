package transport

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Handoff is a net.Listener fed by Deliver: the connections another
// component (a Sniffer, a fast path) passes on are accepted from it by
// net/http or any other server.
type Handoff struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

// NewHandoff returns a Handoff whose Addr is addr (the real listener's).
func NewHandoff(addr net.Addr) *Handoff {
	return &Handoff{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// Deliver waits until a caller of Accept takes c. It returns false (and c
// is left to the caller) when the Handoff is closed.
func (h *Handoff) Deliver(c net.Conn) bool {
	select {
	case h.ch <- c:
		return true
	case <-h.done:
		return false
	}
}

// Accept returns the next delivered connection, or net.ErrClosed after
// Close.
func (h *Handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.ch:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

// Close makes Accept and Deliver return; it is safe twice.
func (h *Handoff) Close() error {
	h.once.Do(func() { close(h.done) })
	return nil
}

// Addr returns the address given to NewHandoff.
func (h *Handoff) Addr() net.Addr { return h.addr }

// Replay describes the bytes a ReplayConn returns before reading from the
// connection.
type Replay struct {
	// Prefix is read first; the ReplayConn reads it in place, so it must
	// stay unchanged until Consumed runs.
	Prefix []byte
	// Consumed, when set, runs once when Prefix has been read (the caller
	// may then reuse its buffer). It runs at once when Prefix is empty.
	Consumed func()
	// Closed, when set, runs once after the first Close (e.g. the release
	// from Conn.Detach).
	Closed func()
}

// ReplayConn returns c reading r.Prefix first. For a *net.TCPConn the
// result embeds it, so net/http keeps sendfile (ReadFrom), splice
// (WriteTo) and CloseWrite; other connections are wrapped as net.Conn.
func ReplayConn(c net.Conn, r Replay) net.Conn {
	if tc, ok := c.(*net.TCPConn); ok {
		rc := &replayTCP{TCPConn: tc}
		rc.p.init(r)
		return rc
	}
	rc := &replayConn{Conn: c}
	rc.p.init(r)
	return rc
}

type replay struct {
	rest     []byte
	consumed func()
	closed   func()
	isClosed atomic.Bool
}

func (p *replay) init(r Replay) {
	p.rest, p.consumed, p.closed = r.Prefix, r.Consumed, r.Closed
	if len(p.rest) == 0 {
		p.done()
	}
}

func (p *replay) read(b []byte) int {
	n := copy(b, p.rest)
	p.rest = p.rest[n:]
	if len(p.rest) == 0 {
		p.done()
	}
	return n
}

func (p *replay) done() {
	p.rest = nil
	if f := p.consumed; f != nil {
		p.consumed = nil
		f()
	}
}

func (p *replay) close() {
	if p.isClosed.CompareAndSwap(false, true) && p.closed != nil {
		p.closed()
	}
}

// replayTCP embeds *net.TCPConn (see ReplayConn).
type replayTCP struct {
	*net.TCPConn
	p replay
}

func (c *replayTCP) Read(b []byte) (int, error) {
	if len(c.p.rest) > 0 {
		return c.p.read(b), nil
	}
	return c.TCPConn.Read(b)
}

// WriteTo replays the prefix before the kernel's fast path.
func (c *replayTCP) WriteTo(w io.Writer) (int64, error) {
	var n int64
	if len(c.p.rest) > 0 {
		m, err := w.Write(c.p.rest)
		n += int64(m)
		c.p.done()
		if err != nil {
			return n, err
		}
	}
	m, err := c.TCPConn.WriteTo(w)
	return n + m, err
}

func (c *replayTCP) Close() error {
	err := c.TCPConn.Close()
	c.p.close()
	return err
}

// replayConn wraps any other net.Conn.
type replayConn struct {
	net.Conn
	p replay
}

func (c *replayConn) Read(b []byte) (int, error) {
	if len(c.p.rest) > 0 {
		return c.p.read(b), nil
	}
	return c.Conn.Read(b)
}

func (c *replayConn) Close() error {
	err := c.Conn.Close()
	c.p.close()
	return err
}

// CloseWrite half-closes the connection when it supports it, and closes
// it otherwise.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// Sniff verdicts returned by SniffConfig.Classify besides a consumer index.
const (
	// SniffMore: read more bytes before deciding.
	SniffMore = -1
	// SniffReject: close the connection without an answer.
	SniffReject = -2
)

// SniffConfig configures a Sniffer.
type SniffConfig struct {
	// Classify decides from the first bytes b which consumer gets the
	// connection: an index into the Sniffer's Handoffs, SniffMore or
	// SniffReject. full says no more bytes fit (len(b) == MaxBytes). When
	// the client stops sending (deadline, end of file) while Classify still
	// says SniffMore, the connection is closed.
	Classify func(b []byte, full bool) int
	// Timeout bounds the wait for enough bytes to decide. Default 10s.
	Timeout time.Duration
	// MaxBytes caps the bytes read before deciding. Default 4096.
	MaxBytes int
	// Logger receives a Debug line for each connection closed undecided.
	Logger *slog.Logger
}

// Sniffer is a Handler for a StreamServer: it reads the first bytes of
// each connection and hands the connection, those bytes replayed, to one
// of its Handoffs. While it waits for them the connection counts as idle,
// so Shutdown closes it. A handed-off connection is detached from the
// StreamServer and keeps its slot until its new owner closes it.
type Sniffer struct {
	cfg  SniffConfig
	outs []*Handoff
	log  *slog.Logger
	pool sync.Pool
}

// NewSniffer returns a Sniffer dispatching to outs (Classify's indexes).
func NewSniffer(cfg SniffConfig, outs ...*Handoff) *Sniffer {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 4096
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sniffer{cfg: cfg, outs: outs, log: log}
	size := cfg.MaxBytes
	s.pool.New = func() any { b := make([]byte, size); return &b }
	return s
}

// ServeConn implements Handler.
func (s *Sniffer) ServeConn(_ context.Context, c *Conn) {
	if !c.SetIdle() {
		return
	}
	bp := s.pool.Get().(*[]byte)
	buf := *bp
	c.SetReadDeadline(time.Now().Add(s.cfg.Timeout))
	n, v := 0, SniffMore
	for v == SniffMore {
		m, err := c.Read(buf[n:])
		n += m
		v = s.cfg.Classify(buf[:n], n == len(buf))
		if err != nil && v == SniffMore {
			v = SniffReject
		}
	}
	c.SetReadDeadline(time.Time{})
	if v < 0 || v >= len(s.outs) {
		s.pool.Put(bp)
		s.undecided(c, n)
		return
	}
	s.handOver(c, bp, n, v)
}

// undecided logs a connection closed before its first bytes chose a
// consumer. Kept out of ServeConn (as is handOver) so that the sniffing
// goroutine's frames stay small: it starts on the runtime's smallest
// stack, and a frame sized for slog's variadic call made every
// connection grow and copy its stack (about 10% of a server's CPU with
// one request per connection, measured in docs/BENCHMARKS.md).
//
//go:noinline
func (s *Sniffer) undecided(c *Conn, n int) {
	s.log.Debug("transport: connection closed undecided", "remote", c.RemoteAddrPort().String(), "bytes", n)
}

// handOver detaches c and delivers it, its first n bytes replayed, to
// consumer v.
//
//go:noinline
func (s *Sniffer) handOver(c *Conn, bp *[]byte, n, v int) {
	nc, release := c.Detach()
	rc := ReplayConn(nc, Replay{Prefix: (*bp)[:n], Consumed: func() { s.pool.Put(bp) }, Closed: release})
	if !s.outs[v].Deliver(rc) {
		rc.Close()
	}
}
