package transport

import (
	"time"
)

// Parking idle connections (Linux): a handler whose connection waits for
// its next request may call Conn.Park and return; the connection then
// holds no goroutine (and no goroutine stack, the bulk of an idle
// connection's memory) while one epoll instance per server watches it.
// When bytes, the end or an error arrive, the server runs the Handler
// again on a new goroutine; a connection still parked at its deadline is
// closed. Elsewhere Park reports false and handlers wait as before.

// Park states of a Conn.
const (
	unparked int32 = iota
	parked
)

// Park asks to hand the idle connection to the server's poller until
// bytes arrive, or closed at deadline. When it returns true the handler
// must return at once without touching the connection; the Handler runs
// again (a fresh call, on a new goroutine) when the connection becomes
// readable. It returns false when parking is unavailable (not Linux, a
// connection without a file descriptor, StreamConfig.ParkIdleAbove 0) or
// the server has no more than ParkIdleAbove connections: a busy server
// with few connections keeps waiting in its goroutines, which is cheaper
// per request.
func (c *Conn) Park(deadline time.Time) bool {
	if !c.Parkable() {
		return false
	}
	c.parkDeadline = 0
	if !deadline.IsZero() {
		c.parkDeadline = deadline.UnixNano()
	}
	c.parkAsked = true
	return true
}

// Parkable reports whether Park would park the connection now (a
// handler may wait a little in its goroutine first, and park only a
// connection that stays idle).
func (c *Conn) Parkable() bool {
	s := c.srv
	if s.cfg.ParkIdleAbove <= 0 || !canPark || s.closing.Load() || c.evicted.Load() {
		return false
	}
	s.mu.Lock()
	many := s.slots > s.cfg.ParkIdleAbove
	s.mu.Unlock()
	return many && c.fd() >= 0
}

// ParkAtOnce reports whether a handler whose connection has to wait for
// its next request should park it without waiting in its goroutine
// first: the connection is a direct one still outside Go's netpoller
// (DirectAccept), which waiting would move into it (a dozen system calls
// and a net.Conn with its poll descriptor), and it has not been parked
// before. Parking it costs one epoll registration, and parked it holds
// no more than a bare connection. A connection woken from parking waits
// in its goroutine first next time (a busy keep-alive connection parked
// after every request would pay a wake-up per request).
func (c *Conn) ParkAtOnce() bool { return !c.woken && unmovedDirect(c.Conn) }

// closeParkedLocked closes a connection taken from the poller (its park
// state already swapped to unparked) and returns whether it still held
// its slot (the caller then reports EventClosed).
func (s *StreamServer) closeParkedLocked(c *Conn) bool {
	if c.Conn != nil {
		c.Conn.Close()
	} else {
		closeBare(c)
	}
	return s.releaseLocked(c)
}
