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

// TestParkedConnsWokenAndServed: beyond ParkIdleAbove, connections that
// stay idle for parkWait are parked (no goroutine, no buffer), bare
// ones too (ParkBareAfter: no net.Conn); a request wakes one and it is
// served (the handler runs again), several times over, pipelined too;
// requests in quick succession keep the goroutine.
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
				time.Sleep(3*parkWait + 20*bare) // idle long enough to be parked (and bare)
			}
			testkit.WaitFor(t, "no buffers held by parked connections", func() bool { return s.Buffers() == 0 })
			// 6 connections, 3 rounds: parked connections run the handler
			// again for each round after their first.
			if n := h.calls.Load(); n < 6+2*6 {
				t.Errorf("handler ran %d times, want ≥ 18 (woken from the poller)", n)
			}
			// A request that follows within parkWait finds the connection
			// still served by its goroutine: one wake for three requests.
			before := h.calls.Load()
			for i := range 3 {
				p := fmt.Sprintf("/quick/%d", i)
				io.WriteString(conns[0], get(p))
				readEcho(t, conns[0], p)
			}
			if n := h.calls.Load() - before; n != 1 {
				t.Errorf("handler ran %d times for three quick requests, want 1", n)
			}
		})
	}
}
