package client

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/web/labca"
)

// TestHTTP3AgainstQuicGoServer: the client's HTTP/3 path (what
// `applayer http get --http3` uses) fetches from quic-go's own http3.Server
// (not ours) in process: protocol HTTP/3.0, status, header and body, a
// POST body echoed, and one QUIC connection for several requests.
func TestHTTP3AgainstQuicGoServer(t *testing.T) {
	dir := t.TempDir()
	ca, err := labca.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Proto", r.Proto)
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("hello from quic-go\n"))
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 64)
		n, _ := r.Body.Read(b)
		w.Write([]byte(strings.ToUpper(string(b[:n]))))
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http3.Server{Handler: mux, TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}})}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(pc); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			t.Errorf("quic-go serve: %v", err)
		}
	})
	defer func() { srv.Close(); pc.Close(); wg.Wait() }()

	c, err := New(Options{Proto: ProtoH3, CAFile: filepath.Join(dir, "ca.pem"), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testkit.Context(t, 20*time.Second)
	base := "https://localhost:" + strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
	for range 3 {
		r, err := c.Get(ctx, base+"/hello")
		if err != nil {
			t.Fatal(err)
		}
		if r.Response.Proto != "HTTP/3.0" || r.Response.StatusCode != 200 || string(r.Body) != "hello from quic-go\n" {
			t.Fatalf("GET: %s %d %q", r.Response.Proto, r.Response.StatusCode, r.Body)
		}
		if got := r.Response.Header.Get("X-Proto"); got != "HTTP/3.0" {
			t.Errorf("server saw %q, want HTTP/3.0", got)
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/echo", strings.NewReader("quic"))
	r, err := c.Do(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Body) != "QUIC" {
		t.Errorf("POST echo = %q", r.Body)
	}
	if c.Dials() != 1 {
		t.Errorf("QUIC connections = %d, want 1 for 4 requests", c.Dials())
	}
}
