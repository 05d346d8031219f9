//go:build linux

package transport

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"
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
	for i := range 3 {
		if got := roundTrip(t, a, "one"); got != "ONE" {
			t.Fatalf("round %d: %q", i, got)
		}
		if got := roundTrip(t, b, "two"); got != "TWO" {
			t.Fatalf("round %d: %q", i, got)
		}
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
	// The sweep reports each close after giving its slot back: wait for
	// the events rather than count them at once.
	ev.wait(t, EventClosed)
	ev.wait(t, EventClosed)
	if n := ev.count(EventClosed); n != 2 {
		t.Errorf("%d EventClosed, want 2", n)
	}
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

func TestParkShutdown(t *testing.T) {
	ps := &parkServer{parkFor: time.Minute}
	s, addr := startStream(t, StreamConfig{ParkIdleAbove: 1}, ps)
	a, b := dialFrom(t, addr, ""), dialFrom(t, addr, "")
	roundTrip(t, a, "a")
	roundTrip(t, b, "b")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	closedByServer(t, a, time.Second)
	closedByServer(t, b, time.Second)
	if n := s.Conns(); n != 0 {
		t.Errorf("Conns() = %d after Shutdown", n)
	}
}
