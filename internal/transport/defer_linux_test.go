//go:build linux

package transport

import (
	"context"
	"io"
	"net"
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
