//go:build linux

package dnsserver

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/applayer/applayer/internal/testkit"
)

// pmtuOf reads the socket's IP_MTU_DISCOVER (level IP) or
// IPV6_MTU_DISCOVER (level IPv6).
func pmtuOf(t *testing.T, c *net.UDPConn, level int) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	opt := unix.IP_MTU_DISCOVER
	if level == unix.IPPROTO_IPV6 {
		opt = unix.IPV6_MTU_DISCOVER
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// The server's UDP sockets send without DF and ignore path-MTU news, on
// IPv4 and IPv6 (where the host has it), as NSD and Knot do.
func TestUDPSocketsOmitPMTU(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		levels []int
	}{
		{"127.0.0.1:0", []int{unix.IPPROTO_IP}},
		{"[::1]:0", []int{unix.IPPROTO_IPV6, unix.IPPROTO_IP}},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			s := New(Config{Addr: tc.addr, Network: "udp", UDPSockets: 2}, HandlerFunc(func(*Request, []byte) []byte { return nil }))
			if err := s.Start(context.Background()); err != nil {
				if tc.addr[0] == '[' {
					testkit.Skip(t, "no IPv6 loopback: %v", err)
				}
				t.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				s.Shutdown(ctx)
			}()
			if len(s.udp) != 2 {
				t.Fatalf("%d UDP sockets, want 2", len(s.udp))
			}
			for i, c := range s.udp {
				for _, level := range tc.levels {
					// IP_PMTUDISC_OMIT and IPV6_PMTUDISC_OMIT are both 5.
					if v := pmtuOf(t, c, level); v != unix.IP_PMTUDISC_OMIT {
						t.Errorf("socket %d level %d: PMTU discovery mode %d, want %d (OMIT)", i, level, v, unix.IP_PMTUDISC_OMIT)
					}
				}
			}
		})
	}
}
