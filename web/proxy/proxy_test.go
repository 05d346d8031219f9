package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

func start(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.AllowDestinations == nil {
		// the test origins are on loopback: allowed explicitly (an empty,
		// non-nil list keeps the default refusal)
		cfg.AllowDestinations = []string{"127.0.0.0/8"}
	}
	s, err := New(cfg, service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs after Start's shutdown.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("second shutdown: %v", err)
		}
	})
	return testkit.Start(t, s), s.Addrs()[0].String()
}

func proxyClient(t *testing.T, proxyAddr string) *http.Client {
	u, _ := url.Parse("http://" + proxyAddr)
	tr := &http.Transport{Proxy: http.ProxyURL(u), DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

func get(t *testing.T, c *http.Client, u string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.Header.Get("Cache-Status") == "" {
		t.Errorf("GET %s: %d without Cache-Status", u, res.StatusCode)
	}
	return res, string(b)
}

type origin struct {
	*httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	last http.Header
}

func newOrigin(t *testing.T, h func(w http.ResponseWriter, r *http.Request)) *origin {
	o := &origin{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.hits.Add(1)
		o.mu.Lock()
		o.last = r.Header.Clone()
		o.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *origin) lastHeader() http.Header { o.mu.Lock(); defer o.mu.Unlock(); return o.last }

func TestForwardProxyCaches(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Connection", "X-Secret-Hop")
		w.Header().Set("X-Secret-Hop", "1")
		fmt.Fprint(w, "hello")
	})
	_, addr := start(t, Config{})
	c := proxyClient(t, addr)
	res, body := get(t, c, o.URL+"/x", "X-Forwarded-For", "6.6.6.6", "Connection", "X-Client-Hop", "X-Client-Hop", "1")
	if body != "hello" || !strings.Contains(res.Header.Get("Via"), "1.1 applayer") {
		t.Fatalf("first: %q Via=%q", body, res.Header.Get("Via"))
	}
	if res.Header.Get("X-Secret-Hop") != "" {
		t.Errorf("hop-by-hop field named in Connection was forwarded")
	}
	h := o.lastHeader()
	if h.Get("X-Client-Hop") != "" || h.Get("Proxy-Connection") != "" {
		t.Errorf("hop-by-hop request fields forwarded: %v", h)
	}
	if h.Get("Via") != "1.1 applayer" {
		t.Errorf("origin saw Via %q", h.Get("Via"))
	}
	if h.Get("X-Forwarded-For") != "127.0.0.1" {
		t.Errorf("origin saw X-Forwarded-For %q, want only the real peer", h.Get("X-Forwarded-For"))
	}
	res, body = get(t, c, o.URL+"/x")
	if body != "hello" || !strings.HasPrefix(res.Header.Get("Cache-Status"), "applayer; hit") {
		t.Fatalf("second: %q Cache-Status=%q", body, res.Header.Get("Cache-Status"))
	}
	if o.hits.Load() != 1 {
		t.Fatalf("origin hits %d", o.hits.Load())
	}
}

func TestLoopRefused(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {})
	_, addr := start(t, Config{})
	res, _ := get(t, proxyClient(t, addr), o.URL+"/", "Via", "1.0 other, 1.1 applayer")
	if res.StatusCode != http.StatusLoopDetected || o.hits.Load() != 0 {
		t.Fatalf("status %d, origin hits %d", res.StatusCode, o.hits.Load())
	}
}

func TestNotAnOpenProxy(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {})
	_, addr := start(t, Config{AllowedClients: []string{"10.0.0.0/8"}})
	res, _ := get(t, proxyClient(t, addr), o.URL+"/")
	if res.StatusCode != http.StatusForbidden || o.hits.Load() != 0 {
		t.Fatalf("status %d, origin hits %d", res.StatusCode, o.hits.Load())
	}
}

func TestOriginFormToForwardProxy(t *testing.T) {
	_, addr := start(t, Config{})
	res, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d", res.StatusCode)
	}
}

func tlsOrigin(t *testing.T) (*httptest.Server, int) {
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "secret")
	}))
	t.Cleanup(ts.Close)
	_, p, _ := net.SplitHostPort(ts.Listener.Addr().String())
	port, _ := strconv.Atoi(p)
	return ts, port
}

func TestConnectTunnel(t *testing.T) {
	ts, port := tlsOrigin(t)
	_, addr := start(t, Config{ConnectPorts: []int{port}})
	u, _ := url.Parse("http://" + addr)
	tr := ts.Client().Transport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyURL(u)
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr}).Get(ts.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "secret" {
		t.Fatalf("body %q", b)
	}
}

func TestConnectPortRefused(t *testing.T) {
	_, port := tlsOrigin(t)
	_, addr := start(t, Config{}) // 443 only
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", port, port)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d", res.StatusCode)
	}
}

func TestCurlThroughProxy(t *testing.T) {
	curl := testkit.Peer(t, "curl")
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "plain")
	})
	ts, port := tlsOrigin(t)
	_, addr := start(t, Config{ConnectPorts: []int{port}})
	run := func(args ...string) string {
		ctx := testkit.Context(t, 10*time.Second)
		out, err := exec.CommandContext(ctx, curl, append([]string{"-sS", "--proxy", "http://" + addr}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	if got := run(o.URL + "/a"); got != "plain" {
		t.Fatalf("http: %q", got)
	}
	if got := run("-i", o.URL+"/a"); !strings.Contains(got, "Cache-Status: applayer; hit") {
		t.Fatalf("http second: %q", got)
	}
	if got := run("-k", ts.URL+"/"); got != "secret" {
		t.Fatalf("https: %q", got)
	}
	if o.hits.Load() != 1 {
		t.Fatalf("origin hits %d", o.hits.Load())
	}
}

func TestReverseProxyRoundRobin(t *testing.T) {
	var addrs []string
	var served [3]atomic.Int64 // requests for /p (health checks ask for /)
	for i := range 3 {
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/p" {
				served[i].Add(1)
			}
			w.Header().Set("Cache-Control", "no-store")
			fmt.Fprintf(w, "o%d %s %s", i, r.Host, r.Header.Get("X-Forwarded-For"))
		})
		addrs = append(addrs, o.Listener.Addr().String())
	}
	_, addr := start(t, Config{Sites: []Site{{Host: "www.example.com", Origins: addrs}}})
	seen := map[string]int{}
	for range 6 {
		req, _ := http.NewRequest("GET", "http://"+addr+"/p", nil)
		req.Host = "www.example.com"
		req.Header.Set("X-Forwarded-For", "6.6.6.6")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		f := strings.Fields(string(b))
		if len(f) != 3 || f[1] != "www.example.com" || f[2] != "127.0.0.1" {
			t.Fatalf("origin saw %q", b)
		}
		seen[f[0]]++
	}
	for i := range 3 {
		if seen[fmt.Sprintf("o%d", i)] != 2 {
			t.Fatalf("round robin: %v", seen)
		}
		if n := served[i].Load(); n != 2 {
			t.Fatalf("origin %d served %d requests, want 2", i, n)
		}
	}
	req, _ := http.NewRequest("GET", "http://"+addr+"/p", nil)
	req.Host = "unknown.example"
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown host: %d", res.StatusCode)
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestReverseProxyHealthAndTrustedXFF(t *testing.T) {
	var sick atomic.Bool
	sick.Store(true)
	bad := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if sick.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "bad")
	})
	good := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "good %s", r.Header.Get("X-Forwarded-For"))
	})
	s, addr := start(t, Config{
		Sites:              []Site{{Host: "*", Origins: []string{bad.Listener.Addr().String(), good.Listener.Addr().String()}, Balance: "least-loaded"}},
		TrustForwardedFrom: []string{"127.0.0.0/8"},
		HealthInterval:     config.Duration(20 * time.Millisecond),
	})
	st := s.siteFor("anything")
	deadline := time.Now().Add(5 * time.Second)
	for st.backends[0].healthy.Load() {
		if time.Now().After(deadline) {
			t.Fatal("unhealthy origin never marked down")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for range 4 {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.Header.Set("X-Forwarded-For", "10.1.1.1")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(b) != "good 10.1.1.1, 127.0.0.1" {
			t.Fatalf("got %q", b)
		}
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{Sites: []Site{{Host: "a"}}},
		{Sites: []Site{{Host: "a", Origins: []string{"nohostport"}}}},
		{Sites: []Site{{Host: "a", Origins: []string{"h:1"}, Balance: "random"}}},
		{AllowedClients: []string{"not-a-cidr"}},
		{ConnectPorts: []int{0}},
	} {
		if _, err := New(c, service.Deps{}); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}

func TestAdminStats(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, strings.Repeat("x", 1000))
	})
	s, addr := start(t, Config{Admin: "127.0.0.1:0"})
	c := proxyClient(t, addr)
	for range 4 {
		get(t, c, o.URL+"/obj")
	}
	admin := s.Addrs()[1].String()
	res, err := http.Get("http://" + admin + "/cache/stats")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{`"requests":4`, `"hits":3`, `"bytes_from_cache":3000`, `"bytes_from_origin":1000`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("stats %s lacks %s", b, want)
		}
	}
	res, err = http.Post("http://"+admin+"/cache/purge?url="+url.QueryEscape(o.URL+"/obj"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if strings.TrimSpace(string(b)) != `{"purged":1}` {
		t.Fatalf("purge: %s", b)
	}
	get(t, c, o.URL+"/obj")
	if o.hits.Load() != 2 {
		t.Fatalf("origin hits after purge %d", o.hits.Load())
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestFastPathPipelinedThenHandover(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("ETag", `"e"`)
		if r.Header.Get("If-None-Match") == `"e"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprint(w, "hello")
	})
	s, addr := start(t, Config{Sites: []Site{{Host: "*", Origins: []string{o.Listener.Addr().String()}}}})
	get(t, &http.Client{}, "http://"+addr+"/obj") // warm (general path)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := strings.ReplaceAll("GET /obj HTTP/1.1\r\nHost: ADDR\r\n\r\n"+
		"HEAD /obj HTTP/1.1\r\nHost: ADDR\r\nConnection: keep-alive\r\n\r\n"+
		"GET /obj HTTP/1.1\r\nHost: ADDR\r\nCache-Control: no-cache\r\n\r\n"+
		"POST /obj HTTP/1.1\r\nHost: ADDR\r\nContent-Length: 3\r\n\r\nabc", "ADDR", addr)
	io.WriteString(conn, req)
	br := bufio.NewReader(conn)
	for i, want := range []struct {
		method, status, body string
	}{{"GET", "applayer; hit; ttl=", "hello"}, {"HEAD", "applayer; hit; ttl=", ""}, {"GET", "applayer; fwd=request; fwd-status=304", "hello"}, {"POST", "applayer; fwd=method", "hello"}} {
		res, err := http.ReadResponse(br, &http.Request{Method: want.method})
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if !strings.HasPrefix(res.Header.Get("Cache-Status"), want.status) || string(b) != want.body ||
			res.Header.Get("Via") != "1.1 applayer" || res.Header.Get("Age") == "" && i < 3 {
			t.Errorf("response %d: %d %q %v", i, res.StatusCode, b, res.Header)
		}
		if i == 1 && res.ContentLength != 5 {
			t.Errorf("HEAD Content-Length %d", res.ContentLength)
		}
	}
	if st := s.Cache().Stats(); st.Requests != 5 || st.Hits != 2 {
		t.Errorf("stats %+v", st)
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestLargeObjectStreamedWhileStored(t *testing.T) {
	release := make(chan struct{})
	half := strings.Repeat("a", 256<<10)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Length", strconv.Itoa(2*len(half)))
		io.WriteString(w, half)
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, half)
	})
	_, addr := start(t, Config{})
	c := proxyClient(t, addr)
	res, err := c.Get(o.URL + "/big")
	if err != nil {
		t.Fatal(err)
	}
	// The first half arrives while the origin still holds the second.
	if _, err := io.ReadFull(res.Body, make([]byte, len(half))); err != nil {
		t.Fatalf("first half: %v", err)
	}
	close(release)
	rest, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if len(rest) != len(half) {
		t.Fatalf("second half %d bytes", len(rest))
	}
	res, body := get(t, c, o.URL+"/big")
	if len(body) != 2*len(half) || !strings.HasPrefix(res.Header.Get("Cache-Status"), "applayer; hit") || o.hits.Load() != 1 {
		t.Fatalf("not stored: %q, origin hits %d", res.Header.Get("Cache-Status"), o.hits.Load())
	}
}

func TestFastPathOddRequestsHandedOver(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "hello")
	})
	_, addr := start(t, Config{Sites: []Site{{Host: "*", Origins: []string{o.Listener.Addr().String()}}}})
	get(t, &http.Client{}, "http://"+addr+"/obj")
	for _, raw := range []string{
		"GET /obj HTTP/1.1\nHost: ADDR\n\n",                        // bare LF
		"GET /obj HTTP/1.1\r\nHost : ADDR\r\n\r\n",                 // space before colon
		"GET /obj HTTP/1.1\r\nHost: ADDR\r\nX-A: 1\r\n  b\r\n\r\n", // obs-fold
		"GET /obj HTTP/1.0\r\nHost: ADDR\r\n\r\n",
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(conn, strings.ReplaceAll(raw, "ADDR", addr))
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		res.Body.Close()
		if res.StatusCode != 200 && res.StatusCode != 400 {
			t.Errorf("%q: status %d", raw, res.StatusCode)
		}
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestMaxConns(t *testing.T) {
	s, addr := start(t, Config{MaxConns: 2})
	var conns []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.conns.Load() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("conns %d", s.conns.Load())
		}
		time.Sleep(time.Millisecond)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third connection: %v %v", res, err)
	}
	conns[0].Close()
	for s.conns.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("conns %d after close", s.conns.Load())
		}
		time.Sleep(time.Millisecond)
	}
}
