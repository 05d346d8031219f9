//go:build linux

package fastpath

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
)

// TestParkedConnsWokenAndServed: beyond ParkIdleAbove, idle connections
// are parked (no goroutine, no buffer), bare ones too (ParkBareAfter: no
// net.Conn); a request wakes one and it is served (the handler runs
// again), several times over, pipelined too.
func TestParkedConnsWokenAndServed(t *testing.T) {
	for _, bare := range []time.Duration{0, 10 * time.Millisecond} {
		t.Run(fmt.Sprintf("bare after %v", bare), func(t *testing.T) {
			s, h, addr := startFast(t, 2, bare)
			var conns []net.Conn
			for range 6 {
				c := dial(t, addr)
				conns = append(conns, c)
			}
			for round := range 3 {
				for i, c := range conns {
					p := fmt.Sprintf("/r%d/c%d", round, i)
					io.WriteString(c, get(p)+get(p+"/2"))
					readEcho(t, c, p, p+"/2")
				}
				if bare > 0 {
					time.Sleep(20 * bare) // parked long enough to be bare
				}
			}
			testkit.WaitFor(t, "no buffers held by parked connections", func() bool { return s.Buffers() == 0 })
			// 6 connections, 3 rounds: parked connections run the handler
			// again for each round after their first.
			if n := h.calls.Load(); n < 6+2*6 {
				t.Errorf("handler ran %d times, want ≥ 18 (woken from the poller)", n)
			}
		})
	}
}
