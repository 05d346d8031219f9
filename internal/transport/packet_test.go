package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
)

// echo is a test PacketHandler: each datagram is answered upper-cased;
// "panic" panics, "later" is answered "LATER" from another goroutine
// through Batch.Conn, a cut datagram is answered "TRUNC <len>".
type echo struct {
	out [][]byte
	sh  *echoShared
}

type echoShared struct {
	maxLen  atomic.Int64
	gate    chan struct{} // when set, the first batch (of any reader) waits on it
	entered chan struct{} // closed when the first batch arrived
	first   atomic.Bool
	later   sync.WaitGroup
}

func (sh *echoShared) newHandler() PacketHandler {
	return &echo{out: make([][]byte, DefaultBatchSize), sh: sh}
}

func (e *echo) ServeBatch(b *Batch) {
	sh := e.sh
	if n := int64(b.Len()); n > sh.maxLen.Load() {
		sh.maxLen.Store(n)
	}
	if sh.gate != nil && sh.first.CompareAndSwap(false, true) {
		close(sh.entered)
		<-sh.gate
	}
	for i := 0; i < b.Len(); i++ {
		d := b.Data(i)
		from := b.From(i)
		if !from.IsValid() {
			continue
		}
		switch {
		case b.Truncated(i):
			e.out[i] = append(e.out[i][:0], "TRUNC "+strconv.Itoa(len(d))...)
		case string(d) == "panic":
			panic("packet panic")
		case string(d) == "later":
			conn := b.Conn()
			sh.later.Add(1)
			go func() {
				defer sh.later.Done()
				time.Sleep(10 * time.Millisecond)
				conn.WriteToUDPAddrPort([]byte("LATER"), from)
			}()
			continue
		default:
			e.out[i] = appendUpper(e.out[i][:0], d)
		}
		b.Reply(i, e.out[i])
	}
}

// appendUpper appends d with ASCII letters upper-cased (no allocation once
// dst has room).
func appendUpper(dst, d []byte) []byte {
	for _, c := range d {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

type packetMode struct {
	name    string
	network string
	addr    string
	cfg     PacketConfig
	sockets int
	batches bool // datagrams queued while the handler is busy arrive in one batch
}

func packetModes() []packetMode {
	linux := runtime.GOOS == "linux"
	return []packetMode{
		{"batch via the netpoller", "udp4", "127.0.0.1:0", PacketConfig{}, 1, linux},
		{"batch with blocking reads", "udp4", "127.0.0.1:0", PacketConfig{BlockingReads: true}, 1, linux},
		{"portable, one datagram per read", "udp4", "127.0.0.1:0", PacketConfig{NoBatch: true}, 1, false},
		{"batch via the netpoller, IPv6", "udp6", "[::1]:0", PacketConfig{}, 1, linux},
		{"blocking reads, IPv6", "udp6", "[::1]:0", PacketConfig{BlockingReads: true}, 1, linux},
		{"two readers on one socket", "udp4", "127.0.0.1:0", PacketConfig{Readers: 2}, 1, false},
		{"two reuseport sockets, blocking reads", "udp4", "127.0.0.1:0", PacketConfig{BlockingReads: true}, 2, false},
	}
}

func startPacket(t testing.TB, m packetMode, sh *echoShared) (*PacketServer, *net.UDPAddr) {
	t.Helper()
	conns, err := ListenUDPGroup(context.Background(), m.network, m.addr, m.sockets)
	if err != nil {
		testkit.Skip(t, "cannot bind %s: %v", m.addr, err)
	}
	s := NewPacketServer(m.cfg, sh.newHandler)
	if err := s.Start(conns...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); sh.later.Wait() })
	return s, conns[0].LocalAddr().(*net.UDPAddr)
}

func dialUDP(t testing.TB, to *net.UDPAddr) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, to)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readUDP(t testing.TB, c *net.UDPConn) string {
	t.Helper()
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	return string(buf[:n])
}

func TestPacketEcho(t *testing.T) {
	for _, m := range packetModes() {
		t.Run(m.name, func(t *testing.T) {
			sh := &echoShared{gate: make(chan struct{}), entered: make(chan struct{})}
			_, addr := startPacket(t, m, sh)
			c := dialUDP(t, addr)
			const n = 20
			c.Write([]byte("msg-0"))
			<-sh.entered // the first batch holds the reader
			for i := 1; i < n; i++ {
				c.Write([]byte(fmt.Sprintf("msg-%d", i)))
			}
			time.Sleep(20 * time.Millisecond) // let them reach the socket's queue
			close(sh.gate)
			got := map[string]bool{}
			for range n {
				got[readUDP(t, c)] = true
			}
			for i := range n {
				if want := fmt.Sprintf("MSG-%d", i); !got[want] {
					t.Errorf("no reply %q (got %v)", want, got)
				}
			}
			max := sh.maxLen.Load()
			if m.batches && max < 2 {
				t.Errorf("largest batch %d: datagrams queued while the handler was busy were not batched", max)
			}
			if m.cfg.NoBatch && max != 1 {
				t.Errorf("largest batch %d on the portable path, want 1", max)
			}
			// Several clients at once, each gets its own answers.
			var wg sync.WaitGroup
			for k := range 4 {
				cc := dialUDP(t, addr)
				wg.Go(func() {
					for j := range 10 {
						msg := fmt.Sprintf("c%d-%d", k, j)
						cc.Write([]byte(msg))
						buf := make([]byte, 64)
						cc.SetReadDeadline(time.Now().Add(3 * time.Second))
						r, err := cc.Read(buf)
						if err != nil || string(buf[:r]) != string(bytes.ToUpper([]byte(msg))) {
							t.Errorf("client %d: %q, %v", k, buf[:r], err)
							return
						}
					}
				})
			}
			wg.Wait()
			c.Write([]byte("later"))
			if got := readUDP(t, c); got != "LATER" {
				t.Errorf("reply sent later through Batch.Conn: %q", got)
			}
		})
	}
}

func TestPacketTruncated(t *testing.T) {
	for _, noBatch := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoBatch=%v", noBatch), func(t *testing.T) {
			sh := &echoShared{}
			_, addr := startPacket(t, packetMode{network: "udp4", addr: "127.0.0.1:0", sockets: 1, cfg: PacketConfig{MaxDatagram: 16, NoBatch: noBatch}}, sh)
			c := dialUDP(t, addr)
			for _, tc := range []struct{ send, want string }{
				{"exactly sixteen!", "EXACTLY SIXTEEN!"},
				{"seventeen bytes!!", "TRUNC 16"},
				{string(make([]byte, 1000)), "TRUNC 16"},
				{"short", "SHORT"},
			} {
				c.Write([]byte(tc.send))
				if got := readUDP(t, c); got != tc.want {
					t.Errorf("%d bytes: %q, want %q", len(tc.send), got, tc.want)
				}
			}
		})
	}
}

func TestPacketPanic(t *testing.T) {
	for _, m := range packetModes()[:3] {
		t.Run(m.name, func(t *testing.T) {
			var panics atomic.Int32
			m.cfg.Observe = func(e Event) {
				if e.Kind == EventPanic {
					panics.Add(1)
				}
			}
			sh := &echoShared{}
			_, addr := startPacket(t, m, sh)
			c := dialUDP(t, addr)
			for i := range 3 {
				c.Write([]byte("panic"))
				// The rest of a batch that panicked is dropped: retry as
				// a UDP client does.
				want := fmt.Sprintf("AFTER-%d", i)
				buf := make([]byte, 64)
				var got string
				for try := 0; try < 10 && got != want; try++ {
					c.Write([]byte(fmt.Sprintf("after-%d", i)))
					c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
					if n, err := c.Read(buf); err == nil {
						got = string(buf[:n])
					}
				}
				if got != want {
					t.Fatalf("after a panic: %q, want %q", got, want)
				}
			}
			if panics.Load() == 0 {
				t.Error("no EventPanic observed")
			}
		})
	}
}

func TestPacketShutdown(t *testing.T) {
	tests := []struct {
		name    string
		grace   time.Duration
		wantErr error
	}{
		{"drains the batch in hand", 5 * time.Second, nil},
		{"gives up when ctx ends", 50 * time.Millisecond, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		for _, m := range packetModes()[:3] {
			t.Run(tt.name+"/"+m.name, func(t *testing.T) {
				sh := &echoShared{gate: make(chan struct{}), entered: make(chan struct{})}
				s, addr := startPacket(t, m, sh)
				c := dialUDP(t, addr)
				c.Write([]byte("in flight"))
				<-sh.entered
				ctx, cancel := context.WithTimeout(context.Background(), tt.grace)
				defer cancel()
				errc := make(chan error, 1)
				go func() { errc <- s.Shutdown(ctx) }()
				if tt.wantErr != nil {
					err := <-errc
					close(sh.gate)
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("Shutdown: %v, want %v", err, tt.wantErr)
					}
					return
				}
				time.Sleep(20 * time.Millisecond)
				close(sh.gate)
				if got := readUDP(t, c); got != "IN FLIGHT" {
					t.Errorf("reply to the batch in hand: %q", got)
				}
				if err := <-errc; err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
				c.Write([]byte("too late"))
				buf := make([]byte, 64)
				c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				if n, err := c.Read(buf); err == nil {
					t.Errorf("answered after Shutdown: %q", buf[:n])
				}
			})
		}
	}
}

// BenchmarkPacketServer measures one datagram's round trip through the
// server (client write, server batch and reply, client read) in windows of
// 16 datagrams. allocs/op is per datagram, client included.
func BenchmarkPacketServer(b *testing.B) {
	for _, m := range packetModes()[:3] {
		b.Run(m.name, func(b *testing.B) {
			sh := &echoShared{}
			_, addr := startPacket(b, m, sh)
			c := dialUDP(b, addr)
			msg := []byte("www.example.com. IN A query payload")
			buf := make([]byte, 2048)
			const window = 16
			b.ReportAllocs()
			b.ResetTimer()
			for sent := 0; sent < b.N; {
				k := min(window, b.N-sent)
				for range k {
					c.Write(msg)
				}
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				for range k {
					if _, err := c.Read(buf); err != nil {
						b.Fatal(err)
					}
				}
				sent += k
			}
		})
	}
}
