//go:build linux

package transport

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
)

// TestDeferAccept: with DeferAccept the listener has TCP_DEFER_ACCEPT,
// a client that has sent nothing is not handed to the server (no slot,
// no handler), and its first bytes get it accepted and served at once;
// on the direct path too.
func TestDeferAccept(t *testing.T) {
	for _, direct := range []bool{false, true} {
		t.Run(map[bool]string{false: "portable", true: "direct"}[direct], func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			s := NewStreamServer(StreamConfig{DeferAccept: 2 * time.Second, DirectAccept: direct}, HandlerFunc(func(_ context.Context, c *Conn) {
				answerGot(c)
			}))
			if err := s.Start(ln); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			testkit.WaitFor(t, "TCP_DEFER_ACCEPT set", func() bool {
				raw, err := ln.(*net.TCPListener).SyscallConn()
				if err != nil {
					return false
				}
				v := 0
				raw.Control(func(fd uintptr) { v, _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT) })
				return v > 0
			})
			c := dialFrom(t, ln.Addr().String(), "")
			time.Sleep(300 * time.Millisecond)
			if n := s.Conns(); n != 0 {
				t.Fatalf("%d connections served before the client sent anything, want 0", n)
			}
			start := time.Now()
			io.WriteString(c, "hello\n\n")
			if got, err := readLine(t, c); got != "got hello" || err != nil {
				t.Fatalf("reply %q, %v", got, err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("answered %v after the request, want at once", d)
			}
		})
	}
}

// TestDirectParkAtOnce: a direct connection that has not waited yet may
// be parked at once (ParkAtOnce): it waits outside Go's netpoller as
// light as a bare one, so it is never made bare (nothing to shed), and
// is served again, still direct, when its next request comes; after
// that wake, and for a connection that moved to the netpoller,
// ParkAtOnce is false.
func TestDirectParkAtOnce(t *testing.T) {
	type seen struct{ atOnce, unmoved bool }
	var mu sync.Mutex
	got := map[string]seen{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewStreamServer(StreamConfig{DirectAccept: true, DirectInline: true, DeferAccept: time.Second,
		ParkIdleAbove: 1, ParkBareAfter: 10 * time.Millisecond}, HandlerFunc(func(_ context.Context, c *Conn) {
		for {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			var line []byte
			one := make([]byte, 1)
			for {
				if _, err := c.Read(one); err != nil {
					return
				}
				if one[0] == '\n' {
					break
				}
				line = append(line, one[0])
			}
			mu.Lock() // (before the answer: the test reads got once answered)
			got[string(line)] = seen{c.ParkAtOnce(), unmovedDirect(c.Conn)}
			mu.Unlock()
			if _, err := c.Write([]byte(strings.ToUpper(string(line)) + "\n")); err != nil {
				return
			}
			if c.Park(time.Now().Add(5 * time.Second)) {
				return
			}
		}
	}))
	if err := s.Start(ln); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	addr := ln.Addr().String()
	first := dialFrom(t, addr, "") // alone: not parked, waits in its goroutine (moved)
	echoUpper(t, first, "zero")
	a, b := dialFrom(t, addr, ""), dialFrom(t, addr, "")
	echoUpper(t, a, "one")
	echoUpper(t, b, "two")
	parkedDirect := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		n := 0
		for c := range s.conns {
			if c.parkState.Load() == parked && unmovedDirect(c.Conn) {
				n++
			}
		}
		return n
	}
	testkit.WaitFor(t, "two parked direct connections", func() bool { return parkedDirect() == 2 })
	time.Sleep(5 * shedTick) // far past ParkBareAfter
	if n, bare := parkedDirect(), bareConns(s); n != 2 || bare != 0 {
		t.Errorf("%d parked direct, %d bare connections after ParkBareAfter; want 2, 0 (nothing to shed)", n, bare)
	}
	echoUpper(t, a, "again")
	echoUpper(t, first, "zero again")
	mu.Lock()
	defer mu.Unlock()
	for line, want := range map[string]seen{
		"one":        {atOnce: true, unmoved: true},
		"two":        {atOnce: true, unmoved: true},
		"again":      {atOnce: false, unmoved: true}, // woken: waits in its goroutine next time
		"zero again": {atOnce: false, unmoved: false},
	} {
		if got[line] != want {
			t.Errorf("after %q: ParkAtOnce, unmoved = %v, want %v", line, got[line], want)
		}
	}
}
