package server

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestDirectAcceptConnections: the cleartext port accepts on the
// transport's direct path (transport.StreamConfig.DirectAccept and
// DirectInline). Requests answered with one write and a close, requests
// that arrive in pieces (the connection moves to Go's netpoller),
// keep-alive requests, a request net/http answers (a hand-over) and a
// client gone mid-request are all served as before, counted in the
// metrics, and leave no connection open.
func TestDirectAcceptConnections(t *testing.T) {
	e := start(t, nil)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Go(func() {
			var got string
			switch i % 4 {
			case 0: // at once, Connection: close
				got = raw(t, e.plain, "GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			case 1: // HTTP/1.0
				got = raw(t, e.plain, "GET /hello.txt HTTP/1.0\r\n\r\n")
			case 2: // in pieces: waits in the netpoller
				got = rawPieces(t, e.plain, "GET /hello.txt HTTP/1.1\r\nHo", "st: x\r\nConnection: close\r\n\r\n")
			case 3: // net/http's (a redirect), handed over
				got = raw(t, e.plain, "GET /old HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			}
			want := map[int]string{0: "HTTP/1.1 200 OK", 1: "HTTP/1.0 200 OK", 2: "HTTP/1.1 200 OK", 3: "HTTP/1.1 301 "}[i%4]
			if !strings.HasPrefix(got, want) || i%4 != 3 && !strings.HasSuffix(got, files["hello.txt"]) {
				errs <- got
			}
		})
	}
	wg.Wait()
	close(errs)
	for got := range errs {
		t.Errorf("answer %q", got)
	}
	// Keep-alive: two requests, the second after a pause (the
	// connection waits for it in the netpoller).
	c, err := net.Dial("tcp", e.plain)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	for i := range 2 {
		io.WriteString(c, "GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
		k, _ := c.Read(buf)
		if got := string(buf[:k]); !strings.HasPrefix(got, "HTTP/1.1 200 OK") || !strings.HasSuffix(got, files["hello.txt"]) {
			t.Errorf("keep-alive request %d: %q", i, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.Close()
	// A client gone mid-request.
	if c, err := net.Dial("tcp", e.plain); err == nil {
		io.WriteString(c, "GET /hello.txt HTTP/1.1\r\n")
		time.Sleep(20 * time.Millisecond)
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(e.srv.m.open) != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if v := testutil.ToFloat64(e.srv.m.open); v != 0 {
		t.Errorf("open_connections = %v after every client left", v)
	}
	if v := testutil.ToFloat64(e.srv.m.conns); v != n+2 {
		t.Errorf("connections_total = %v, want %d", v, n+2)
	}
	if v := testutil.ToFloat64(e.srv.m.requests.WithLabelValues("HTTP/1.1", "GET", "200")); v != n/4*2+2 {
		t.Errorf("HTTP/1.1 200s = %v, want %d", v, n/4*2+2)
	}
}

// TestDirectAcceptShutdownUnderLoad: Shutdown while clients keep
// connecting drains and returns in time.
func TestDirectAcceptShutdownUnderLoad(t *testing.T) {
	e := start(t, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", e.plain, time.Second)
				if err != nil {
					continue
				}
				c.SetDeadline(time.Now().Add(2 * time.Second))
				io.WriteString(c, "GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
				io.ReadAll(c)
				c.Close()
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	begin := time.Now()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	close(stop)
	wg.Wait()
	if _, err := net.DialTimeout("tcp", e.plain, time.Second); err == nil {
		t.Error("still accepting after Shutdown")
	}
}

// rawPieces writes a request in pieces, 30 ms apart, and reads the
// answer to its end.
func rawPieces(t *testing.T, addr string, pieces ...string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Error(err)
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	for i, p := range pieces {
		if i > 0 {
			time.Sleep(30 * time.Millisecond)
		}
		io.WriteString(c, p)
	}
	b, _ := io.ReadAll(c)
	return string(b)
}
