//go:build linux

package transport

import (
	"sync"
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
}

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
	return true
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
		n, err := syscall.EpollWait(p.epfd, events, 1000)
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
		if now := time.Now(); now.Sub(lastSweep) >= time.Second {
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
		if !c.parkDeadline.IsZero() && now.After(c.parkDeadline) && c.parkState.CompareAndSwap(parked, unparked) {
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
