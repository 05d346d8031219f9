//go:build linux

package transport

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
)

// parkServer answers one line with its upper-case form, then parks the
// connection (deadline 400 ms) and returns; running counts its handlers
// running now.
type parkServer struct {
	running, calls atomic.Int32
	parkFor        time.Duration
}

func (p *parkServer) ServeConn(_ context.Context, c *Conn) {
	p.running.Add(1)
	defer p.running.Add(-1)
	p.calls.Add(1)
	for {
		if !c.SetIdle() {
			return
		}
		var line []byte
		one := make([]byte, 1)
		for {
			n, err := c.Read(one)
			if err != nil {
				return
			}
			if n == 1 && one[0] == '\n' {
				break
			}
			line = append(line, one[:n]...)
		}
		c.SetBusy()
		if _, err := c.Write([]byte(strings.ToUpper(string(line)) + "\n")); err != nil {
			return
		}
		if c.Park(time.Now().Add(p.parkFor)) {
			return
		}
	}
}

func TestPark(t *testing.T) {
	ps := &parkServer{parkFor: 400 * time.Millisecond}
	ev := newEvents()
	s, addr := startStream(t, StreamConfig{ParkIdleAbove: 1, Observe: ev.observe}, ps)
	a, b := dialFrom(t, addr, ""), dialFrom(t, addr, "")
	waitConns(t, s, 2)
	for range 3 {
		echoUpper(t, a, "one")
		echoUpper(t, b, "two")
	}
	// Both parked: no handler runs, each request ran a fresh handler.
	deadline := time.Now().Add(2 * time.Second)
	for ps.running.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := ps.running.Load(); n != 0 {
		t.Errorf("%d handlers running with both connections parked", n)
	}
	if n := ps.calls.Load(); n < 5 {
		t.Errorf("handler called %d times, want one per request after the first parks", n)
	}
	// The park deadline closes them and gives their slots back.
	closedByServer(t, a, 3*time.Second)
	closedByServer(t, b, 3*time.Second)
	waitConns(t, s, 0)
	// (A slot is given back before its EventClosed is reported.)
	testkit.WaitFor(t, "2 EventClosed", func() bool { return ev.count(EventClosed) == 2 })
}

func TestParkBelowThreshold(t *testing.T) {
	ps := &parkServer{parkFor: time.Minute}
	_, addr := startStream(t, StreamConfig{ParkIdleAbove: 5}, ps)
	a := dialFrom(t, addr, "")
	for range 3 {
		if got := roundTrip(t, a, "x"); got != "X" {
			t.Fatalf("got %q", got)
		}
	}
	if n := ps.calls.Load(); n != 1 {
		t.Errorf("handler called %d times, want 1 (one connection: no parking)", n)
	}
}

// TestParkShutdown: Shutdown closes parked connections, bare ones too,
// and gives their slots back.
func TestParkShutdown(t *testing.T) {
	for _, bare := range []time.Duration{0, 10 * time.Millisecond} {
		ps := &parkServer{parkFor: time.Minute}
		s, addr := startStream(t, StreamConfig{ParkIdleAbove: 1, ParkBareAfter: bare}, ps)
		a, b := dialFrom(t, addr, ""), dialFrom(t, addr, "")
		roundTrip(t, a, "a")
		roundTrip(t, b, "b")
		if bare > 0 {
			testkit.WaitFor(t, "both bare", func() bool { return bareConns(s) == 2 })
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.Shutdown(ctx); err != nil {
			t.Fatalf("bare after %v: Shutdown: %v", bare, err)
		}
		cancel()
		closedByServer(t, a, time.Second)
		closedByServer(t, b, time.Second)
		if n := s.Conns(); n != 0 {
			t.Errorf("bare after %v: Conns() = %d after Shutdown", bare, n)
		}
	}
}

// echoUpper sends line on c and checks parkServer's answer.
func echoUpper(t *testing.T, c net.Conn, line string) {
	t.Helper()
	if got := roundTrip(t, c, line); got != strings.ToUpper(line) {
		t.Fatalf("sent %q, got %q", line, got)
	}
}

// bareConns counts the server's connections that wait bare.
func bareConns(s *StreamServer) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		if c.parkState.Load() == parked && c.Conn == nil {
			n++
		}
	}
	return n
}

// TestParkBare: connections parked longer than ParkBareAfter drop their
// net.Conn; a request wakes one as a net.Conn again and it is served,
// parked, made bare again; the park deadline closes bare ones and gives
// their slots back.
func TestParkBare(t *testing.T) {
	ps := &parkServer{parkFor: 1500 * time.Millisecond}
	ev := newEvents()
	s, addr := startStream(t, StreamConfig{ParkIdleAbove: 1, ParkBareAfter: 30 * time.Millisecond, Observe: ev.observe}, ps)
	a, b, c := dialFrom(t, addr, ""), dialFrom(t, addr, ""), dialFrom(t, addr, "")
	waitConns(t, s, 3)
	for range 3 {
		echoUpper(t, a, "one")
		echoUpper(t, b, "two")
		testkit.WaitFor(t, "both bare", func() bool { return bareConns(s) == 2 })
	}
	echoUpper(t, c, "three")
	testkit.WaitFor(t, "all three bare", func() bool { return bareConns(s) == 3 })
	echoUpper(t, c, "again")
	// The park deadline closes bare connections too.
	for _, conn := range []net.Conn{a, b, c} {
		closedByServer(t, conn, 4*time.Second)
	}
	waitConns(t, s, 0)
	testkit.WaitFor(t, "3 EventClosed", func() bool { return ev.count(EventClosed) == 3 })
}
