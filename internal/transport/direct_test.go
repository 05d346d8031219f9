package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// directSuite is the test that runs the StreamServer's tests again with
// DirectAccept (startStream sets it for the tests under this name).
const directSuite = "TestStreamDirect"

func TestStreamDirect(t *testing.T) {
	for _, tt := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"Limits", TestStreamLimits},
		{"SlotFreedOnClose", TestStreamSlotFreedOnClose},
		{"DropOldestIdle", TestStreamDropOldestIdle},
		{"Refuse", TestStreamRefuse},
		{"Panic", TestStreamPanic},
		{"Shutdown", TestStreamShutdown},
		{"DetachKeepsSlot", TestStreamDetachKeepsSlot},
	} {
		t.Run(tt.name, tt.f)
	}
}

// directProbe is a handler recording what it saw of each connection.
type directProbe struct {
	mu     sync.Mutex
	direct []bool // the Conn was a direct one (Linux) when served
	moved  []bool // it had moved to Go's netpoller by the end
	errs   []error
	serve  func(c *Conn) error
}

func (p *directProbe) ServeConn(_ context.Context, c *Conn) {
	err := p.serve(c)
	d, isDirect := c.Conn.(*directConn)
	moved := false
	if isDirect {
		moved = directMoved(d)
	}
	p.mu.Lock()
	p.direct = append(p.direct, isDirect)
	p.moved = append(p.moved, moved)
	p.errs = append(p.errs, err)
	p.mu.Unlock()
}

func (p *directProbe) last(t *testing.T) (direct, moved bool, err error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p.mu.Lock()
		n := len(p.direct)
		if n > 0 {
			defer p.mu.Unlock()
			return p.direct[n-1], p.moved[n-1], p.errs[n-1]
		}
		p.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("handler did not end")
		}
		time.Sleep(time.Millisecond)
	}
}

// readRequest reads up to a blank line ("\n\n") or an error.
func readRequest(c net.Conn) (string, error) {
	var b []byte
	buf := make([]byte, 512)
	for !bytes.Contains(b, []byte("\n\n")) {
		n, err := c.Read(buf)
		b = append(b, buf[:n]...)
		if err != nil {
			return string(b), err
		}
	}
	return string(b), nil
}

// directCase is a connection served with DirectAccept: what the client
// writes before the server accepts, the handler, the client's side, and
// whether the connection should have moved to Go's netpoller.
type directCase struct {
	name      string
	pre       string // written before the server starts accepting
	serve     func(c *Conn) error
	client    func(t *testing.T, c net.Conn)
	wantMoved bool
	wantErr   func(error) bool // nil: no error
}

// answerGot reads a request (within 5 s) and answers "got REQUEST".
func answerGot(c *Conn) error {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	req, err := readRequest(c)
	if err != nil {
		return err
	}
	_, err = io.WriteString(c, "got "+strings.TrimSpace(req)+"\n")
	return err
}

func TestDirectConn(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<19) // 8 MiB
	tests := []directCase{
		{
			name:  "request there at once: one read, one write, no move",
			pre:   "hello\n\n",
			serve: answerGot,
			client: func(t *testing.T, c net.Conn) {
				if got, err := readLine(t, c); got != "got hello" || err != nil {
					t.Errorf("reply %q, %v", got, err)
				}
				closedByServer(t, c, 2*time.Second)
			},
		},
		{
			name:  "a slow client: the read moves to the netpoller and waits",
			serve: answerGot,
			client: func(t *testing.T, c net.Conn) {
				time.Sleep(100 * time.Millisecond)
				io.WriteString(c, "hel")
				time.Sleep(50 * time.Millisecond)
				io.WriteString(c, "lo\n\n")
				if got, err := readLine(t, c); got != "got hello" || err != nil {
					t.Errorf("reply %q, %v", got, err)
				}
			},
			wantMoved: true,
		},
		{
			name: "a read deadline set before the move holds after it",
			serve: func(c *Conn) error {
				c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				_, err := readRequest(c)
				return err
			},
			client:    func(t *testing.T, c net.Conn) { closedByServer(t, c, 3*time.Second) },
			wantMoved: true,
			wantErr:   isTimeoutErr,
		},
		{
			name: "a deadline already past fails the read at once",
			serve: func(c *Conn) error {
				c.SetReadDeadline(time.Now().Add(-time.Second))
				_, err := readRequest(c)
				return err
			},
			client:  func(t *testing.T, c net.Conn) { closedByServer(t, c, 3*time.Second) },
			wantErr: func(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) },
		},
		{
			name: "a large answer to a slow reader moves to the netpoller",
			serve: func(c *Conn) error {
				if _, err := readRequest(c); err != nil {
					return err
				}
				c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				_, err := c.Write(big)
				return err
			},
			client: func(t *testing.T, c net.Conn) {
				io.WriteString(c, "big\n\n")
				time.Sleep(100 * time.Millisecond) // the socket's buffers fill
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				got, err := io.ReadAll(c)
				if err != nil || !bytes.Equal(got, big) {
					t.Errorf("read %d bytes (want %d), %v", len(got), len(big), err)
				}
			},
			wantMoved: true,
		},
		{
			name: "two writes (TCP_NODELAY set for the second) arrive at once",
			pre:  "x\n\n",
			serve: func(c *Conn) error {
				if _, err := readRequest(c); err != nil {
					return err
				}
				for _, part := range []string{"one\n", "two\n"} {
					if _, err := io.WriteString(c, part); err != nil {
						return err
					}
				}
				// Wait for the client's word that both arrived: a delayed
				// second write (Nagle against a delayed ACK) would take 40 ms.
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err := readRequest(c)
				return err
			},
			client: func(t *testing.T, c net.Conn) {
				start := time.Now()
				a, _ := readLine(t, c)
				b, _ := readLine(t, c)
				if a != "one" || b != "two" {
					t.Errorf("got %q %q", a, b)
				}
				if d := time.Since(start); d > 30*time.Millisecond {
					t.Logf("two writes took %v (a loaded machine?)", d)
				}
				io.WriteString(c, "ok\n\n")
			},
			wantMoved: true, // the wait for the client's word
		},
		{
			name: "the client's addresses",
			pre:  "who\n\n",
			serve: func(c *Conn) error {
				if _, err := readRequest(c); err != nil {
					return err
				}
				_, err := io.WriteString(c, c.RemoteAddr().String()+" "+c.RemoteAddrPort().String()+" "+c.LocalAddr().String()+"\n")
				return err
			},
			client: func(t *testing.T, c net.Conn) {
				got, _ := readLine(t, c)
				want := c.LocalAddr().String() + " " + c.LocalAddr().String() + " " + c.RemoteAddr().String()
				if got != want {
					t.Errorf("addresses %q, want %q", got, want)
				}
			},
		},
		{
			name: "Detach hands over a *net.TCPConn",
			serve: func(c *Conn) error {
				if _, err := readRequest(c); err != nil {
					return err
				}
				nc, release := c.Detach()
				defer release()
				defer nc.Close()
				_, isTCP := nc.(*net.TCPConn)
				_, err := io.WriteString(nc, map[bool]string{true: "tcp\n", false: "other\n"}[isTCP])
				return err
			},
			client: func(t *testing.T, c net.Conn) {
				io.WriteString(c, "detach\n\n")
				if got, _ := readLine(t, c); got != "tcp" {
					t.Errorf("detached connection is %q", got)
				}
			},
			wantMoved: true,
		},
	}
	for _, inline := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(map[bool]string{false: "goroutine", true: "inline"}[inline]+"/"+tt.name, func(t *testing.T) {
				testDirectConn(t, inline, tt)
			})
		}
	}
}

// testDirectConn runs one case of TestDirectConn.
func testDirectConn(t *testing.T, inline bool, tt directCase) {
	p := &directProbe{serve: tt.serve}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := dialFrom(t, ln.Addr().String(), "")
	if tt.pre != "" {
		io.WriteString(c, tt.pre)
		time.Sleep(20 * time.Millisecond) // in the socket before accept
	}
	s := NewStreamServer(StreamConfig{DirectAccept: true, DirectInline: inline}, p)
	s.Start(ln)
	t.Cleanup(func() { s.Close() })
	tt.client(t, c)
	direct, moved, err := p.last(t)
	if direct != canDirect {
		t.Errorf("direct connection: %v, want %v", direct, canDirect)
	}
	if canDirect && moved != tt.wantMoved {
		t.Errorf("moved to the netpoller: %v, want %v", moved, tt.wantMoved)
	}
	switch {
	case tt.wantErr == nil && err != nil:
		t.Errorf("handler: %v", err)
	case tt.wantErr != nil && !tt.wantErr(err):
		t.Errorf("handler: %v, not the error wanted", err)
	}
}

// openFDs counts the process's open descriptors (-1 where unknown).
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// waitFDs waits until at most want descriptors are open.
func waitFDs(t *testing.T, want int) {
	t.Helper()
	if want < 0 {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for openFDs() > want {
		if time.Now().After(deadline) {
			t.Fatalf("%d descriptors open, want at most %d (a leak)", openFDs(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// echoOnce answers one request ("...\n\n") with "ok" and closes.
var echoOnce = func(c *Conn) error {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := readRequest(c); err != nil {
		return err
	}
	_, err := io.WriteString(c, "ok\n")
	return err
}

func TestDirectManyConnects(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 1000
	}
	before := openFDs()
	g := runtime.NumGoroutine()
	ev := newEvents()
	ev.ch = make(chan Event, 4*n)
	s, addr := startStream(t, StreamConfig{DirectAccept: true, DirectInline: true, Observe: ev.observe}, HandlerFunc(func(_ context.Context, c *Conn) { echoOnce(c) }))
	var failed atomic.Int32
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.WriteString(c, "GET\n\n")
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if b, _ := io.ReadAll(c); string(b) != "ok\n" {
					failed.Add(1)
				}
				c.Close()
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d connections failed", f, n)
	}
	waitConns(t, s, 0)
	if a, c := ev.count(EventAccepted), ev.count(EventClosed); a != n || c != n {
		t.Errorf("events: %d accepted, %d closed, want %d each", a, c, n)
	}
	waitFDs(t, before+2) // the listener and its duplicate
	s.Close()
	waitFDs(t, before)
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > g && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := runtime.NumGoroutine(); got > g {
		t.Errorf("%d goroutines after Close, %d before", got, g)
	}
}

func TestDirectClientGoneMidRequest(t *testing.T) {
	before := openFDs()
	p := &directProbe{serve: echoOnce}
	s, addr := startStream(t, StreamConfig{DirectAccept: true, DirectInline: true}, p)
	for _, how := range []string{"close", "reset"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET /part")
		time.Sleep(50 * time.Millisecond) // the handler waits for the rest
		if how == "reset" {
			c.(*net.TCPConn).SetLinger(0)
		}
		c.Close()
		_, _, err = p.last(t)
		if err == nil {
			t.Errorf("%s: the handler saw no error", how)
		}
		p.mu.Lock()
		p.direct, p.moved, p.errs = nil, nil, nil
		p.mu.Unlock()
	}
	waitConns(t, s, 0)
	s.Close()
	waitFDs(t, before)
}

func TestDirectShutdownUnderLoad(t *testing.T) {
	before := openFDs()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	s := NewStreamServer(StreamConfig{DirectAccept: true, DirectInline: true}, HandlerFunc(func(_ context.Context, c *Conn) {
		for c.SetIdle() {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := readRequest(c); err != nil {
				return
			}
			c.SetBusy()
			time.Sleep(time.Millisecond)
			if _, err := io.WriteString(c, "ok\n"); err != nil {
				return
			}
		}
	}))
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	stop := make(chan struct{})
	var ok atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err != nil {
					continue
				}
				for range w % 3 { // some keep-alive, some one request
					c.SetDeadline(time.Now().Add(2 * time.Second))
					io.WriteString(c, "GET\n\n")
					if l, err := readLine(t, c); err != nil || l != "ok" {
						break
					}
					ok.Add(1)
				}
				c.Close()
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	close(stop)
	wg.Wait()
	if ok.Load() == 0 {
		t.Error("no request was answered before Shutdown")
	}
	if s.Conns() != 0 {
		t.Errorf("Conns() = %d after Shutdown", s.Conns())
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still accepting after Shutdown")
	}
	waitFDs(t, before)
}

// TestDirectInlineShutdownIdle: a keep-alive connection whose handler
// took over from the accepting goroutine (it waits for its next
// request) is closed by Shutdown, which returns at once.
func TestDirectInlineShutdownIdle(t *testing.T) {
	s, addr := startStream(t, StreamConfig{DirectAccept: true, DirectInline: true}, newLineServer())
	c := dialFrom(t, addr, "")
	if got := roundTrip(t, c, "a"); got != "A" {
		t.Fatalf("got %q", got)
	}
	time.Sleep(50 * time.Millisecond) // the handler waits for the next line
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	closedByServer(t, c, time.Second)
}
