//go:build linux

package fastpath

import (
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

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
				// On a loaded machine a handler can still be on its way to
				// parking: every one parked before the next round.
				testkit.WaitFor(t, "every connection parked", func() bool { return h.running.Load() == 0 })
			}
			testkit.WaitFor(t, "no buffers held by parked connections", func() bool { return s.Buffers() == 0 })
			// 6 connections, 3 rounds: parked connections run the handler
			// again for each round after their first.
			if n := h.calls.Load(); n < 6+2*6 {
				t.Errorf("handler ran %d times, want ≥ 18 (woken from the poller)", n)
			}
			// A request that follows within parkWait finds the connection
			// still served by its goroutine: one wake for three requests.
			// A loaded machine can hold the client past parkWait between
			// two requests, so one of three tries must show it.
			var runs []int32
			for try := range 3 {
				testkit.WaitFor(t, "every connection parked", func() bool { return h.running.Load() == 0 })
				before := h.calls.Load()
				for i := range 3 {
					p := fmt.Sprintf("/quick/%d/%d", try, i)
					io.WriteString(conns[0], get(p))
					readEcho(t, conns[0], p)
				}
				runs = append(runs, h.calls.Load()-before)
				if runs[len(runs)-1] == 1 {
					break
				}
			}
			if runs[len(runs)-1] != 1 {
				t.Errorf("handler ran %v times for three quick requests (three tries), want 1", runs)
			}
		})
	}
}

// TestWriteLastRidesWithFIN: sysWriteLast holds a connection's last
// bytes back (MSG_MORE: no segment leaves at the call, where sysWrite
// sends one at once) and the close sends them, FIN included: the peer
// reads them all, then the end.
func TestWriteLastRidesWithFIN(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client := dial(t, ln.Addr().String())
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := sc.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	segsOut := func() (n uint32) {
		raw.Control(func(fd uintptr) {
			if ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
				n = ti.Segs_out
			}
		})
		return n
	}
	var sent []uint32
	for _, f := range []func(uintptr, []byte) (int, syscall.Errno){sysWrite, sysWriteLast} {
		before := segsOut()
		raw.Control(func(fd uintptr) {
			if n, e := f(fd, []byte("0123456789")); n != 10 || e != 0 {
				t.Errorf("wrote %d, %v", n, e)
			}
		})
		sent = append(sent, segsOut()-before)
	}
	if sent[0] != 1 || sent[1] != 0 {
		t.Errorf("segments sent by the call: sysWrite %d (want 1), sysWriteLast %d (want 0: held for the FIN)", sent[0], sent[1])
	}
	sc.Close()
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(client)
	if string(got) != "01234567890123456789" || err != nil {
		t.Errorf("client read %q, %v; want both writes, then the end", got, err)
	}
}
