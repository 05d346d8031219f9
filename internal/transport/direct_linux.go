//go:build linux

package transport

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/applayer/applayer/internal/rawsys"
)

const canDirect = true

// serveDirect is serve's loop for DirectAccept (direct.go). With
// DirectInline the accepting goroutine runs each connection's handler
// itself: a handler that answers at once and returns costs no goroutine.
// When the
// connection has to wait (it moves to Go's netpoller, or is detached),
// a new goroutine takes over accepting first and the old one stays with
// the connection (handOff). serveDirect returns when the last accepting
// goroutine has stopped.
func (s *StreamServer) serveDirect(ln *net.TCPListener) error {
	// A listener's own RawConn can't wait (its Read is EINVAL): accept on
	// a duplicate of its descriptor, an *os.File in Go's netpoller, closed
	// when the server stops.
	f, err := ln.File()
	if err != nil {
		return s.serveNet(ln)
	}
	defer f.Close()
	raw, err := f.SyscallConn()
	if err != nil {
		return s.serveNet(ln)
	}
	ended := make(chan struct{})
	defer close(ended)
	go func() {
		select {
		case <-s.stop:
			f.Close()
		case <-ended:
		}
	}()
	l := &directLoop{s: s, ln: ln, raw: raw, done: make(chan struct{})}
	l.local, _ = ln.Addr().(*net.TCPAddr)
	if l.local != nil && l.local.IP.IsUnspecified() {
		l.local = nil // each connection asks its socket (getsockname), when asked
	}
	l.acceptors.Add(1)
	go l.run()
	<-l.done
	return l.err
}

// deferAccept sets TCP_DEFER_ACCEPT on the listener: the kernel wakes
// accept only once a connection's first bytes arrived, or after d
// (whole seconds, at least one).
func deferAccept(ln *net.TCPListener, d time.Duration) error {
	raw, err := ln.SyscallConn()
	if err != nil {
		return err
	}
	secs := int((d + time.Second - 1) / time.Second)
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, secs)
	}); err != nil {
		return err
	}
	return os.NewSyscallError("setsockopt", serr)
}

// directLoop is the accept loop of one listener, run by one accepting
// goroutine at a time (more, briefly, after a hand-off from a goroutine
// that is not the accepting one).
type directLoop struct {
	s         *StreamServer
	ln        *net.TCPListener
	raw       syscall.RawConn
	local     *net.TCPAddr
	acceptors atomic.Int32
	mu        sync.Mutex
	err       error // why the loop stopped (the first to stop)
	done      chan struct{}
}

// acceptor is one accepting goroutine's turn; gone is set when a
// connection it serves inline handed accepting over (handOff).
type acceptor struct {
	l    *directLoop
	gone atomic.Bool
}

// handOff starts a new accepting goroutine; the goroutine whose turn a
// was stops accepting once its handler returns, and counts as a
// connection's goroutine from now on (so Shutdown, which waits for the
// accepting goroutines before closing idle connections, does not wait
// for it).
func (a *acceptor) handOff() {
	if a.gone.CompareAndSwap(false, true) {
		a.l.acceptors.Add(1)
		go a.l.run()
		a.l.exit(nil)
	}
}

// exit ends an accepting goroutine; the last one reports err.
func (l *directLoop) exit(err error) {
	if err != nil {
		l.mu.Lock()
		if l.err == nil {
			l.err = err
		}
		l.mu.Unlock()
	}
	if l.acceptors.Add(-1) == 0 {
		close(l.done)
	}
}

func (l *directLoop) run() {
	s := l.s
	var (
		nfd  int
		sa   syscall.RawSockaddrAny
		aerr error
	)
	accept := func(fd uintptr) bool {
		for {
			var e syscall.Errno
			nfd, e = rawsys.Accept4(fd, &sa)
			aerr = nil
			if e != 0 {
				aerr = e
			}
			switch aerr {
			case syscall.EINTR, syscall.ECONNABORTED:
				continue
			case syscall.EAGAIN:
				return false // wait in the netpoller for the next client
			}
			return true
		}
	}
	var delay time.Duration
	for {
		aerr = nil
		err := l.raw.Read(accept)
		if err == nil && aerr != nil {
			err = &net.OpError{Op: "accept", Net: "tcp", Addr: l.ln.Addr(), Err: os.NewSyscallError("accept4", aerr)}
		}
		if errors.Is(err, os.ErrClosed) {
			err = net.ErrClosed
		}
		if err != nil {
			if stop, serr := s.acceptFailed(l.ln, err, &delay); stop {
				l.exit(serr)
				return
			}
			continue
		}
		delay = 0
		d := &directConn{fd: nfd, local: l.local, remote: rawAddrPort(&sa)}
		var a *acceptor
		if s.cfg.DirectInline {
			a = &acceptor{l: l}
			d.inline = a
		}
		c := s.admit(d, d.remote)
		if c == nil {
			continue
		}
		if a == nil {
			go s.serveConn(c)
			continue
		}
		s.serveConn(c)
		d.mu.Lock()
		d.inline = nil // parked and resumed later: no longer this goroutine's
		d.mu.Unlock()
		if a.gone.Load() {
			return // a connection's goroutine since handOff, done with it
		}
	}
}

// The direct path's system calls are internal/rawsys's: made without
// telling Go's scheduler (see there why).

func rawAddrPort(sa *syscall.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case syscall.AF_INET:
		a := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&a.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(p[0])<<8|uint16(p[1]))
	case syscall.AF_INET6:
		a := (*syscall.RawSockaddrInet6)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&a.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}

// sockaddrAddrPort converts an accepted peer's address (IPv4-mapped
// addresses unmapped).
func sockaddrAddrPort(sa syscall.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *syscall.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
}

// directConn is an accepted connection served by system calls on its
// descriptor until one would block; it then moves to Go's netpoller
// (tcp) and delegates to it. mu guards the descriptor: Close from
// another goroutine (Shutdown) waits for a system call in progress, so
// a descriptor number is never used after it was closed and reused.
type directConn struct {
	mu      sync.Mutex
	fd      int
	tcp     *net.TCPConn // once moved
	closed  bool
	wrote   bool // a write was made (the next one sets TCP_NODELAY)
	yielded bool // a read has found bytes, or yielded once waiting for them
	nodelay bool
	rdl     time.Time // deadlines, applied when moved
	wdl     time.Time
	remote  netip.AddrPort
	local   *net.TCPAddr // the listener's address; nil: ask the socket
	owner   *Conn        // its transport Conn: parking state to reset on a move
	inline  *acceptor    // served by an accepting goroutine: hand accepting off before waiting
}

func (c *directConn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// pastLocked reports whether deadline d has passed.
func pastLocked(d time.Time) bool { return !d.IsZero() && !time.Now().Before(d) }

func (c *directConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	if c.tcp == nil {
		if c.closed {
			c.mu.Unlock()
			return 0, c.opErr("read", net.ErrClosed)
		}
		if pastLocked(c.rdl) {
			c.mu.Unlock()
			return 0, c.opErr("read", os.ErrDeadlineExceeded)
		}
		if len(b) == 0 {
			c.mu.Unlock()
			return 0, nil
		}
		n, e := rawsys.Read(uintptr(c.fd), b)
		for e == syscall.EINTR || e == syscall.EAGAIN && !c.yielded {
			if e == syscall.EAGAIN {
				// A new connection's request is usually on its way:
				// let the other goroutines run once before moving (which
				// costs a dozen system calls).
				c.yielded = true
				c.mu.Unlock()
				runtime.Gosched()
				c.mu.Lock()
				if c.tcp != nil || c.closed {
					c.mu.Unlock()
					return c.Read(b)
				}
			}
			n, e = rawsys.Read(uintptr(c.fd), b)
		}
		if e != syscall.EAGAIN {
			c.yielded = true
			c.mu.Unlock()
			switch {
			case e != 0:
				return 0, c.opErr("read", os.NewSyscallError("read", e))
			case n == 0:
				return 0, io.EOF
			}
			return n, nil
		}
		if err := c.moveLocked(); err != nil {
			c.mu.Unlock()
			return 0, c.opErr("read", err)
		}
	}
	tcp := c.tcp
	c.mu.Unlock()
	return tcp.Read(b)
}

func (c *directConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	n := 0
	if c.tcp == nil {
		if c.closed {
			c.mu.Unlock()
			return 0, c.opErr("write", net.ErrClosed)
		}
		if pastLocked(c.wdl) {
			c.mu.Unlock()
			return 0, c.opErr("write", os.ErrDeadlineExceeded)
		}
		if c.wrote && !c.nodelay {
			// A second write: without TCP_NODELAY it could wait for the
			// peer's delayed ACK of the first (Nagle). A connection that
			// answers with one write and closes never pays for it.
			syscall.SetsockoptInt(c.fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
			c.nodelay = true
		}
		c.wrote = true
		for n < len(b) {
			m, e := rawsys.Write(uintptr(c.fd), b[n:])
			if m > 0 {
				n += m
			}
			if e == syscall.EINTR {
				continue
			}
			if e == syscall.EAGAIN {
				break
			}
			if e != 0 {
				c.mu.Unlock()
				return n, c.opErr("write", os.NewSyscallError("write", e))
			}
		}
		if n == len(b) {
			c.mu.Unlock()
			return n, nil
		}
		if err := c.moveLocked(); err != nil {
			c.mu.Unlock()
			return n, c.opErr("write", err)
		}
	}
	tcp := c.tcp
	c.mu.Unlock()
	m, err := tcp.Write(b[n:])
	return n + m, err
}

// moveLocked hands the descriptor to Go's netpoller: net.FileConn
// duplicates it (setting TCP_NODELAY as on every Go connection), the
// original is closed, and the deadlines set so far are applied.
func (c *directConn) moveLocked() error {
	f := os.NewFile(uintptr(c.fd), "")
	nc, err := net.FileConn(f)
	f.Close()
	c.fd = -1
	if err != nil {
		c.closed = true
		return err
	}
	tcp, ok := nc.(*net.TCPConn)
	if !ok {
		nc.Close()
		c.closed = true
		return errors.New("transport: accepted descriptor is not a TCP connection")
	}
	if !c.rdl.IsZero() {
		tcp.SetReadDeadline(c.rdl)
	}
	if !c.wdl.IsZero() {
		tcp.SetWriteDeadline(c.wdl)
	}
	c.tcp = tcp
	if a := c.inline; a != nil {
		c.inline = nil
		a.handOff() // the caller is about to wait: someone else accepts
	}
	if o := c.owner; o != nil {
		// The descriptor's number changed: a later Park registers the new
		// one. (The old one's epoll entry, disarmed since the event that
		// resumed the connection, goes with the connection's close.)
		o.sysfd, o.pollAdded = 0, false
	}
	return nil
}

// moved returns the connection moved to Go's netpoller (for a new owner
// that wants a *net.TCPConn), or c itself when moving failed.
func (c *directConn) moved() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tcp == nil && !c.closed && c.moveLocked() != nil {
		return c
	}
	if c.tcp != nil {
		return c.tcp
	}
	return c
}

// adopt tells a direct connection its transport Conn.
func adopt(nc net.Conn, c *Conn) {
	if d, ok := nc.(*directConn); ok {
		d.owner = c
	}
}

// unmovedDirect reports whether nc is a direct connection that has not
// moved to Go's netpoller.
func unmovedDirect(nc net.Conn) bool {
	d, ok := nc.(*directConn)
	return ok && !directMoved(d)
}

// movedConn returns nc moved to Go's netpoller when it is a directConn.
func movedConn(nc net.Conn) net.Conn {
	if d, ok := nc.(*directConn); ok {
		return d.moved()
	}
	return nc
}

func (c *directConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tcp != nil {
		return c.tcp.Close()
	}
	if c.closed {
		return c.opErr("close", net.ErrClosed)
	}
	c.closed = true
	if e := rawsys.Close(uintptr(c.fd)); e != 0 {
		return c.opErr("close", os.NewSyscallError("close", e))
	}
	return nil
}

func (c *directConn) LocalAddr() net.Addr {
	if c.local != nil {
		return c.local
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tcp != nil {
		return c.tcp.LocalAddr()
	}
	if c.local == nil && !c.closed {
		if sa, err := syscall.Getsockname(c.fd); err == nil {
			ap := sockaddrAddrPort(sa)
			c.local = net.TCPAddrFromAddrPort(ap)
		}
	}
	if c.local == nil {
		return &net.TCPAddr{}
	}
	return c.local
}

func (c *directConn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.remote) }

func (c *directConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *directConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tcp != nil {
		return c.tcp.SetReadDeadline(t)
	}
	c.rdl = t
	return nil
}

func (c *directConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tcp != nil {
		return c.tcp.SetWriteDeadline(t)
	}
	c.wdl = t
	return nil
}

// CloseWrite shuts the sending side down.
func (c *directConn) CloseWrite() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tcp != nil {
		return c.tcp.CloseWrite()
	}
	if c.closed {
		return c.opErr("close", net.ErrClosed)
	}
	return os.NewSyscallError("shutdown", syscall.Shutdown(c.fd, syscall.SHUT_WR))
}

// SyscallConn gives the descriptor: while unmoved, a Read or Write
// callback is first tried on it at once, and the connection moves to
// Go's netpoller only when it has to wait.
func (c *directConn) SyscallConn() (syscall.RawConn, error) { return directRaw{c}, nil }

type directRaw struct{ c *directConn }

func (r directRaw) Control(f func(fd uintptr)) error {
	c := r.c
	c.mu.Lock()
	if c.tcp == nil {
		defer c.mu.Unlock()
		if c.closed {
			return net.ErrClosed
		}
		f(uintptr(c.fd))
		return nil
	}
	tcp := c.tcp
	c.mu.Unlock()
	rc, err := tcp.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(f)
}

func (r directRaw) Read(f func(fd uintptr) bool) error  { return r.wait(f, false) }
func (r directRaw) Write(f func(fd uintptr) bool) error { return r.wait(f, true) }

func (r directRaw) wait(f func(fd uintptr) bool, write bool) error {
	c := r.c
	c.mu.Lock()
	if c.tcp == nil {
		if c.closed {
			c.mu.Unlock()
			return net.ErrClosed
		}
		if f(uintptr(c.fd)) {
			c.mu.Unlock()
			return nil
		}
		if err := c.moveLocked(); err != nil {
			c.mu.Unlock()
			return err
		}
	}
	tcp := c.tcp
	c.mu.Unlock()
	rc, err := tcp.SyscallConn()
	if err != nil {
		return err
	}
	if write {
		return rc.Write(f)
	}
	return rc.Read(f)
}

// directMoved reports whether d moved to Go's netpoller (for tests).
func directMoved(d *directConn) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tcp != nil
}
