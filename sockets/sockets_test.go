package sockets

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/internal/trace"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

func TestUpper(t *testing.T) {
	tests := []struct{ in, want string }{
		{"hello", "HELLO"},
		{"Hello, World 42!\n", "HELLO, WORLD 42!\n"},
		{"", ""},
		{"straße café", "STRAßE CAFÉ"},
		{"\xff\xfeabc", "\xff\xfeABC"}, // invalid UTF-8: only ASCII letters change
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.in), func(t *testing.T) {
			if got := string(Upper([]byte(tt.in))); got != tt.want {
				t.Errorf("Upper(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func startUDP(t *testing.T, cfg UDPConfig, deps service.Deps) *UDPServer {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	deps.Logger = testkit.Logger(t)
	s, err := NewUDPServer(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	return testkit.Start(t, s)
}

func startTCP(t *testing.T, cfg TCPConfig) *TCPServer {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	s, err := NewTCPServer(cfg, service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return testkit.Start(t, s)
}

func TestUDPServer(t *testing.T) {
	bus := trace.NewBus(nil)
	var mu sync.Mutex
	var events []trace.Event
	bus.Subscribe(trace.SinkFunc(func(e trace.Event) { mu.Lock(); events = append(events, e); mu.Unlock() }))
	s := startUDP(t, UDPConfig{MaxDatagram: 16}, service.Deps{Trace: bus})
	addr := s.Addrs()[0].String()
	c := &Client{Server: addr, Timeout: 2 * time.Second}

	got, err := c.UDP(context.Background(), []byte("hello udp"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "HELLO UDP" {
		t.Fatalf("reply = %q, want %q", got, "HELLO UDP")
	}

	// The answer goes to each sender's own address: two clients on two
	// sockets each get their own reply.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			msg := fmt.Sprintf("client %d", i)
			got, err := c.UDP(context.Background(), []byte(msg))
			if err != nil {
				t.Error(err)
				return
			}
			if want := strings.ToUpper(msg); string(got) != want {
				t.Errorf("client %d got %q, want %q", i, got, want)
			}
		})
	}
	wg.Wait()

	// Over the size limit: no answer.
	c.Timeout = 200 * time.Millisecond
	if _, err := c.UDP(context.Background(), bytes.Repeat([]byte("x"), 17)); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("oversized datagram: err = %v, want no answer", err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(events) < 2 || events[0].Proto != "udp" || events[0].To != addr || !strings.Contains(events[1].Summary, "HELLO UDP") {
		t.Fatalf("trace events = %+v, want a datagram to %s and its reply", events, addr)
	}
}

func TestTCPServerManyClients(t *testing.T) {
	s := startTCP(t, TCPConfig{})
	addr := s.Addrs()[0].String()
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			c := &Client{Server: addr, Timeout: 5 * time.Second}
			var out bytes.Buffer
			in := fmt.Sprintf("client %d line one\nclient %d line two\n", i, i)
			if err := c.TCP(context.Background(), strings.NewReader(in), &out); err != nil {
				t.Error(err)
				return
			}
			if want := strings.ToUpper(in); out.String() != want {
				t.Errorf("got %q, want %q", out.String(), want)
			}
		})
	}
	wg.Wait()
}

func TestTCPServerPipelinedLines(t *testing.T) {
	s := startTCP(t, TCPConfig{})
	conn, err := net.Dial("tcp", s.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Several lines in one write, the last without a newline before EOF.
	io.WriteString(conn, "a\nb\r\nc")
	conn.(*net.TCPConn).CloseWrite()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if want := "A\nB\r\nC"; string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestTCPServerLimits(t *testing.T) {
	tests := []struct {
		name  string
		cfg   TCPConfig
		send  string
		want  string
		delay bool // send nothing and wait for the idle timeout
	}{
		{name: "line too long", cfg: TCPConfig{MaxLineBytes: 8}, send: "0123456789abcdef\n", want: "ERROR line too long\n"},
		{name: "line at the limit", cfg: TCPConfig{MaxLineBytes: 8}, send: "abcdefg\n", want: "ABCDEFG\n"},
		{name: "idle timeout closes", cfg: TCPConfig{IdleTimeout: config.Duration(100 * time.Millisecond)}, delay: true, want: ""},
		{name: "slow line times out", cfg: TCPConfig{ReadTimeout: config.Duration(100 * time.Millisecond)}, send: "no newline", delay: true, want: "NO NEWLINE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startTCP(t, tt.cfg)
			conn, err := net.Dial("tcp", s.Addrs()[0].String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			io.WriteString(conn, tt.send)
			if !tt.delay {
				conn.(*net.TCPConn).CloseWrite()
			}
			// The server must close the connection by itself.
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(conn)
			if err != nil {
				t.Fatalf("server did not close the connection: %v", err)
			}
			if string(got) != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTCPServerMaxConns(t *testing.T) {
	s := startTCP(t, TCPConfig{MaxConns: 1})
	addr := s.Addrs()[0].String()
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	// Make sure the first connection is being served.
	io.WriteString(first, "one\n")
	first.SetReadDeadline(time.Now().Add(5 * time.Second))
	if l, err := bufio.NewReader(first).ReadString('\n'); err != nil || l != "ONE\n" {
		t.Fatalf("first connection: %q, %v", l, err)
	}
	second, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	second.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(second)
	if string(got) != "ERROR too many connections\n" {
		t.Fatalf("second connection got %q", got)
	}
}

func TestTCPShutdownClosesIdleConnections(t *testing.T) {
	s, err := NewTCPServer(TCPConfig{Addr: "127.0.0.1:0"}, service.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", s.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "x\n")
	bufio.NewReader(conn).ReadString('\n')
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Shutdown with an idle client took %v", d)
	}
	if _, err := net.Dial("tcp", s.Addrs()[0].String()); err == nil {
		t.Fatal("listener still accepts after Shutdown")
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

func TestClientNoServer(t *testing.T) {
	// A port with nothing behind it.
	ln, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.LocalAddr().String()
	ln.Close()
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	taddr := tl.Addr().String()
	tl.Close()

	c := &Client{Server: addr, Timeout: 300 * time.Millisecond}
	_, err = c.UDP(context.Background(), []byte("hi"))
	if !errors.Is(err, ErrNoAnswer) || !strings.Contains(err.Error(), "is the server running?") {
		t.Fatalf("UDP to nothing: %v", err)
	}
	c.Server = taddr
	err = c.TCP(context.Background(), strings.NewReader("hi\n"), io.Discard)
	if !errors.Is(err, ErrNoAnswer) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("TCP to nothing: %v", err)
	}
}

// fakeConn reads a fixed input and records what is written.
type fakeConn struct {
	r   io.Reader
	out bytes.Buffer
}

func (c *fakeConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c *fakeConn) Write(b []byte) (int, error)      { return c.out.Write(b) }
func (c *fakeConn) Close() error                     { return nil }
func (c *fakeConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *fakeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzTCPConnection feeds arbitrary bytes to a connection handler: it must
// never panic, must return, and must answer exactly the upper-cased lines,
// or refuse an overlong one and stop there.
func FuzzTCPConnection(f *testing.F) {
	for _, seed := range []string{"hello\n", "a\nb\nc", "", "\r\n\r\n", strings.Repeat("x", 70) + "\n", "\xff\x00abc\n", "ok\n" + strings.Repeat("y", 100)} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		const max = 64
		s, err := NewTCPServer(TCPConfig{Addr: "fuzz", MaxLineBytes: max}, service.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		c := &fakeConn{r: bytes.NewReader(in)}
		if !s.track(c) {
			t.Fatal("track refused")
		}
		s.handle(c)
		var want bytes.Buffer
		rest := in
		for len(rest) > 0 {
			line := rest
			if i := bytes.IndexByte(rest, '\n'); i >= 0 {
				line = rest[:i+1]
			}
			if len(line) > max {
				want.WriteString("ERROR line too long\n")
				break
			}
			want.Write(Upper(line))
			rest = rest[len(line):]
		}
		if !bytes.Equal(c.out.Bytes(), want.Bytes()) {
			t.Fatalf("input %q: got %q, want %q", in, c.out.Bytes(), want.Bytes())
		}
	})
}
