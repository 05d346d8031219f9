package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
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
		"GET /x HTTP/1.1\r\nHost: site\r\n\r\n",                            // miss
		"GET /x HTTP/1.1\r\nHost: site\r\n\r\n",                            // fast-path hit
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
