package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/config"
)

// rawGet sends one raw request on a new connection and reads the response.
func rawGet(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, raw)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

// TestContentTypeUntouched: a response without Content-Type passes through
// without one, on a miss as on a hit (fast path and general path); the
// proxy never sniffs (nginx and Varnish pass the field through as is).
func TestContentTypeUntouched(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = nil // no Content-Type at all
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "<html><script>alert(1)</script></html>")
	})
	_, addr := start(t, Config{Sites: []Site{{Host: "*", Origins: []string{o.Listener.Addr().String()}}}})
	for i, raw := range []string{
		"GET /x HTTP/1.1\r\nHost: site\r\n\r\n",                             // miss
		"GET /x HTTP/1.1\r\nHost: site\r\n\r\n",                             // fast-path hit
		"GET /x HTTP/1.1\r\nHost: site\r\nCache-Control: max-stale\r\n\r\n", // general-path hit
		"GET /x HTTP/1.1\r\nHost: site\r\nRange: bytes=0-5\r\n\r\n",         // general-path partial hit
	} {
		res, body := rawGet(t, addr, raw)
		if ct, ok := res.Header["Content-Type"]; ok {
			t.Errorf("request %d: Content-Type %q invented (Cache-Status %q, body %q)", i, ct, res.Header.Get("Cache-Status"), body)
		}
		if cs := res.Header.Get("Cache-Status"); (i == 0) == strings.Contains(cs, "hit") {
			t.Errorf("request %d: Cache-Status %q", i, cs)
		}
	}
}

// TestUntrustedForwardedHeadersStripped: X-Forwarded-Host,
// X-Forwarded-Proto and X-Original-URL from a peer that is not a trusted
// proxy never reach the origin (they would poison the shared response, as
// they are not part of the cache key); from a trusted proxy they pass.
func TestUntrustedForwardedHeadersStripped(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "host=%s proto=%s url=%s", r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Original-Url"))
	})
	fields := "X-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\nX-Original-URL: /admin\r\nX-Rewrite-URL: /admin\r\nX-Forwarded-Server: evil\r\nX-Forwarded-Port: 1\r\nX-Forwarded-Prefix: /evil\r\nX-HTTP-Method-Override: DELETE\r\n"
	t.Run("untrusted", func(t *testing.T) {
		_, addr := start(t, Config{Sites: []Site{{Host: "*", Origins: []string{o.Listener.Addr().String()}}}})
		_, body := rawGet(t, addr, "GET /u HTTP/1.1\r\nHost: site\r\n"+fields+"\r\n")
		if body != "host= proto= url=" {
			t.Fatalf("the origin saw the client's forwarding fields: %q", body)
		}
		h := o.lastHeader()
		for _, f := range []string{"X-Forwarded-Host", "X-Forwarded-Proto", "X-Original-Url", "X-Rewrite-Url", "X-Forwarded-Server", "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Http-Method-Override"} {
			if v, ok := h[f]; ok {
				t.Errorf("%s %q reached the origin", f, v)
			}
		}
		// a later client gets the clean stored response
		_, body = rawGet(t, addr, "GET /u HTTP/1.1\r\nHost: site\r\n\r\n")
		if body != "host= proto= url=" {
			t.Fatalf("stored response %q", body)
		}
	})
	t.Run("trusted", func(t *testing.T) {
		_, addr := start(t, Config{TrustForwardedFrom: []string{"127.0.0.0/8"}, Sites: []Site{{Host: "*", Origins: []string{o.Listener.Addr().String()}}}})
		_, body := rawGet(t, addr, "GET /t HTTP/1.1\r\nHost: site\r\n"+fields+"\r\n")
		if body != "host=evil.example proto=https url=/admin" {
			t.Fatalf("a trusted proxy's forwarding fields were dropped: %q", body)
		}
	})
}

// TestSlowloris: clients that send a request header one byte at a time
// are closed when the header timeout, counted from the connection's start
// (or, on a kept-alive connection, from the request's first byte), runs
// out, however often a byte arrives; a client past its per-client
// connection limit is refused; and a legitimate client from another
// address gets its answer during the attack.
func TestSlowloris(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprint(w, "hello")
	})
	const timeout = 2 * time.Second
	s, addr := start(t, Config{Sites: []Site{{Host: "*", Origins: []string{o.Listener.Addr().String()}}},
		ReadHeaderTimeout: config.Duration(timeout), MaxConns: 60, MaxConnsPerClient: 40})
	// warm the cache: later requests can be fast-path hits
	if res, body := rawGet(t, addr, "GET /obj HTTP/1.1\r\nHost: site\r\n\r\n"); body != "hello" {
		t.Fatalf("warm-up: %d %q", res.StatusCode, body)
	}
	for deadline := time.Now().Add(5 * time.Second); s.conns.Load() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the warm-up connection is still counted")
		}
	}
	const attackers = 70
	type outcome struct {
		closedAfter time.Duration
		refused     bool
		err         error
	}
	results := make(chan outcome, attackers)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range attackers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				results <- outcome{err: err}
				return
			}
			defer c.Close()
			begin := time.Now()
			req := "GET /obj HTTP/1.1\r\nHost: site\r\nX-Slow: " + strings.Repeat("a", 200)
			closed := make(chan outcome, 1)
			go func() {
				b := make([]byte, 512)
				n, _ := io.ReadAtLeast(c, b, 1)
				closed <- outcome{closedAfter: time.Since(begin), refused: strings.Contains(string(b[:n]), " 503 ")}
			}()
			for i := 0; ; i++ {
				select {
				case r := <-closed:
					results <- r
					return
				case <-stop:
					results <- outcome{closedAfter: time.Since(begin)}
					return
				case <-time.After(200 * time.Millisecond):
				}
				c.SetWriteDeadline(time.Now().Add(time.Second))
				c.Write([]byte{req[i%len(req)]})
			}
		}()
	}
	// a legitimate client from another loopback address, during the attack
	time.Sleep(timeout / 2)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: time.Second}
	lc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	lc.SetDeadline(time.Now().Add(timeout))
	io.WriteString(lc, "GET /obj HTTP/1.1\r\nHost: site\r\n\r\nGET /obj HTTP/1.1\r\nHost: site\r\nCache-Control: max-stale\r\n\r\n")
	br := bufio.NewReader(lc)
	for i := range 2 {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("legitimate client, response %d during the attack: %v", i, err)
		}
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 || string(b) != "hello" {
			t.Fatalf("legitimate client, response %d during the attack: %d %q", i, res.StatusCode, b)
		}
	}
	lc.Close()
	// every attacker is closed within the header timeout (plus slack),
	// or refused at once past the per-client limit
	stopper := time.AfterFunc(3*timeout, func() { close(stop) })
	defer stopper.Stop()
	refused := 0
	for range attackers {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.refused {
			refused++
			continue
		}
		if r.closedAfter > timeout+timeout/2 {
			t.Errorf("a slow client was held for %v (header timeout %v)", r.closedAfter.Round(10*time.Millisecond), timeout)
		}
	}
	wg.Wait()
	if refused != attackers-40 {
		t.Errorf("%d attackers refused, want %d past the per-client limit", refused, attackers-40)
	}
}
