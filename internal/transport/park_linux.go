//go:build linux

package transport

import (
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const canPark = true

// poller is a server's epoll instance for parked connections.
type poller struct {
	epfd   int
	wake   [2]int // a pipe: a byte on wake[1] stops the loop
	mu     sync.Mutex
	byFD   map[int32]*Conn
	done   chan struct{}
	closed bool
	// light are the parked connections that still hold their net.Conn,
	// in the order they were parked (ParkBareAfter): at is the parkedAt
	// the entry was made for (a connection parked again has a newer
	// entry; the old one is stale).
	light []lightEntry
	// shedSince counts the connections made bare (or parked direct,
	// never having held a net.Conn) since memory was last returned to
	// the OS (lastFree; both under mu); freeing is set while that runs.
	shedSince int
	lastFree  time.Time
	freeing   atomic.Bool
}

// Returning freed memory: after freeAfterShed connections were made bare,
// or freeAfterBurst when no parked connection is left to make bare, at
// most once per freeEvery. The net.Conns they dropped are garbage the
// runtime would otherwise keep (up to the next heap goal) for reuse.
const (
	freeAfterShed  = 1024
	freeAfterBurst = 128
	freeEvery      = time.Second
)

type lightEntry struct {
	c  *Conn
	at int64
}

// shedTick is how often the poller looks for connections to make bare
// (ParkBareAfter).
const shedTick = 50 * time.Millisecond

// fd returns the connection's file descriptor, -1 without one. The
// descriptor stays valid while the connection is open.
func (c *Conn) fd() int {
	if c.sysfd != 0 {
		return c.sysfd - 1
	}
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return -1
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	if raw.Control(func(f uintptr) { fd = int(f) }) != nil {
		return -1
	}
	c.sysfd = fd + 1
	return fd
}

// parkLocked registers c with the poller (the handler has returned;
// s.mu held); false when that failed (the caller closes c as usual).
func (s *StreamServer) parkLocked(c *Conn) bool {
	p := s.poll
	if p == nil && !s.stopped {
		p = newPoller(s)
		s.poll = p
	}
	if p == nil {
		return false
	}
	fd := c.fd()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.byFD[int32(fd)] = c
	c.parkState.Store(parked)
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(fd)}
	op := syscall.EPOLL_CTL_MOD
	if !c.pollAdded {
		op = syscall.EPOLL_CTL_ADD
	}
	if err := syscall.EpollCtl(p.epfd, op, fd, &ev); err != nil {
		delete(p.byFD, int32(fd))
		c.parkState.Store(unparked)
		return false
	}
	c.pollAdded = true
	if c.Conn != nil && s.cfg.ParkBareAfter > 0 && !s.cfg.DropIdleWhenFull {
		if unmovedDirect(c.Conn) {
			// As light as a bare connection already; what it left behind
			// (its handler's state) is returned with the bare ones'.
			if !c.woken {
				p.shedSince++
			}
		} else {
			c.parkedAt = time.Now().UnixNano()
			p.light = append(p.light, lightEntry{c, c.parkedAt})
		}
	}
	return true
}

// shed makes the connections parked for ParkBareAfter bare: each keeps
// only a duplicate of its descriptor, registered with the poller, and
// its net.Conn is closed (which frees the runtime's poll descriptor,
// timers, addresses and buffers that a net.Conn holds).
func (p *poller) shed(s *StreamServer, now time.Time) {
	cut := now.Add(-s.cfg.ParkBareAfter).UnixNano()
	var take []*Conn
	p.mu.Lock()
	i := 0
	for ; i < len(p.light) && p.light[i].at <= cut; i++ {
		e := p.light[i]
		p.light[i] = lightEntry{}
		c := e.c
		if c.parkedAt != e.at || c.Conn == nil || !c.parkState.CompareAndSwap(parked, unparked) {
			continue // woken (and maybe parked again) since: stale
		}
		delete(p.byFD, int32(c.fd()))
		take = append(take, c)
	}
	if i > 0 {
		p.light = append(p.light[:0], p.light[i:]...)
	}
	p.mu.Unlock()
	for _, c := range take {
		s.mu.Lock()
		ok := !s.stopped && s.bareLocked(c) && s.parkLocked(c)
		released := false
		if !ok {
			released = s.closeParkedLocked(c)
		}
		s.mu.Unlock()
		if released {
			s.observe(Event{Kind: EventClosed, Remote: c.remote})
		}
	}
	p.mu.Lock()
	p.shedSince += len(take)
	settled := len(p.light) == 0 // a burst of connections has all gone bare
	free := (p.shedSince >= freeAfterShed || settled && p.shedSince >= freeAfterBurst) &&
		now.Sub(p.lastFree) >= freeEvery && p.freeing.CompareAndSwap(false, true)
	if free {
		p.shedSince, p.lastFree = 0, now
	}
	p.mu.Unlock()
	if free {
		go func() {
			defer p.freeing.Store(false)
			debug.FreeOSMemory()
		}()
	}
}

// bareLocked swaps c's net.Conn for a duplicate of its descriptor (c
// taken from the poller; s.mu held); false when that failed (c is then
// closed as usual).
func (s *StreamServer) bareLocked(c *Conn) bool {
	fd := c.fd()
	nfd, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		return false
	}
	// The registration is for the descriptor number: it would outlive
	// the number (the duplicate keeps the socket open) and keep firing.
	syscall.EpollCtl(s.poll.epfd, syscall.EPOLL_CTL_DEL, fd, nil)
	c.Conn.Close()
	c.Conn, c.sysfd, c.pollAdded = nil, int(nfd)+1, false
	return true
}

// restoreLocked makes a bare connection taken from the poller a net.Conn
// again (s.mu held); false when that failed (its descriptor is then
// closed).
func (s *StreamServer) restoreLocked(c *Conn) bool {
	if c.Conn != nil {
		return true
	}
	fd := c.sysfd - 1
	if s.poll != nil {
		syscall.EpollCtl(s.poll.epfd, syscall.EPOLL_CTL_DEL, fd, nil)
	}
	f := os.NewFile(uintptr(fd), "")
	nc, err := net.FileConn(f) // a duplicate of f's descriptor
	f.Close()
	c.sysfd, c.pollAdded = 0, false
	if err != nil {
		return false
	}
	c.Conn = nc
	return true
}

// closeBare closes a bare connection's descriptor (its registration with
// the poller goes with it).
func closeBare(c *Conn) {
	if c.sysfd > 0 {
		syscall.Close(c.sysfd - 1)
		c.sysfd = 0
	}
}

// unparkLocked forgets a connection taken away from the poller (its
// state already swapped to unparked; s.mu held).
func (s *StreamServer) unparkLocked(c *Conn) {
	p := s.poll
	if p == nil {
		return
	}
	p.mu.Lock()
	if p.byFD[int32(c.fd())] == c {
		delete(p.byFD, int32(c.fd()))
	}
	p.mu.Unlock()
}

func newPoller(s *StreamServer) *poller {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	p := &poller{epfd: epfd, byFD: map[int32]*Conn{}, done: make(chan struct{})}
	if err := syscall.Pipe2(p.wake[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		syscall.Close(epfd)
		return nil
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(p.wake[0])}
	syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p.wake[0], &ev)
	go p.loop(s)
	return p
}

// loop waits for parked connections to become readable and serves them
// again; once a second it closes those past their deadline.
func (p *poller) loop(s *StreamServer) {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 128)
	lastSweep := time.Now()
	for {
		wait := 1000
		if s.cfg.ParkBareAfter > 0 {
			wait = int(shedTick / time.Millisecond)
		}
		n, err := syscall.EpollWait(p.epfd, events, wait)
		if err != nil && err != syscall.EINTR {
			return
		}
		for _, ev := range events[:max(n, 0)] {
			if int(ev.Fd) == p.wake[0] {
				return
			}
			p.mu.Lock()
			c := p.byFD[ev.Fd]
			if c != nil {
				delete(p.byFD, ev.Fd)
			}
			p.mu.Unlock()
			if c == nil || !c.parkState.CompareAndSwap(parked, unparked) {
				continue
			}
			s.resume(c)
		}
		now := time.Now()
		if s.cfg.ParkBareAfter > 0 {
			p.shed(s, now)
		}
		if now.Sub(lastSweep) >= time.Second {
			lastSweep = now
			p.sweep(s, now)
		}
	}
}

// sweep closes the parked connections past their deadline.
func (p *poller) sweep(s *StreamServer, now time.Time) {
	var expired []*Conn
	p.mu.Lock()
	for fd, c := range p.byFD {
		if c.parkDeadline != 0 && now.UnixNano() > c.parkDeadline && c.parkState.CompareAndSwap(parked, unparked) {
			delete(p.byFD, fd)
			expired = append(expired, c)
		}
	}
	p.mu.Unlock()
	for _, c := range expired {
		s.mu.Lock()
		released := s.closeParkedLocked(c)
		s.mu.Unlock()
		if released {
			s.observe(Event{Kind: EventClosed, Remote: c.remote})
		}
	}
}

// stopPoller ends the poller's loop and waits for it.
func (s *StreamServer) stopPoller() {
	s.mu.Lock()
	p := s.poll
	s.mu.Unlock()
	if p == nil {
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.done
		return
	}
	p.closed = true
	p.mu.Unlock()
	syscall.Write(p.wake[1], []byte{0})
	<-p.done
	syscall.Close(p.epfd)
	syscall.Close(p.wake[0])
	syscall.Close(p.wake[1])
}
