package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("transport: server closed")

// Handler serves one connection of a StreamServer. ServeConn runs in the
// connection's own goroutine; when it returns the connection is closed
// (unless the handler took it with Detach). A panic is recovered: the
// server logs it, calls StreamConfig.OnPanic to write the protocol's
// failure reply and closes the connection; it keeps serving the others.
//
// ctx is cancelled by Close, and by Shutdown when its own context ends
// before the connections have drained; Shutdown alone does not cancel it,
// so work in flight can finish.
type Handler interface {
	ServeConn(ctx context.Context, c *Conn)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, c *Conn)

// ServeConn calls f.
func (f HandlerFunc) ServeConn(ctx context.Context, c *Conn) { f(ctx, c) }

// RejectReason says why a connection was turned away at accept.
type RejectReason int

const (
	// RejectFull: MaxConns connections are open (and, with DropIdle, none
	// of them is idle).
	RejectFull RejectReason = iota + 1
	// RejectPerIP: the client's address already has MaxConnsPerIP.
	RejectPerIP
)

func (r RejectReason) String() string {
	switch r {
	case RejectFull:
		return "full"
	case RejectPerIP:
		return "per-ip limit"
	}
	return "unknown"
}

// EventKind names what a StreamServer reports to StreamConfig.Observe.
type EventKind int

const (
	// EventAccepted: a connection took a slot and its handler started.
	EventAccepted EventKind = iota + 1
	// EventClosed: a connection gave its slot back (its handler ended,
	// it was evicted, or a detached connection was released). Every
	// EventAccepted is followed by exactly one EventClosed.
	EventClosed
	// EventRefused: the Refuse hook turned the client away.
	EventRefused
	// EventRejected: a limit turned the client away (Event.Reason).
	EventRejected
	// EventEvicted: an idle connection was closed to make room
	// (DropIdleWhenFull); Event.Remote is the evicted client.
	EventEvicted
	// EventPanic: a handler panicked (Event.Panic).
	EventPanic
	// EventAcceptError: Accept failed (Event.Err); the loop backs off.
	EventAcceptError
)

// Event is one thing a StreamServer did, for metrics and traces.
type Event struct {
	Kind   EventKind
	Remote netip.AddrPort
	Reason RejectReason
	Err    error
	Panic  any
}

// StreamConfig configures a StreamServer. Zero fields take the documented
// defaults; the config must not change after NewStreamServer.
type StreamConfig struct {
	// MaxConns caps the connections served at once (those detached
	// included, until released). 0 means no limit.
	MaxConns int
	// MaxConnsPerIP caps the connections from one client address. 0 means
	// no limit.
	MaxConnsPerIP int
	// PerIPExempt, when set, exempts the addresses it accepts from
	// MaxConnsPerIP (e.g. trusted proxies that carry many clients).
	PerIPExempt func(ip netip.Addr) bool
	// DropIdleWhenFull: when MaxConns is reached, close the connection
	// that has been idle longest (see Conn.SetIdle) and serve the new one
	// instead, as Unbound does with incoming-num-tcp. Without an idle
	// connection the new one is rejected (RejectFull).
	DropIdleWhenFull bool
	// IdleTimeout is the read deadline Conn.SetIdle sets: how long a
	// connection may wait for the next request. 0 sets none.
	IdleTimeout time.Duration
	// ReadTimeout is the read deadline Conn.SetBusy sets: how long the rest
	// of a started request may take. 0 sets none.
	ReadTimeout time.Duration
	// Refuse, when set, is the access check: a client it refuses is closed
	// at once, without a reply and without taking a slot.
	Refuse func(remote netip.AddrPort) bool
	// OnReject, when set, writes the protocol's "busy" reply (e.g. "421",
	// "503", "ERROR too many connections") to a connection turned away by
	// a limit, before it is closed. A one-second write deadline is set.
	OnReject func(c net.Conn, why RejectReason)
	// OnPanic, when set, writes the protocol's failure reply (SERVFAIL,
	// 421, 500) after the handler panicked, before the connection is
	// closed. A one-second write deadline is set.
	OnPanic func(c net.Conn, v any)
	// Observe, when set, is told of every Event. It runs synchronously on
	// the accepting or serving goroutine and must be quick.
	Observe func(Event)
	// Logger receives accept errors (Warn) and panics (Error). Default:
	// discard.
	Logger *slog.Logger
	// ParkIdleAbove lets handlers park idle connections (Conn.Park, Linux)
	// while the server has more than this many: 0 never.
	ParkIdleAbove int
	// ParkBareAfter: a connection parked this long gives up its Go
	// network state (the net.Conn, with its runtime poll descriptor,
	// deadline timers and addresses) and waits as a bare descriptor; when
	// it wakes it is a net.Conn again (net.FileConn), which costs a few
	// system calls. 0: never. Ignored with DropIdleWhenFull.
	ParkBareAfter time.Duration
	// DirectAccept (Linux, *net.TCPListener): accept with accept4 on the
	// listener's descriptor and serve each connection with direct system
	// calls until one would block; it then moves to Go's netpoller
	// (direct.go). Handlers see the same Conn. Elsewhere, and on wrapped
	// listeners, it has no effect.
	DirectAccept bool
	// DirectInline (with DirectAccept): the accepting goroutine runs each
	// new connection's handler itself, so a connection answered at once
	// costs no goroutine; when the connection has to wait (its first read
	// or write that would block, or Detach) another goroutine takes over
	// accepting first. The handler must wait on nothing but its
	// connection: a handler that sleeps or waits on a channel before
	// touching the connection stalls accepting meanwhile.
	DirectInline bool
	// DeferAccept (Linux, *net.TCPListener): the kernel completes an
	// accept only once the client's first bytes have arrived (or after
	// about this long, rounded up to whole seconds): TCP_DEFER_ACCEPT,
	// nginx's "listen ... deferred". For protocols whose client speaks
	// first (HTTP): a new connection then has its request to read at once
	// instead of waiting for it in the poller. A client that waits for the
	// server to speak first is accepted only after the delay. 0: off.
	DeferAccept time.Duration
}

// StreamServer accepts connections and runs a Handler for each. Create it
// with NewStreamServer, give it listeners with Serve or Start, stop it with
// Shutdown or Close.
type StreamServer struct {
	cfg     StreamConfig
	h       Handler
	log     *slog.Logger
	ctx     context.Context
	cancel  context.CancelFunc
	closing atomic.Bool
	stop    chan struct{}

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*Conn]struct{} // tracked: closed by Shutdown, Close, eviction
	slots     int
	perIP     map[netip.Addr]int
	stopped   bool
	loops     sync.WaitGroup // Serve loops
	handlers  sync.WaitGroup // connection goroutines
	poll      *poller        // parked connections' epoll, made on first use
}

// NewStreamServer returns a server that runs h for each connection.
func NewStreamServer(cfg StreamConfig, h Handler) *StreamServer {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &StreamServer{cfg: cfg, h: h, log: log, ctx: ctx, cancel: cancel, stop: make(chan struct{}),
		listeners: map[net.Listener]struct{}{}, conns: map[*Conn]struct{}{}, perIP: map[netip.Addr]int{}}
}

// Start serves ln in a goroutine the server owns (Shutdown waits for it).
func (s *StreamServer) Start(ln net.Listener) error {
	if !s.addListener(ln) {
		return ErrServerClosed
	}
	go func() {
		defer s.loops.Done()
		if err := s.serve(ln); err != nil && !errors.Is(err, ErrServerClosed) {
			s.log.Warn("transport: stopped accepting", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return nil
}

// Serve accepts on ln until the server is shut down (it then returns
// ErrServerClosed) or ln fails for good (closed by someone else).
// Temporary failures such as EMFILE make it wait, 5 ms doubling to 1 s.
// Serve closes ln when it returns.
func (s *StreamServer) Serve(ln net.Listener) error {
	if !s.addListener(ln) {
		return ErrServerClosed
	}
	defer s.loops.Done()
	return s.serve(ln)
}

// addListener takes ln (false after Shutdown or Close: ln is closed) and
// sets its socket options.
func (s *StreamServer) addListener(ln net.Listener) bool {
	if tl, ok := ln.(*net.TCPListener); ok && s.cfg.DeferAccept > 0 {
		if err := deferAccept(tl, s.cfg.DeferAccept); err != nil {
			s.log.Warn("transport: TCP_DEFER_ACCEPT not set", "addr", ln.Addr().String(), "err", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		ln.Close()
		return false
	}
	s.listeners[ln] = struct{}{}
	s.loops.Add(1)
	return true
}

// Accept back-off bounds, as net/http's.
const (
	minAcceptDelay = 5 * time.Millisecond
	maxAcceptDelay = time.Second
)

func (s *StreamServer) serve(ln net.Listener) error {
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()
	if tl, ok := ln.(*net.TCPListener); ok && s.cfg.DirectAccept && canDirect {
		return s.serveDirect(tl)
	}
	return s.serveNet(ln)
}

// serveNet is the portable accept loop.
func (s *StreamServer) serveNet(ln net.Listener) error {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if stop, serr := s.acceptFailed(ln, err, &delay); stop {
				return serr
			}
			continue
		}
		delay = 0
		if c := s.admit(nc, remoteOf(nc)); c != nil {
			go s.serveConn(c)
		}
	}
}

// acceptFailed handles an accept error: stop reports whether the loop
// ends (with err), else it waited out the back-off (delay, 5 ms doubling
// to 1 s).
func (s *StreamServer) acceptFailed(ln net.Listener, err error, delay *time.Duration) (stop bool, _ error) {
	if s.closing.Load() {
		return true, ErrServerClosed
	}
	if errors.Is(err, net.ErrClosed) {
		return true, fmt.Errorf("transport: accept: %w", err)
	}
	if *delay == 0 {
		*delay = minAcceptDelay
	} else {
		*delay = min(2**delay, maxAcceptDelay)
	}
	s.observe(Event{Kind: EventAcceptError, Err: err})
	s.log.Warn("transport: accept failed", "addr", ln.Addr().String(), "err", err, "retry_in", *delay)
	t := time.NewTimer(*delay)
	select {
	case <-t.C:
		return false, nil
	case <-s.stop:
		t.Stop()
		return true, ErrServerClosed
	}
}

func (s *StreamServer) observe(e Event) {
	if s.cfg.Observe != nil {
		s.cfg.Observe(e)
	}
}

// remoteOf returns the client's address and port (zero when it is not IP).
func remoteOf(nc net.Conn) netip.AddrPort {
	switch a := nc.RemoteAddr().(type) {
	case *net.TCPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case nil:
		return netip.AddrPort{}
	default:
		ap, _ := netip.ParseAddrPort(a.String())
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
}

// admit applies the access check and the limits to a new connection
// from remote; it returns the Conn whose handler the caller must run
// (serveConn), or nil when the connection was turned away.
func (s *StreamServer) admit(nc net.Conn, remote netip.AddrPort) *Conn {
	if s.cfg.Refuse != nil && s.cfg.Refuse(remote) {
		nc.Close()
		s.observe(Event{Kind: EventRefused, Remote: remote})
		return nil
	}
	c := &Conn{Conn: nc, remote: remote, srv: s}
	adopt(nc, c)
	ip := remote.Addr()
	c.perIP = s.cfg.MaxConnsPerIP > 0 && ip.IsValid() && (s.cfg.PerIPExempt == nil || !s.cfg.PerIPExempt(ip))
	var victim *Conn
	var why RejectReason
	s.mu.Lock()
	switch {
	case s.stopped:
		s.mu.Unlock()
		nc.Close()
		return nil
	case c.perIP && s.perIP[ip] >= s.cfg.MaxConnsPerIP:
		why = RejectPerIP
	case s.cfg.MaxConns > 0 && s.slots >= s.cfg.MaxConns:
		if s.cfg.DropIdleWhenFull {
			victim = s.oldestIdleLocked()
		}
		if victim == nil {
			why = RejectFull
		} else {
			victim.evicted.Store(true)
			s.releaseLocked(victim)
		}
	}
	if why != 0 {
		s.mu.Unlock()
		if s.cfg.OnReject != nil {
			nc.SetWriteDeadline(time.Now().Add(time.Second))
			s.cfg.OnReject(nc, why)
		}
		nc.Close()
		s.observe(Event{Kind: EventRejected, Remote: remote, Reason: why})
		return nil
	}
	c.slot = true
	s.slots++
	if c.perIP {
		s.perIP[ip]++
	}
	s.conns[c] = struct{}{}
	s.handlers.Add(1)
	s.mu.Unlock()
	if victim != nil {
		if victim.parkState.CompareAndSwap(parked, unparked) {
			s.mu.Lock()
			s.unparkLocked(victim)
			s.mu.Unlock()
		}
		victim.Conn.Close()
		s.observe(Event{Kind: EventEvicted, Remote: victim.remote})
		s.observe(Event{Kind: EventClosed, Remote: victim.remote})
	}
	s.observe(Event{Kind: EventAccepted, Remote: remote})
	return c
}

// oldestIdleLocked returns the tracked connection idle the longest, or nil.
func (s *StreamServer) oldestIdleLocked() *Conn {
	var victim *Conn
	var since int64
	for c := range s.conns {
		if t := c.idleSince.Load(); t != 0 && (victim == nil || t < since) {
			victim, since = c, t
		}
	}
	return victim
}

// releaseLocked gives c's slot back and stops tracking it; it reports
// whether c still held its slot.
func (s *StreamServer) releaseLocked(c *Conn) bool {
	delete(s.conns, c)
	if !c.slot {
		return false
	}
	c.slot = false
	s.slots--
	if ip := c.remote.Addr(); c.perIP {
		if s.perIP[ip]--; s.perIP[ip] <= 0 {
			delete(s.perIP, ip)
		}
	}
	return true
}

func (s *StreamServer) serveConn(c *Conn) {
	defer s.handlers.Done()
	defer func() {
		v := recover()
		s.mu.Lock()
		detached := c.detached
		s.mu.Unlock()
		if v != nil {
			s.log.Error("transport: panic in connection handler", "remote", c.remote.String(), "panic", v, "stack", string(debug.Stack()))
			s.observe(Event{Kind: EventPanic, Remote: c.remote, Panic: v})
			if !detached && s.cfg.OnPanic != nil {
				c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
				s.cfg.OnPanic(c.Conn, v)
			}
		}
		if detached {
			return // its new owner closes it, and releases its slot
		}
		if c.parkAsked && v == nil {
			c.parkAsked = false
			s.mu.Lock()
			ok := !s.stopped && !c.evicted.Load() && s.parkLocked(c)
			s.mu.Unlock()
			if ok {
				return // the poller runs the handler again
			}
		}
		c.Conn.Close()
		s.mu.Lock()
		released := s.releaseLocked(c)
		s.mu.Unlock()
		if released {
			s.observe(Event{Kind: EventClosed, Remote: c.remote})
		}
	}()
	s.h.ServeConn(s.ctx, c)
}

// Conns returns how many connections hold a slot.
func (s *StreamServer) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.slots
}

// beginStop stops accepting: it marks the server closing and closes its
// listeners. It returns once every Serve loop has returned.
func (s *StreamServer) beginStop() {
	s.mu.Lock()
	if !s.stopped {
		s.stopped = true
		s.closing.Store(true)
		close(s.stop)
	}
	lns := make([]net.Listener, 0, len(s.listeners))
	for ln := range s.listeners {
		lns = append(lns, ln)
	}
	s.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
	s.loops.Wait()
}

func (s *StreamServer) closeConns(onlyIdle bool) {
	var closed []netip.AddrPort
	s.mu.Lock()
	for c := range s.conns {
		switch {
		case c.parkState.CompareAndSwap(parked, unparked):
			// No goroutine of its own: close it and give its slot back.
			s.unparkLocked(c)
			if s.closeParkedLocked(c) {
				closed = append(closed, c.remote)
			}
		case c.Conn == nil:
			// Bare, just taken from the poller: resume or the shedding
			// sweep closes it (they see stopped).
		case !onlyIdle || c.idleSince.Load() != 0:
			c.Conn.Close()
		}
	}
	s.mu.Unlock()
	for _, r := range closed {
		s.observe(Event{Kind: EventClosed, Remote: r})
	}
}

// resume serves a parked connection that became readable.
func (s *StreamServer) resume(c *Conn) {
	s.mu.Lock()
	if s.stopped || !s.restoreLocked(c) {
		released := s.closeParkedLocked(c)
		s.mu.Unlock()
		if released {
			s.observe(Event{Kind: EventClosed, Remote: c.remote})
		}
		return
	}
	c.woken = true
	s.handlers.Add(1)
	s.mu.Unlock()
	go s.serveConn(c)
}

// Shutdown stops accepting, closes idle connections (those whose handler
// last called SetIdle; SetIdle returns false from now on, so the others
// end after their request) and waits for every handler to return. When
// ctx ends first, it closes every connection, cancels the handlers'
// context, waits for the handlers and returns ctx's error. Detached
// connections belong to their new owner and are not waited for. Calling
// Shutdown twice is safe.
func (s *StreamServer) Shutdown(ctx context.Context) error {
	s.beginStop()
	s.closeConns(true)
	done := make(chan struct{})
	go func() { s.handlers.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		s.closeConns(false) // any parked meanwhile
		s.stopPoller()
		return nil
	case <-ctx.Done():
		s.closeConns(false)
		s.cancel()
		<-done
		s.stopPoller()
		return ctx.Err()
	}
}

// Close stops accepting, closes every tracked connection, cancels the
// handlers' context and waits for the handlers to return.
func (s *StreamServer) Close() error {
	s.beginStop()
	s.closeConns(false)
	s.cancel()
	s.handlers.Wait()
	s.closeConns(false) // any parked meanwhile
	s.stopPoller()
	return nil
}

// Conn is a connection served by a StreamServer. The embedded net.Conn is
// the accepted connection itself (a *net.TCPConn for TCP), so handlers can
// reach its fast paths (ReadFrom/sendfile, writev through net.Buffers).
type Conn struct {
	net.Conn
	remote    netip.AddrPort
	srv       *StreamServer
	idleSince atomic.Int64 // unix nanoseconds; 0 while busy
	evicted   atomic.Bool
	perIP     bool // counted towards MaxConnsPerIP (set before admission)
	// under srv.mu
	slot     bool
	detached bool
	// Parking (park.go): parkAsked and parkDeadline are set by the
	// handler's goroutine, read in its deferred end; parkState is parked
	// while the poller holds the connection.
	parkAsked    bool
	parkDeadline int64 // unix nanoseconds, 0 for none (kept small: a parked connection is little more than this struct)
	parkState    atomic.Int32
	pollAdded    bool
	sysfd        int   // the descriptor + 1, once looked up
	parkedAt     int64 // unix nanoseconds, when last parked
	woken        bool  // resumed from parking at least once
	// A bare parked connection (ParkBareAfter) has a nil Conn and sysfd
	// its own descriptor; Conn, sysfd and pollAdded change only under
	// srv.mu while the connection is not parked.
}

// RemoteAddrPort returns the client's address (IPv4-mapped addresses
// unmapped), or the zero AddrPort when the connection is not IP.
func (c *Conn) RemoteAddrPort() netip.AddrPort { return c.remote }

// SetIdle marks the connection idle: it is waiting for the next request
// and may be closed by Shutdown, or dropped for a newer client when the
// server is full and DropIdleWhenFull is set. It sets the read deadline
// to IdleTimeout from now (when configured). It returns false when the
// server is shutting down or the connection was evicted: the handler
// should then return instead of reading.
func (c *Conn) SetIdle() bool {
	now := time.Now()
	c.idleSince.Store(now.UnixNano())
	if d := c.srv.cfg.IdleTimeout; d > 0 {
		c.Conn.SetReadDeadline(now.Add(d))
	}
	// Shutdown sets closing, then closes the connections it sees idle; a
	// handler stores idle, then checks closing. One of them sees the other.
	return !c.srv.closing.Load() && !c.evicted.Load()
}

// SetBusy marks the connection busy (a request has started: Shutdown lets
// it finish, eviction spares it) and sets the read deadline to
// ReadTimeout from now (when configured).
func (c *Conn) SetBusy() {
	c.idleSince.Store(0)
	if d := c.srv.cfg.ReadTimeout; d > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(d))
	}
}

// ShuttingDown reports whether Shutdown or Close has begun.
func (c *Conn) ShuttingDown() bool { return c.srv.closing.Load() }

// Detach takes the connection away from the server: it is no longer
// closed when the handler returns, nor by Shutdown or Close, and its
// owner must close it. It keeps its slot (towards MaxConns and
// MaxConnsPerIP) until release is called; release is safe to call more
// than once. Use it to hand a connection to another server (net/http
// through a Handoff). A DirectAccept connection moves to Go's netpoller
// first, so nc is a *net.TCPConn.
func (c *Conn) Detach() (nc net.Conn, release func()) {
	s := c.srv
	s.mu.Lock()
	c.detached = true
	delete(s.conns, c)
	s.mu.Unlock()
	return movedConn(c.Conn), sync.OnceFunc(func() {
		s.mu.Lock()
		released := s.releaseLocked(c)
		s.mu.Unlock()
		if released {
			s.observe(Event{Kind: EventClosed, Remote: c.remote})
		}
	})
}
