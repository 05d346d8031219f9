package link

import (
	"context"
	"flag"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/internal/trace"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// echoServer accepts on ln and echoes every connection until ln closes.
func echoServer(t testing.TB, ln net.Listener) {
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
}

// within checks got against want: never more than early early (the delay
// is applied), at most late late (timers and scheduling on a busy machine
// only ever make a real socket later; the exact figures are the simulated
// clock's tests).
func within(t *testing.T, what string, got, want, early, late time.Duration) {
	t.Helper()
	if got < want-early || got > want+late {
		t.Errorf("%s: %s, want %s (-%s/+%s)", what, got, want, early, late)
	} else {
		t.Logf("%s: %s (want %s -%s/+%s)", what, got, want, early, late)
	}
}

var realDelay = flag.Duration("realdelay", 100*time.Millisecond, "TestDelayRealSockets: the link's one-way delay")

// TestDelayRealSockets: a server whose access link has a 100 ms delay, on
// a real loopback socket pair: the first exchange costs the handshake and
// the request/response round trip (4 × 100 ms), the next ones 2 × 100 ms.
// Bounds are looser than on the simulated clock (timers, scheduling). The
// issue's 1 s: go test -run DelayRealSockets ./lab/link/ -args -realdelay 1s
func TestDelayRealSockets(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := *realDelay
	l := New("server", Config{Delay: d}, 1)
	echoServer(t, &Listener{Listener: raw, Out: Path{l.Up}, In: Path{l.Down}})
	c, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1)
	for i, want := range []time.Duration{4 * d, 2 * d, 2 * d} {
		start := time.Now()
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		within(t, "exchange "+string(rune('1'+i)), time.Since(start), want, 10*time.Millisecond, 150*time.Millisecond)
	}
}

var (
	realRate = flag.Float64("realrate", 4e6, "TestRateRealSockets: the link's rate, bits/s")
	realSecs = flag.Int("realsecs", 2, "TestRateRealSockets: how long to measure, seconds")
)

// TestRateRealSockets: a 4 Mbit/s downlink on a real socket pair carries 4
// Mbit/s ± 5% over 2 s; the simulated tests hold the tighter bound. The
// issue's 1.54 Mbit/s over 10 s: go test -run RateRealSockets ./lab/link/
// -args -realrate 1.54e6 -realsecs 10
func TestRateRealSockets(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rate, secs := *realRate, time.Duration(*realSecs)*time.Second
	l := New("server", Config{Down: rate}, 1)
	ln := &Listener{Listener: raw, Out: Path{l.Up}, In: Path{l.Down}}
	got := make(chan int64, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		// The window starts with the first bytes (the sender may start
		// late on a loaded machine).
		buf := make([]byte, 64<<10)
		if _, err := c.Read(buf); err != nil {
			got <- -1
			return
		}
		c.SetReadDeadline(time.Now().Add(secs))
		n, _ := io.CopyBuffer(io.Discard, c, buf)
		got <- n
	}()
	defer func() { raw.Close(); wg.Wait() }()
	c, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		buf := make([]byte, 32<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	n := <-got
	measured := float64(n) * 8 / secs.Seconds()
	if e := (measured - rate) / rate; e < -0.05 || e > 0.05 {
		t.Errorf("%s/s link: %.4f Mbit/s over %s (%.1f%% off, want within 5%%)", FormatRate(rate), measured/1e6, secs, e*100)
	} else {
		t.Logf("%s/s link: %.4f Mbit/s over %s (%.2f%% off)", FormatRate(rate), measured/1e6, secs, e*100)
	}
}

// TestDatagramLossAndDrops: a dialed UDP socket over a lossy link loses
// about the configured share of datagrams, and each loss is a "link.drop"
// event on the trace bus.
func TestDatagramLossAndDrops(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	pc.(*net.UDPConn).SetReadBuffer(4 << 20) // the burst arrives at once
	bus := trace.NewBus(nil)
	var mu sync.Mutex
	drops := 0
	var bad []error
	cancel := bus.Subscribe(trace.SinkFunc(func(e trace.Event) {
		mu.Lock()
		defer mu.Unlock()
		if e.Type == trace.LinkDrop && strings.HasSuffix(e.Summary, "client up: loss") {
			drops++
		}
		if err := trace.Validate(e); err != nil {
			bad = append(bad, err)
		}
	}))
	defer cancel()
	l := New("client", Config{Loss: 0.2, Delay: 5 * time.Millisecond}, 42)
	d := &Dialer{Next: &net.Dialer{}, Bus: bus, Route: func(string, net.Addr) (Path, Path) { return Path{l.Up}, Path{l.Down} }}
	c, err := d.DialContext(context.Background(), "udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 500
	arrived := make(chan int)
	go func() {
		got := 0
		buf := make([]byte, 16)
		for {
			pc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if _, _, err := pc.ReadFrom(buf); err != nil {
				break
			}
			got++
		}
		arrived <- got
	}()
	for i := 0; i < n; i++ {
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	got := <-arrived
	lost := n - got
	mu.Lock()
	defer mu.Unlock()
	// The kernel may lose a few of the burst too; the link's own losses
	// are counted exactly.
	dropped := int(l.Up.Dropped())
	if dropped < 60 || dropped > 140 || lost < dropped || lost > dropped+10 || drops != dropped {
		t.Errorf("loss 20%% of %d datagrams: %d arrived, %d lost (pipe counted %d, %d link.drop events); want about 100 lost, all counted", n, got, lost, dropped, drops)
	}
	if len(bad) > 0 {
		t.Errorf("link.drop events break the trace schema: %v", bad[0])
	}
}

// TestDeadlinesAndClose: a shaped connection honours read deadlines (net/http
// relies on them) and delivers what was written before Close.
func TestDeadlinesAndClose(t *testing.T) {
	a, b := net.Pipe()
	l := New("x", Config{Delay: 50 * time.Millisecond}, 1)
	c := Wrap(a, Path{l.Up}, Path{l.Down}, 0, false, nil)
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	buf := make([]byte, 4)
	if _, err := c.Read(buf); !os.IsTimeout(err) {
		t.Fatalf("read past its deadline: %v, want a timeout", err)
	}
	c.SetReadDeadline(time.Time{})
	done := make(chan []byte)
	go func() {
		got, _ := io.ReadAll(b)
		done <- got
	}()
	start := time.Now()
	if _, err := c.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	got := <-done
	if string(got) != "bye" {
		t.Errorf("written before Close: peer read %q, want bye", got)
	}
	if el := time.Since(start); el < 50*time.Millisecond {
		t.Errorf("delivered after %s, before the 50 ms delay", el)
	}
	if _, err := c.Read(buf); err == nil {
		t.Error("read after Close succeeded")
	}
}

// BenchmarkRoundTrip measures a 1-byte TCP echo round trip on loopback:
// "unshaped" is what every lab host without a link gets (nothing is
// wrapped: the raw connection), "zero-link" the cost of the wrapper itself
// when a link with no delay and no rate limit is configured.
func BenchmarkRoundTrip(b *testing.B) {
	for _, tc := range []struct {
		name string
		wrap bool
	}{{"unshaped", false}, {"zero-link", true}} {
		b.Run(tc.name, func(b *testing.B) {
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			var ln net.Listener = raw
			if tc.wrap {
				l := New("bench", Config{}, 1)
				ln = &Listener{Listener: raw, Out: Path{l.Up}, In: Path{l.Down}}
			}
			echoServer(b, ln)
			c, err := net.Dial("tcp", raw.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := []byte{1}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestQueueEvents: bytes that wait for the transmitter are published as
// "link.queue" events naming the link and the wait, following the schema.
func TestQueueEvents(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	go io.Copy(io.Discard, b)
	bus := trace.NewBus(nil)
	var mu sync.Mutex
	var events []trace.Event
	cancel := bus.Subscribe(trace.SinkFunc(func(e trace.Event) { mu.Lock(); events = append(events, e); mu.Unlock() }))
	defer cancel()
	l := New("slow", Config{Up: 1e6}, 1)
	other := Wrap(a, Path{l.Up}, Path{l.Down}, 0, false, bus)
	defer other.Close()
	// 4 chunks of 1250 B at 1 Mbit/s: 10 ms each, written at once by two
	// writers, so the later ones wait.
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Go(func() { other.Write(make([]byte, 2500)) })
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(events) == 0 {
		t.Fatal("no link.queue event for bytes that waited 10 ms")
	}
	for _, e := range events {
		if e.Type != trace.LinkQueue || !strings.HasPrefix(e.Summary, "slow up: queued ") {
			t.Errorf("event %+v, want a link.queue on slow up", e)
		}
		if err := trace.Validate(e); err != nil {
			t.Errorf("schema: %v", err)
		}
	}
}

// TestLostSegmentStallsItsConnection: on real sockets, two connections
// share a 25 ms downlink that loses the next segment. The connection that
// lost it gets nothing until the retransmission timeout, not even the bytes
// sent after the lost one (TCP delivers in order: head-of-line blocking);
// the other connection's bytes, sent later, arrive after the delay alone.
// The loss is published as a link.drop event at the time the segment was
// due, following the schema.
func TestLostSegmentStallsItsConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const d = 25 * time.Millisecond
	l := New("client link", Config{Delay: d}, 1)
	bus := trace.NewBus(nil)
	var mu sync.Mutex
	var events []trace.Event
	defer bus.Subscribe(trace.SinkFunc(func(e trace.Event) { mu.Lock(); events = append(events, e); mu.Unlock() }))()
	pair := func() (client net.Conn, server net.Conn) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		w := Wrap(c, Path{l.Up}, Path{l.Down}, 0, false, bus)
		t.Cleanup(func() { w.Close() })
		return w, s
	}
	blocked, blockedSrv := pair()
	other, otherSrv := pair()
	arrived := func(c net.Conn, n int, out chan<- time.Time) {
		buf := make([]byte, n)
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Error(err)
		}
		out <- time.Now()
	}
	l.Down.LoseNext(1)
	start := time.Now()
	blockedSrv.Write([]byte("lost"))
	time.Sleep(10 * time.Millisecond)
	blockedSrv.Write([]byte("behind")) // sent after the lost segment, on its connection
	otherSrv.Write([]byte("other"))    // on the other connection
	bt, ot := make(chan time.Time, 1), make(chan time.Time, 1)
	go arrived(blocked, len("lostbehind"), bt)
	go arrived(other, len("other"), ot)
	stall := MinRTO + 2*d
	got := (<-ot).Sub(start)
	within(t, "the other connection", got, d+10*time.Millisecond, 10*time.Millisecond, 100*time.Millisecond)
	gotB := (<-bt).Sub(start)
	within(t, "the connection that lost a segment (both writes)", gotB, d+stall, 5*time.Millisecond, 150*time.Millisecond)
	if gotB <= got {
		t.Errorf("the blocked connection's bytes came at +%s, not after the other connection's (+%s)", gotB, got)
	}
	time.Sleep(20 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	var drops []trace.Event
	for _, e := range events {
		if e.Type == trace.LinkDrop {
			drops = append(drops, e)
		}
		if err := trace.Validate(e); err != nil {
			t.Errorf("schema: %v", err)
		}
	}
	if len(drops) != 1 || !strings.Contains(drops[0].Summary, "client link down: lost a TCP segment, retransmitted after 250ms") ||
		drops[0].From != blocked.RemoteAddr().String() || drops[0].To != blocked.LocalAddr().String() {
		t.Fatalf("link.drop events %+v, want one for the blocked connection, server to client", drops)
	}
	if at := drops[0].Time.Sub(start); at < d {
		t.Errorf("link.drop at +%s, before the segment was due (+%s)", at, d)
	}
}
