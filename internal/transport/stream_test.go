package transport

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lineServer is a test protocol: one line in, one line out.
//
//	"panic"   the handler panics
//	"block"   the handler waits for release, then answers "done"
//	"slow"    the handler answers "slow done" after 200 ms
//	"hang"    the handler reads again without going idle (never answers)
//	"hangctx" the handler waits for its context to end
//	"detach"  the handler detaches the connection and passes it on
//	other     the line upper-cased
type lineServer struct {
	idle     chan idleEvent // a connection went idle (buffered)
	blocked  chan struct{}  // a "block" request is waiting
	release  chan struct{}
	detached chan detachedConn
}

type idleEvent struct {
	remote netip.AddrPort
	served int // requests answered before
}

type detachedConn struct {
	nc      net.Conn
	release func()
}

func newLineServer() *lineServer {
	return &lineServer{idle: make(chan idleEvent, 100), blocked: make(chan struct{}, 10),
		release: make(chan struct{}), detached: make(chan detachedConn, 10)}
}

func (l *lineServer) ServeConn(ctx context.Context, c *Conn) {
	r := bufio.NewReader(c)
	for served := 0; ; served++ {
		if !c.SetIdle() {
			return
		}
		l.idle <- idleEvent{c.RemoteAddrPort(), served}
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		c.SetBusy()
		var out string
		switch line = strings.TrimSpace(line); line {
		case "panic":
			panic("test panic")
		case "block":
			l.blocked <- struct{}{}
			select {
			case <-l.release:
			case <-ctx.Done():
				return
			}
			out = "done"
		case "slow":
			time.Sleep(200 * time.Millisecond)
			out = "slow done"
		case "hang":
			r.ReadString('\n')
			return
		case "hangctx":
			<-ctx.Done()
			return
		case "detach":
			nc, release := c.Detach()
			l.detached <- detachedConn{nc, release}
			return
		default:
			out = strings.ToUpper(line)
		}
		if _, err := io.WriteString(c, out+"\n"); err != nil {
			return
		}
	}
}

// events collects what a server observed.
type events struct {
	mu sync.Mutex
	ev []Event
	ch chan Event
}

func newEvents() *events { return &events{ch: make(chan Event, 1000)} }

func (e *events) observe(ev Event) {
	e.mu.Lock()
	e.ev = append(e.ev, ev)
	e.mu.Unlock()
	e.ch <- ev
}

// wait returns the next event of kind k (skipping others), failing after 5 s.
func (e *events) wait(t *testing.T, k EventKind) Event {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-e.ch:
			if ev.Kind == k {
				return ev
			}
		case <-timeout:
			t.Fatalf("no event of kind %d", k)
		}
	}
}

func (e *events) count(k EventKind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.ev {
		if ev.Kind == k {
			n++
		}
	}
	return n
}

func rejectReply(c net.Conn, why RejectReason) { io.WriteString(c, "BUSY "+why.String()+"\n") }

func startStream(t *testing.T, cfg StreamConfig, h Handler) (*StreamServer, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(t.Name(), directSuite+"/") {
		cfg.DirectAccept = true // TestStreamDirect runs these tests again
	}
	s := NewStreamServer(cfg, h)
	if err := s.Start(ln); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, ln.Addr().String()
}

// dialFrom connects to addr from the local address from ("" for any).
func dialFrom(t *testing.T, addr, from string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readLine reads one line (or what came before EOF) within 3 s.
func readLine(t *testing.T, c net.Conn) (string, error) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	var b []byte
	one := make([]byte, 1)
	for {
		n, err := c.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				return string(b), nil
			}
			b = append(b, one[0])
		}
		if err != nil {
			return string(b), err
		}
	}
}

func roundTrip(t *testing.T, c net.Conn, line string) string {
	t.Helper()
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		t.Fatalf("write %q: %v", line, err)
	}
	got, err := readLine(t, c)
	if err != nil {
		t.Fatalf("reply to %q: %q, %v", line, got, err)
	}
	return got
}

// closedByServer asserts that the server closed c (EOF or reset, no bytes).
func closedByServer(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	var b [64]byte
	n, err := c.Read(b[:])
	if n > 0 || err == nil || isTimeoutErr(err) {
		t.Fatalf("connection not closed by the server: read %q, %v", b[:n], err)
	}
}

// waitConns waits until s has n connections.
func waitConns(t *testing.T, s *StreamServer, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.Conns() != n {
		if time.Now().After(deadline) {
			t.Fatalf("Conns() = %d, want %d", s.Conns(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestStreamLimits(t *testing.T) {
	type client struct {
		from string
		want string // the reply to "hi", or the busy reply
	}
	tests := []struct {
		name    string
		cfg     StreamConfig
		clients []client
	}{
		{"connection limit", StreamConfig{MaxConns: 2}, []client{
			{"127.0.0.1", "HI"}, {"127.0.0.2", "HI"}, {"127.0.0.3", "BUSY full"}}},
		{"per-IP limit", StreamConfig{MaxConnsPerIP: 1}, []client{
			{"127.0.0.1", "HI"}, {"127.0.0.1", "BUSY per-ip limit"}, {"127.0.0.2", "HI"}}},
		{"per-IP limit below the connection limit", StreamConfig{MaxConns: 3, MaxConnsPerIP: 2}, []client{
			{"127.0.0.1", "HI"}, {"127.0.0.1", "HI"}, {"127.0.0.1", "BUSY per-ip limit"}, {"127.0.0.2", "HI"}, {"127.0.0.2", "BUSY full"}}},
		{"per-IP limit with an exempt address", StreamConfig{MaxConnsPerIP: 1, PerIPExempt: func(a netip.Addr) bool { return a == netip.MustParseAddr("127.0.0.2") }}, []client{
			{"127.0.0.1", "HI"}, {"127.0.0.1", "BUSY per-ip limit"}, {"127.0.0.2", "HI"}, {"127.0.0.2", "HI"}, {"127.0.0.2", "HI"}}},
		{"no limits", StreamConfig{}, []client{
			{"127.0.0.1", "HI"}, {"127.0.0.1", "HI"}, {"127.0.0.1", "HI"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := newEvents()
			tt.cfg.OnReject, tt.cfg.Observe = rejectReply, ev.observe
			s, addr := startStream(t, tt.cfg, newLineServer())
			served := 0
			for i, cl := range tt.clients {
				c := dialFrom(t, addr, cl.from)
				if strings.HasPrefix(cl.want, "BUSY") {
					got, _ := readLine(t, c)
					if got != cl.want {
						t.Fatalf("client %d from %s: %q, want %q", i, cl.from, got, cl.want)
					}
					closedByServer(t, c, 2*time.Second)
					ev.wait(t, EventRejected)
					continue
				}
				if got := roundTrip(t, c, "hi"); got != cl.want {
					t.Fatalf("client %d from %s: %q, want %q", i, cl.from, got, cl.want)
				}
				served++
			}
			if got := s.Conns(); got != served {
				t.Errorf("Conns() = %d, want %d", got, served)
			}
		})
	}
}

func TestStreamSlotFreedOnClose(t *testing.T) {
	ev := newEvents()
	_, addr := startStream(t, StreamConfig{MaxConns: 1, OnReject: rejectReply, Observe: ev.observe}, newLineServer())
	a := dialFrom(t, addr, "")
	roundTrip(t, a, "a")
	a.Close()
	ev.wait(t, EventClosed)
	b := dialFrom(t, addr, "")
	if got := roundTrip(t, b, "b"); got != "B" {
		t.Fatalf("after the first client left: %q, want B", got)
	}
}

func TestStreamDropOldestIdle(t *testing.T) {
	ev := newEvents()
	l := newLineServer()
	cfg := StreamConfig{MaxConns: 2, DropIdleWhenFull: true, OnReject: rejectReply, Observe: ev.observe}
	s, addr := startStream(t, cfg, l)
	waitIdle := func(c net.Conn, served int) {
		t.Helper()
		want := idleEvent{c.LocalAddr().(*net.TCPAddr).AddrPort(), served}
		for {
			select {
			case got := <-l.idle:
				if got == want {
					return
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%v never went idle", want)
			}
		}
	}
	a := dialFrom(t, addr, "")
	roundTrip(t, a, "a")
	waitIdle(a, 1)
	b := dialFrom(t, addr, "")
	waitIdle(b, 0)
	io.WriteString(b, "block\n")
	<-l.blocked // b is busy, a idle

	c := dialFrom(t, addr, "")
	if got := roundTrip(t, c, "c"); got != "C" {
		t.Fatalf("new client while full with one idle: %q, want C", got)
	}
	closedByServer(t, a, 2*time.Second)
	if e := ev.wait(t, EventEvicted); e.Remote != a.LocalAddr().(*net.TCPAddr).AddrPort() {
		t.Errorf("evicted %s, want a (%s)", e.Remote, a.LocalAddr())
	}
	waitIdle(c, 1)

	// b busy, c idle: the next client evicts c, never the busy b.
	d := dialFrom(t, addr, "")
	if got := roundTrip(t, d, "d"); got != "D" {
		t.Fatalf("second eviction: %q, want D", got)
	}
	closedByServer(t, c, 2*time.Second)
	io.WriteString(d, "block\n")
	<-l.blocked // b and d busy: nobody to evict

	e := dialFrom(t, addr, "")
	if got, _ := readLine(t, e); got != "BUSY full" {
		t.Fatalf("full with every connection busy: %q, want BUSY full", got)
	}
	l.release <- struct{}{}
	l.release <- struct{}{}
	for _, c := range []net.Conn{b, d} {
		if got, err := readLine(t, c); got != "done" {
			t.Fatalf("busy client: %q, %v, want done", got, err)
		}
	}
	if got := s.Conns(); got != 2 {
		t.Errorf("Conns() = %d, want 2", got)
	}
	if n := ev.count(EventEvicted); n != 2 {
		t.Errorf("%d evictions, want 2", n)
	}
}

func TestStreamRefuse(t *testing.T) {
	ev := newEvents()
	refused := netip.MustParseAddr("127.0.0.2")
	cfg := StreamConfig{MaxConns: 1, OnReject: rejectReply, Observe: ev.observe,
		Refuse: func(a netip.AddrPort) bool { return a.Addr() == refused }}
	s, addr := startStream(t, cfg, newLineServer())
	tests := []struct {
		name string
		from string
	}{
		{"refused while the server has room", "127.0.0.2"},
		{"refused while the server is full", "127.0.0.2"},
	}
	var held net.Conn
	parent := t
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if i == 1 {
				held = dialFrom(parent, addr, "127.0.0.1")
				roundTrip(t, held, "x")
			}
			start := time.Now()
			c := dialFrom(t, addr, tt.from)
			closedByServer(t, c, 2*time.Second)
			if d := time.Since(start); d > time.Second {
				t.Errorf("refused client closed after %v, want at once", d)
			}
			ev.wait(t, EventRefused)
		})
	}
	if got := s.Conns(); got != 1 {
		t.Errorf("Conns() = %d, want 1 (refused clients take no slot)", got)
	}
	if n := ev.count(EventRejected); n != 0 {
		t.Errorf("%d rejections: a refused client must not reach the limits", n)
	}
	if got := roundTrip(t, held, "still"); got != "STILL" {
		t.Errorf("allowed client: %q", got)
	}
}

// emfileListener fails Accept with EMFILE fails times, then waits for
// Close.
type emfileListener struct {
	fails  int
	mu     sync.Mutex
	times  []time.Time
	closed chan struct{}
	once   sync.Once
}

func (l *emfileListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.times = append(l.times, time.Now())
	n := len(l.times)
	l.mu.Unlock()
	if n <= l.fails {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *emfileListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *emfileListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func (l *emfileListener) calls() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.times...)
}

func TestStreamAcceptBackoff(t *testing.T) {
	const fails = 6
	ln := &emfileListener{fails: fails, closed: make(chan struct{})}
	ev := newEvents()
	s := NewStreamServer(StreamConfig{Observe: ev.observe}, newLineServer())
	s.Start(ln)
	for range fails {
		ev.wait(t, EventAcceptError)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(ln.calls()) < fails+1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	s.Shutdown(context.Background())
	times := ln.calls()
	if len(times) != fails+1 {
		t.Fatalf("%d Accept calls, want %d (no busy spin)", len(times), fails+1)
	}
	want := minAcceptDelay
	for i := 1; i < len(times); i++ {
		gap := times[i].Sub(times[i-1])
		if gap < want {
			t.Errorf("retry %d after %v, want at least %v", i, gap, want)
		}
		want *= 2
	}
}

func TestAcceptDelaySequence(t *testing.T) {
	// The same arithmetic as serve: 5 ms doubling, capped at 1 s.
	var d time.Duration
	var got []time.Duration
	for range 10 {
		if d == 0 {
			d = minAcceptDelay
		} else {
			d = min(2*d, maxAcceptDelay)
		}
		got = append(got, d)
	}
	if got[0] != 5*time.Millisecond || got[1] != 10*time.Millisecond || got[7] != 640*time.Millisecond || got[8] != time.Second || got[9] != time.Second {
		t.Errorf("delays %v", got)
	}
}

func TestStreamShutdownCutsBackoff(t *testing.T) {
	ln := &emfileListener{fails: 1 << 30, closed: make(chan struct{})}
	ev := newEvents()
	s := NewStreamServer(StreamConfig{Observe: ev.observe}, newLineServer())
	s.Start(ln)
	for range 5 {
		ev.wait(t, EventAcceptError)
	}
	start := time.Now()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Shutdown took %v while backing off", d)
	}
}

func TestStreamPanic(t *testing.T) {
	ev := newEvents()
	cfg := StreamConfig{Observe: ev.observe, OnPanic: func(c net.Conn, v any) { io.WriteString(c, "ERROR internal\n") }}
	s, addr := startStream(t, cfg, newLineServer())
	for i := range 3 {
		c := dialFrom(t, addr, "")
		if got := roundTrip(t, c, "before"); got != "BEFORE" {
			t.Fatalf("round %d: %q", i, got)
		}
		if got := roundTrip(t, c, "panic"); got != "ERROR internal" {
			t.Fatalf("round %d: reply to a panic: %q, want the OnPanic reply", i, got)
		}
		closedByServer(t, c, 2*time.Second)
		if e := ev.wait(t, EventPanic); e.Panic != "test panic" {
			t.Errorf("panic value %v", e.Panic)
		}
	}
	waitConns(t, s, 0) // panicked connections give their slot back
	c := dialFrom(t, addr, "")
	if got := roundTrip(t, c, "after"); got != "AFTER" {
		t.Fatalf("after panics: %q", got)
	}
}

func TestStreamShutdown(t *testing.T) {
	tests := []struct {
		name    string
		request string        // sent by the busy client
		reply   string        // what it should get back ("" = closed)
		grace   time.Duration // Shutdown's context
		wantErr error
	}{
		{"drains a request in flight", "slow", "slow done", 5 * time.Second, nil},
		{"closes a busy reader when ctx ends", "hang", "", 100 * time.Millisecond, context.DeadlineExceeded},
		{"cancels the handler's context when ctx ends", "hangctx", "", 100 * time.Millisecond, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLineServer()
			s, addr := startStream(t, StreamConfig{}, l)
			idle := dialFrom(t, addr, "")
			roundTrip(t, idle, "idle")
			busy := dialFrom(t, addr, "")
			roundTrip(t, busy, "x")
			io.WriteString(busy, tt.request+"\n")
			time.Sleep(50 * time.Millisecond) // the request has reached the handler
			ctx, cancel := context.WithTimeout(context.Background(), tt.grace)
			defer cancel()
			errc := make(chan error, 1)
			start := time.Now()
			go func() { errc <- s.Shutdown(ctx) }()
			closedByServer(t, idle, time.Second)
			got, _ := readLine(t, busy)
			if got != tt.reply {
				t.Errorf("busy client got %q, want %q", got, tt.reply)
			}
			if err := <-errc; !errors.Is(err, tt.wantErr) {
				t.Errorf("Shutdown: %v, want %v", err, tt.wantErr)
			}
			if d := time.Since(start); d > tt.grace+time.Second {
				t.Errorf("Shutdown took %v", d)
			}
			if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				t.Error("still accepting after Shutdown")
			}
			if s.Conns() != 0 {
				t.Errorf("Conns() = %d after Shutdown", s.Conns())
			}
		})
	}
}

func TestStreamServeReturnsErrServerClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewStreamServer(StreamConfig{}, newLineServer())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	c := dialFrom(t, ln.Addr().String(), "")
	roundTrip(t, c, "x")
	s.Close()
	if err := <-errc; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v, want ErrServerClosed", err)
	}
	closedByServer(t, c, time.Second)
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := s.Serve(ln2); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Close: %v", err)
	}
}

func TestStreamDetachKeepsSlot(t *testing.T) {
	l := newLineServer()
	ev := newEvents()
	s, addr := startStream(t, StreamConfig{MaxConns: 1, OnReject: rejectReply, Observe: ev.observe}, l)
	a := dialFrom(t, addr, "")
	io.WriteString(a, "detach\n")
	d := <-l.detached
	defer d.nc.Close()
	b := dialFrom(t, addr, "")
	if got, _ := readLine(t, b); got != "BUSY full" {
		t.Fatalf("while a detached connection holds the slot: %q", got)
	}
	// The detached connection is still open and now the caller's.
	io.WriteString(d.nc, "from the new owner\n")
	if got, _ := readLine(t, a); got != "from the new owner" {
		t.Fatalf("detached connection: %q", got)
	}
	d.release()
	d.release()
	if got := s.Conns(); got != 0 {
		t.Fatalf("Conns() = %d after release (twice)", got)
	}
	c := dialFrom(t, addr, "")
	if got := roundTrip(t, c, "c"); got != "C" {
		t.Fatalf("after release: %q", got)
	}
	// Shutdown does not close a detached connection.
	s.Shutdown(context.Background())
	io.WriteString(d.nc, "still mine\n")
	if got, _ := readLine(t, a); got != "still mine" {
		t.Fatalf("detached connection after Shutdown: %q", got)
	}
}
