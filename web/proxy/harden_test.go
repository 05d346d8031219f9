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
	"github.com/applayer/applayer/web/cache"
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

// exchange sends raw on a new connection, half-closes, and returns the
// status codes of every response read until the proxy closes.
func exchange(t *testing.T, addr, raw string) []int {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, raw)
	conn.(*net.TCPConn).CloseWrite()
	br := bufio.NewReader(conn)
	var codes []int
	for {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			return codes
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		codes = append(codes, res.StatusCode)
	}
}

// TestFastPathFramingAsNetHTTP: the same bytes get the same responses
// whether the URL is cached (the fast path parses the first request) or
// not (net/http parses everything): a bare LF, CR or NUL inside the header
// must not make the fast path see other fields or another header end than
// net/http does.
func TestFastPathFramingAsNetHTTP(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprint(w, "hello")
	})
	sites := []Site{{Host: "*", Origins: []string{o.Listener.Addr().String()}}}
	_, warm := start(t, Config{Sites: sites})
	_, cold := start(t, Config{Sites: sites, Cache: cache.Config{MaxObjectBytes: 1}}) // stores nothing
	rawGet(t, warm, "GET /obj HTTP/1.1\r\nHost: site\r\n\r\n")
	for _, raw := range []string{
		// a bare LF ends a line for net/http: Content-Length is a field
		"GET /obj HTTP/1.1\r\nHost: site\r\nX-A: 1\nContent-Length: 5\r\n\r\nGET /obj HTTP/1.1\r\nHost: site\r\n\r\n",
		"GET /obj HTTP/1.1\r\nHost: site\r\nX-A: 1\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET /obj HTTP/1.1\nHost: site\r\n\r\n",
		"GET /obj HTTP/1.1\r\nHost: site\r\nX-A: 1\n\r\nGET /obj HTTP/1.1\r\nHost: site\r\n\r\n",
		// bare CR and NUL in a value: net/http refuses
		"GET /obj HTTP/1.1\r\nHost: site\r\nX-A: a\rb\r\n\r\n",
		"GET /obj HTTP/1.1\r\nHost: site\r\nX-A: a\x00b\r\n\r\n",
		"GET /obj HTTP/1.1\r\nHost: site\r\nX-A: a\x01b\r\n\r\n",
		// field names and Host values net/http refuses
		"GET /obj HTTP/1.1\r\nHost: site\r\nX(A): 1\r\n\r\n",
		"GET /obj HTTP/1.1\r\nHost: si<te\r\n\r\n",
		"GET /obj HTTP/1.1\r\n\r\n",
		// pipelined, well framed: two answers
		"GET /obj HTTP/1.1\r\nHost: site\r\n\r\nHEAD /obj HTTP/1.1\r\nHost: site\r\n\r\n",
	} {
		w, c := exchange(t, warm, raw), exchange(t, cold, raw)
		if fmt.Sprint(w) != fmt.Sprint(c) {
			t.Errorf("%q: cached URL got %v, uncached %v", raw, w, c)
		}
	}
}

// TestForwardToOwnHostRefused: forward requests (and CONNECT) to
// loopback, link-local, unspecified or the proxy's own addresses are
// refused, whether named by address or by a name resolving to one, unless
// allow_destinations lists them; a widened --allow must not let remote
// clients reach the proxy host's own services (e.g. the purge endpoint).
func TestForwardToOwnHostRefused(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "secret")
	})
	_, port, _ := net.SplitHostPort(o.Listener.Addr().String())
	t.Run("refused by default", func(t *testing.T) {
		s, addr := start(t, Config{AllowDestinations: []string{}, Admin: "127.0.0.1:0"})
		admin := s.Addrs()[1].String()
		for _, u := range []string{
			"http://127.0.0.1:" + port + "/",
			"http://127.0.0.2:" + port + "/",
			"http://localhost:" + port + "/",
			"http://[::ffff:127.0.0.1]:" + port + "/",
			"http://0.0.0.0:" + port + "/",
			"http://169.254.169.254/latest/meta-data/",
			"http://[fe80::1]/",
			"http://" + admin + "/cache/purge?prefix=http://",
			"http://" + addr + "/",
		} {
			res, body := rawGet(t, addr, "GET "+u+" HTTP/1.1\r\nHost: x\r\n\r\n")
			if res.StatusCode < 400 || strings.Contains(body, "secret") {
				t.Errorf("GET %s: %d %q, want refused", u, res.StatusCode, body)
			}
		}
		res, _ := rawGet(t, addr, "POST http://"+admin+"/cache/purge?prefix=http:// HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("POST to the admin purge endpoint: %d, want 403", res.StatusCode)
		}
		if n := o.hits.Load(); n != 0 {
			t.Errorf("the origin on loopback was reached %d times", n)
		}
	})
	t.Run("CONNECT refused by default", func(t *testing.T) {
		p := 0
		fmt.Sscan(port, &p)
		_, addr := start(t, Config{AllowDestinations: []string{}, ConnectPorts: []int{p}})
		for _, target := range []string{"127.0.0.1:" + port, "localhost:" + port} {
			res, _ := rawGet(t, addr, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n")
			if res.StatusCode != http.StatusForbidden {
				t.Errorf("CONNECT %s: %d, want 403", target, res.StatusCode)
			}
		}
	})
	t.Run("allowed explicitly", func(t *testing.T) {
		_, addr := start(t, Config{AllowDestinations: []string{"127.0.0.0/8"}})
		res, body := rawGet(t, addr, "GET http://127.0.0.1:"+port+"/ HTTP/1.1\r\nHost: x\r\n\r\n")
		if res.StatusCode != 200 || body != "secret" {
			t.Fatalf("allowed destination: %d %q", res.StatusCode, body)
		}
	})
}

// TestHeaderAndIdleDeadlines: a new connection that sends nothing is
// closed when the header timeout runs out (counted from its start); a
// kept-alive one gets the idle timeout before its next request, whose
// header then must arrive within the header timeout of its first byte,
// however slowly the bytes come.
func TestHeaderAndIdleDeadlines(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		fmt.Fprint(w, "hello")
	})
	const hdrTimeout, idle = time.Second, 2 * time.Second
	_, addr := start(t, Config{Sites: []Site{{Host: "*", Origins: []string{o.Listener.Addr().String()}}},
		ReadHeaderTimeout: config.Duration(hdrTimeout), IdleTimeout: config.Duration(idle)})
	rawGet(t, addr, "GET /obj HTTP/1.1\r\nHost: site\r\n\r\n") // stored: the next ones are fast-path hits
	// endsAfter reads until the proxy closes: how long that took from
	// begin, and what it sent.
	endsAfter := func(br *bufio.Reader, c net.Conn, begin time.Time) (time.Duration, string) {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var got []byte
		for {
			b, err := br.ReadByte()
			if err != nil {
				return time.Since(begin), string(got)
			}
			got = append(got, b)
		}
	}
	t.Run("silent new connection", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		d, got := endsAfter(bufio.NewReader(c), c, time.Now())
		if d < hdrTimeout-100*time.Millisecond || d > hdrTimeout+time.Second || got != "" {
			t.Fatalf("closed after %v (sent %q), want the header timeout %v", d.Round(10*time.Millisecond), got, hdrTimeout)
		}
	})
	t.Run("kept alive, then a slow request", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /obj HTTP/1.1\r\nHost: site\r\n\r\n")
		br := bufio.NewReader(c)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		// idle for longer than the header timeout, shorter than idle
		time.Sleep(hdrTimeout + hdrTimeout/2)
		begin := time.Now()
		type end struct {
			d   time.Duration
			got string
		}
		done := make(chan end, 1)
		go func() { d, got := endsAfter(br, c, begin); done <- end{d, got} }()
		req := "GET /obj HTTP/1.1\r\nHost: site\r\nX-Slow: " + strings.Repeat("a", 100)
		for i := 0; ; i++ {
			select {
			case e := <-done:
				// net/http answers a request line its deadline cut short
				// with 400 (the fast path hands it over): either way the
				// connection ends at the header timeout, unanswered
				if e.got != "" && !strings.HasPrefix(e.got, "HTTP/1.1 400 ") {
					t.Fatalf("the proxy answered a request whose header never ended: %q", e.got)
				}
				if e.d < hdrTimeout-100*time.Millisecond || e.d > hdrTimeout+time.Second {
					t.Fatalf("the slow request's connection ended after %v, want the header timeout %v from its first byte", e.d.Round(10*time.Millisecond), hdrTimeout)
				}
				return
			case <-time.After(100 * time.Millisecond):
				c.SetWriteDeadline(time.Now().Add(time.Second))
				c.Write([]byte{req[i%len(req)]})
			}
		}
	})
}
