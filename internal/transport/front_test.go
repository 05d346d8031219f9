package transport_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/transport"
)

// TestFrontLimitsALibraryServer: net/http served through a Front obeys the
// transport's per-client cap, a connection's slot is freed when net/http
// closes it, and Shutdown ends the library's Serve.
func TestFrontLimitsALibraryServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := transport.NewFront(transport.StreamConfig{
		MaxConnsPerIP: 1,
		OnReject: func(c net.Conn, _ transport.RejectReason) {
			io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		},
	}, ln.Addr())
	if got, want := f.Listener().Addr().String(), ln.Addr().String(); got != want {
		t.Fatalf("Listener().Addr() = %s, want %s", got, want)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(f.Listener()) }()
	if err := f.Start(ln); err != nil {
		t.Fatal(err)
	}

	get := func(c net.Conn, close bool) string {
		t.Helper()
		req := "GET / HTTP/1.1\r\nHost: x\r\n"
		if close {
			req += "Connection: close\r\n"
		}
		if _, err := io.WriteString(c, req+"\r\n"); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 100))
		return resp.Status + " " + string(b)
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	a := dial()
	if got := get(a, false); got != "200 OK hello" {
		t.Fatalf("first connection: %q", got)
	}
	// a is still open (keep-alive): a second connection is over the cap.
	if got := get(dial(), false); !strings.HasPrefix(got, "503") {
		t.Fatalf("second connection while the first is open: %q, want 503", got)
	}
	// net/http closes a after its Connection: close response; the slot is
	// released when it does, so a new connection is served again.
	if got := get(a, true); got != "200 OK hello" {
		t.Fatalf("first connection, second request: %q", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := dial()
		got := get(c, true)
		if got == "200 OK hello" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the first connection closed: %q, want 200 (slot not released)", got)
		}
		time.Sleep(20 * time.Millisecond)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("http.Server.Serve returned %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("http.Server.Serve did not return after Front.Shutdown")
	}
	hs.Close()
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Fatal("the listener still accepts after Shutdown")
	}
}
