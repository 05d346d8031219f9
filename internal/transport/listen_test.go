package transport

import (
	"context"
	"errors"
	"testing"
)

func TestListenReusePort(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		reuse  bool
		second bool // a second bind to the same port succeeds
	}{
		{"plain sockets do not share a port", false, false},
		{"reuseport sockets share a port", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.reuse && !ReusePortAvailable() {
				_, err := ListenConfig{ReusePort: true}.ListenUDP(ctx, "udp", "127.0.0.1:0")
				if !errors.Is(err, ErrNoReusePort) {
					t.Fatalf("ListenUDP with ReusePort on a system without it: %v, want ErrNoReusePort", err)
				}
				return
			}
			lc := ListenConfig{ReusePort: tt.reuse}
			ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			ln2, err := lc.Listen(ctx, "tcp", ln.Addr().String())
			if got := err == nil; got != tt.second {
				t.Fatalf("second tcp bind: err=%v, want success=%v", err, tt.second)
			}
			if ln2 != nil {
				ln2.Close()
			}
			u, err := lc.ListenUDP(ctx, "udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer u.Close()
			u2, err := lc.ListenUDP(ctx, "udp", u.LocalAddr().String())
			if got := err == nil; got != tt.second {
				t.Fatalf("second udp bind: err=%v, want success=%v", err, tt.second)
			}
			if u2 != nil {
				u2.Close()
			}
		})
	}
}

func TestListenUDPGroup(t *testing.T) {
	for _, n := range []int{1, 3} {
		cs, err := ListenUDPGroup(context.Background(), "udp", "127.0.0.1:0", n)
		if err != nil {
			t.Fatal(err)
		}
		want := n
		if !ReusePortAvailable() {
			want = 1
		}
		if len(cs) != want {
			t.Errorf("n=%d: %d sockets, want %d", n, len(cs), want)
		}
		for _, c := range cs[1:] {
			if c.LocalAddr().String() != cs[0].LocalAddr().String() {
				t.Errorf("n=%d: socket on %s, want %s", n, c.LocalAddr(), cs[0].LocalAddr())
			}
		}
		for _, c := range cs {
			c.Close()
		}
	}
}
