package server

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go/http3"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/web/labca"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// env is a running server and one client per protocol.
type env struct {
	srv    *Server
	root   string
	caDir  string
	plain  string // host:port
	tlsA   string
	reg    *prometheus.Registry
	bus    *trace.Bus
	events *events
}

type events struct {
	mu sync.Mutex
	ev []trace.Event
}

func (e *events) Event(ev trace.Event) { e.mu.Lock(); e.ev = append(e.ev, ev); e.mu.Unlock() }
func (e *events) all() []trace.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]trace.Event(nil), e.ev...)
}

// fileTime is the modification time of every file of a test root.
var fileTime = time.Date(2025, 1, 2, 3, 4, 5, 600000000, time.UTC)

// content written into every test root.
var files = map[string]string{
	"index.html":          "<html><body>home</body></html>\n",
	"hello.txt":           "hello, world\n",
	"big.css":             strings.Repeat("body { color: red; }\n", 100),
	"dir/a.txt":           "a\n",
	"listed/one.txt":      "1\n",
	"listed/two.txt":      "2\n",
	"../outside.txt":      "secret\n",
	"../vhost/index.html": "<html>vhost b</html>\n",
	// Sent with sendfile by the fast path: above sendfileMin, and above
	// cacheMaxFile (large entries; the .txt compressible, with Vary).
	"medium.bin": pattern(sendfileMin + 1000),
	"large.bin":  pattern(cacheMaxFile + 12345),
	"large.txt":  strings.Repeat("line of text for a large file\n", (cacheMaxFile+5000)/30),
}

// pattern is n bytes that differ at every offset's neighbourhood (a
// misplaced range shows).
func pattern(n int) string {
	b := make([]byte, n)
	x := uint32(1)
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return string(b)
}

func start(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	for name, body := range files {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, fileTime, fileTime); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(base, "outside.txt"), filepath.Join(root, "escape.txt")); err != nil {
		t.Fatal(err)
	}
	e := &env{root: root, caDir: filepath.Join(base, "ca"), reg: prometheus.NewRegistry(), bus: trace.NewBus(nil), events: &events{}}
	e.bus.Subscribe(e.events)
	cfg := Config{
		Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", HTTP3: true, TLS: TLSConfig{CADir: e.caDir},
		Sites: []Site{
			{Root: root, Redirects: map[string]string{"/old": "/hello.txt"}, Uploads: true, MaxBodyBytes: 64},
			{Hosts: []string{"b.example"}, Root: filepath.Join(base, "vhost")},
			{Hosts: []string{"list.example"}, Root: root, Listing: true},
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, service.Deps{Logger: testkit.Logger(t), Metrics: e.reg, Trace: e.bus})
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
	e.srv = testkit.Start(t, s)
	for _, a := range s.Addrs() {
		if a.Network() != "tcp" {
			continue
		}
		if e.plain == "" && cfg.Addr != "" {
			e.plain = a.String()
		} else {
			e.tlsA = a.String()
		}
	}
	return e
}

// proto is one way to talk to the server.
type proto struct {
	name   string
	scheme string
	rt     func(e *env) (http.RoundTripper, func())
}

var protos = []proto{
	{"HTTP/1.1", "http", func(e *env) (http.RoundTripper, func()) {
		var p http.Protocols
		p.SetHTTP1(true)
		t := &http.Transport{Protocols: &p, DisableCompression: true}
		return t, t.CloseIdleConnections
	}},
	{"h2c", "http", func(e *env) (http.RoundTripper, func()) {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		t := &http.Transport{Protocols: &p, DisableCompression: true}
		return t, t.CloseIdleConnections
	}},
	{"HTTP/1.1+TLS", "https", func(e *env) (http.RoundTripper, func()) {
		var p http.Protocols
		p.SetHTTP1(true)
		t := &http.Transport{Protocols: &p, DisableCompression: true, TLSClientConfig: &tls.Config{RootCAs: e.pool()}}
		return t, t.CloseIdleConnections
	}},
	{"HTTP/2", "https", func(e *env) (http.RoundTripper, func()) {
		var p http.Protocols
		p.SetHTTP2(true)
		t := &http.Transport{Protocols: &p, DisableCompression: true, TLSClientConfig: &tls.Config{RootCAs: e.pool()}}
		return t, t.CloseIdleConnections
	}},
	{"HTTP/3", "https", func(e *env) (http.RoundTripper, func()) {
		t := &http3.Transport{DisableCompression: true, TLSClientConfig: &tls.Config{RootCAs: e.pool()}}
		return t, func() { t.Close() }
	}},
}

func (e *env) pool() *x509.CertPool {
	ca, err := labca.LoadOrCreate(e.caDir)
	if err != nil {
		panic(err)
	}
	return ca.Pool()
}

// conn is a client bound to one protocol.
type conn struct {
	t    *testing.T
	e    *env
	p    proto
	rt   http.RoundTripper
	base string
}

// run runs f once for every protocol against one server.
func run(t *testing.T, mod func(*Config), f func(t *testing.T, c *conn)) {
	e := start(t, mod)
	for _, p := range protos {
		t.Run(p.name, func(t *testing.T) {
			rt, closeFn := p.rt(e)
			defer closeFn()
			addr := e.plain
			if p.scheme == "https" {
				addr = "localhost:" + port(e.tlsA)
			}
			f(t, &conn{t: t, e: e, p: p, rt: rt, base: p.scheme + "://" + addr})
		})
	}
}

func port(hp string) string { _, p, _ := net.SplitHostPort(hp); return p }

type resp struct {
	*http.Response
	body []byte
}

func (c *conn) do(method, path string, hdr map[string]string, body io.Reader) resp {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	r, err := c.rt.RoundTrip(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp{r, b}
}

func (c *conn) get(path string, hdr map[string]string) resp { return c.do("GET", path, hdr, nil) }

func want(t *testing.T, what string, got, exp any) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(exp) {
		t.Errorf("%s = %v, want %v", what, got, exp)
	}
}

func TestStaticFile(t *testing.T) {
	run(t, nil, func(t *testing.T, c *conn) {
		r := c.get("/hello.txt", nil)
		want(t, "status", r.StatusCode, 200)
		want(t, "body", string(r.body), files["hello.txt"])
		want(t, "Content-Type", r.Header.Get("Content-Type"), "text/plain; charset=utf-8")
		want(t, "Content-Length", r.ContentLength, len(files["hello.txt"]))
		want(t, "Accept-Ranges", r.Header.Get("Accept-Ranges"), "bytes")
		fi, _ := os.Stat(filepath.Join(c.e.root, "hello.txt"))
		// size 13 and fileTime (1735787045.6 s) in nanoseconds, in hex,
		// written out here rather than computed by the code under test
		want(t, "ETag", r.Header.Get("ETag"), `"d-1816c11f12b67800"`)
		want(t, "Last-Modified", r.Header.Get("Last-Modified"), fi.ModTime().UTC().Format(http.TimeFormat))
		if c.p.name != "HTTP/3" && !strings.Contains(r.Header.Get("Alt-Svc"), `h3=":`+port(c.e.tlsA)+`"`) {
			t.Errorf("Alt-Svc = %q, want h3 on the TLS port", r.Header.Get("Alt-Svc"))
		}
		want(t, "404", c.get("/nope.txt", nil).StatusCode, 404)
		want(t, "index", string(c.get("/", nil).body), files["index.html"])
		d := c.get("/dir", nil)
		want(t, "dir without slash", d.StatusCode, 301)
		want(t, "dir Location", d.Header.Get("Location"), "/dir/")
		want(t, "dir without index", c.get("/dir/", nil).StatusCode, 403)
	})
}

func TestHead(t *testing.T) {
	run(t, nil, func(t *testing.T, c *conn) {
		r := c.do("HEAD", "/hello.txt", nil, nil)
		want(t, "status", r.StatusCode, 200)
		want(t, "body length", len(r.body), 0)
		want(t, "Content-Length header", r.Header.Get("Content-Length"), len(files["hello.txt"]))
	})
}

func TestConditionalGet(t *testing.T) {
	run(t, nil, func(t *testing.T, c *conn) {
		first := c.get("/hello.txt", nil)
		etag, lm := first.Header.Get("ETag"), first.Header.Get("Last-Modified")
		r := c.get("/hello.txt", map[string]string{"If-None-Match": etag})
		want(t, "If-None-Match status", r.StatusCode, 304)
		want(t, "304 body", len(r.body), 0)
		want(t, "304 ETag", r.Header.Get("ETag"), etag)
		want(t, "If-Modified-Since status", c.get("/hello.txt", map[string]string{"If-Modified-Since": lm}).StatusCode, 304)
		want(t, "other ETag", c.get("/hello.txt", map[string]string{"If-None-Match": `"other"`}).StatusCode, 200)
		old := time.Unix(0, 0).UTC().Format(http.TimeFormat)
		want(t, "old IMS", c.get("/hello.txt", map[string]string{"If-Modified-Since": old}).StatusCode, 200)
	})
}

func TestRanges(t *testing.T) {
	run(t, nil, func(t *testing.T, c *conn) {
		r := c.get("/hello.txt", map[string]string{"Range": "bytes=0-4"})
		want(t, "status", r.StatusCode, 206)
		want(t, "body", string(r.body), "hello")
		want(t, "Content-Range", r.Header.Get("Content-Range"), fmt.Sprintf("bytes 0-4/%d", len(files["hello.txt"])))
		r = c.get("/hello.txt", map[string]string{"Range": "bytes=0-1,7-9"})
		want(t, "multi status", r.StatusCode, 206)
		mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		want(t, "multi type", mt, "multipart/byteranges")
		mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
		var parts []string
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			b, _ := io.ReadAll(p)
			parts = append(parts, string(b))
		}
		want(t, "parts", parts, []string{"he", "wor"})
		// MaxRanges one-byte ranges are served; one more and the Range
		// header is ignored: the whole file, 200.
		for _, n := range []int{MaxRanges, MaxRanges + 1} {
			var spec []string
			for i := range n {
				spec = append(spec, fmt.Sprintf("%d-%d", 2*i, 2*i))
			}
			r = c.get("/big.css", map[string]string{"Range": "bytes=" + strings.Join(spec, ",")})
			if n <= MaxRanges {
				want(t, fmt.Sprintf("%d ranges", n), r.StatusCode, 206)
			} else {
				want(t, fmt.Sprintf("%d ranges", n), r.StatusCode, 200)
				want(t, "whole body", string(r.body) == files["big.css"], true)
			}
		}
		r = c.get("/hello.txt", map[string]string{"Range": "bytes=1000-2000"})
		want(t, "unsatisfiable", r.StatusCode, 416)
		want(t, "416 Content-Range", r.Header.Get("Content-Range"), fmt.Sprintf("bytes */%d", len(files["hello.txt"])))
	})
}

func TestGzip(t *testing.T) {
	run(t, nil, func(t *testing.T, c *conn) {
		r := c.get("/big.css", map[string]string{"Accept-Encoding": "gzip"})
		want(t, "status", r.StatusCode, 200)
		want(t, "Content-Encoding", r.Header.Get("Content-Encoding"), "gzip")
		want(t, "Vary", r.Header.Get("Vary"), "Accept-Encoding")
		zr, err := gzip.NewReader(bytes.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := io.ReadAll(zr)
		want(t, "decompressed", string(plain) == files["big.css"], true)
		if len(r.body) >= len(files["big.css"]) {
			t.Errorf("gzip body %d bytes, not smaller than %d", len(r.body), len(files["big.css"]))
		}
		gzTag := r.Header.Get("ETag")
		want(t, "gzip revalidation", c.get("/big.css", map[string]string{"Accept-Encoding": "gzip", "If-None-Match": gzTag}).StatusCode, 304)
		id := c.get("/big.css", map[string]string{"Accept-Encoding": "identity"})
		want(t, "identity encoding", id.Header.Get("Content-Encoding"), "")
		want(t, "identity body", string(id.body) == files["big.css"], true)
		if id.Header.Get("ETag") == gzTag {
			t.Error("gzip and identity share an ETag")
		}
		want(t, "q=0", c.get("/big.css", map[string]string{"Accept-Encoding": "gzip;q=0"}).Header.Get("Content-Encoding"), "")
	})
}

func TestRedirectVhostListing(t *testing.T) {
	run(t, nil, func(t *testing.T, c *conn) {
		r := c.get("/old", nil)
		want(t, "redirect", r.StatusCode, 301)
		want(t, "Location", r.Header.Get("Location"), "/hello.txt")
		r = c.get("/", map[string]string{"Host": "b.example"})
		want(t, "vhost body", string(r.body), files["../vhost/index.html"])
		r = c.get("/", map[string]string{"Host": "B.Example:123"})
		want(t, "vhost case and port", string(r.body), files["../vhost/index.html"])
		r = c.get("/listed/", map[string]string{"Host": "list.example"})
		want(t, "listing status", r.StatusCode, 200)
		if !strings.Contains(string(r.body), `<a href="one.txt">one.txt</a>`) || !strings.Contains(string(r.body), "two.txt") {
			t.Errorf("listing = %s", r.body)
		}
	})
}

func TestUploads(t *testing.T) {
	run(t, nil, func(t *testing.T, c *conn) {
		name := "/up-" + strings.NewReplacer("/", "", "+", "", ".", "").Replace(c.p.name) + ".txt"
		r := c.do("PUT", name, nil, strings.NewReader("first"))
		want(t, "PUT new", r.StatusCode, 201)
		r = c.do("PUT", name, nil, strings.NewReader("second"))
		want(t, "PUT existing", r.StatusCode, 204)
		want(t, "GET uploaded", string(c.get(name, nil).body), "second")
		r = c.do("PUT", name, nil, strings.NewReader(strings.Repeat("x", 100)))
		want(t, "PUT too large", r.StatusCode, 413)
		want(t, "file kept", string(c.get(name, nil).body), "second")
		form := url.Values{"name": {"alice"}, "course": {"networks"}}
		r = c.do("POST", "/form", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, strings.NewReader(form.Encode()))
		want(t, "POST", r.StatusCode, 200)
		if !strings.Contains(string(r.body), "<dt>name</dt><dd>alice</dd>") {
			t.Errorf("form page = %s", r.body)
		}
		r = c.do("POST", "/form", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, strings.NewReader("a="+strings.Repeat("x", 100)))
		want(t, "POST too large", r.StatusCode, 413)
		r = c.do("DELETE", "/hello.txt", nil, nil)
		want(t, "DELETE", r.StatusCode, 405)
		want(t, "Allow", r.Header.Get("Allow"), "GET, HEAD, OPTIONS, POST, PUT")
		r = c.do("PUT", "/x.txt", map[string]string{"Host": "b.example"}, strings.NewReader("x"))
		want(t, "PUT where disabled", r.StatusCode, 405)
	})
}

func TestSymlinkEscape(t *testing.T) {
	run(t, nil, func(t *testing.T, c *conn) {
		want(t, "escaping symlink", c.get("/escape.txt", nil).StatusCode, 404)
	})
	run(t, func(cfg *Config) { cfg.Sites[0].FollowSymlinks = true }, func(t *testing.T, c *conn) {
		r := c.get("/escape.txt", nil)
		want(t, "followed symlink", string(r.body), files["../outside.txt"])
	})
}

func TestTraceAndMetrics(t *testing.T) {
	e := start(t, nil)
	r, err := http.Get("http://" + e.plain + "/hello.txt")
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(r.Body)
	r.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	all := e.events.all()
	var evs []trace.Event
	for _, ev := range all {
		if ev.Type == trace.Msg {
			evs = append(evs, ev)
		}
	}
	// The connection is traced before its request (trace.ConnOpen), the
	// response with the headers the lessons need (Last-Modified).
	if len(evs) == 0 || all[0].Type != trace.ConnOpen || all[0].From != evs[0].From {
		t.Errorf("first event %+v, want the connection's opening", all)
	}
	if len(evs) != 2 || !strings.HasPrefix(evs[0].Summary, "GET /hello.txt HTTP/1.1") || !strings.HasPrefix(evs[1].Summary, "HTTP/1.1 200 OK Last-Modified: ") || evs[1].Bytes != len(files["hello.txt"]) || evs[0].Proto != "http/1.1" {
		t.Errorf("trace events = %+v", evs)
	}
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "applayer_http_server_requests_total" {
			for _, m := range mf.GetMetric() {
				if m.GetCounter().GetValue() == 1 {
					found = true
				}
			}
		}
	}
	if !found {
		t.Error("applayer_http_server_requests_total not counted")
	}
}

func TestPanicIs500(t *testing.T) {
	s, err := New(Config{Addr: "127.0.0.1:0", Sites: []Site{{Root: t.TempDir()}}}, service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	h := s.observe(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	for _, p := range protos[:2] {
		_ = p
	}
	rec := newRecorder()
	h.ServeHTTP(rec, mustReq("GET", "/"))
	want(t, "status", rec.code, 500)
}

type fakeRW struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func newRecorder() *fakeRW                    { return &fakeRW{h: http.Header{}} }
func (f *fakeRW) Header() http.Header         { return f.h }
func (f *fakeRW) Write(b []byte) (int, error) { return f.body.Write(b) }
func (f *fakeRW) WriteHeader(code int)        { f.code = code }
func mustReq(m, p string) *http.Request {
	r, _ := http.NewRequest(m, "http://x"+p, nil)
	r.RequestURI = p
	return r
}

// raw sends bytes on a fresh TCP connection, as nc would, and returns
// everything the server answers until it closes or a short timeout.
func raw(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	io.WriteString(c, req)
	b, _ := io.ReadAll(c)
	return string(b)
}

func TestRawHTTP1(t *testing.T) {
	e := start(t, func(c *Config) { c.MaxHeaderBytes = 1024 })
	cases := []struct {
		name, req, wantPrefix string
	}{
		{"nc GET", "GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 200 OK\r\n"},
		{"HTTP/1.0", "GET /hello.txt HTTP/1.0\r\n\r\n", "HTTP/1.0 200 OK\r\n"},
		{"unsupported version", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", "HTTP/1.1 505 HTTP Version Not Supported"},
		{"HTTP/3.0 on TCP", "GET / HTTP/3.0\r\nHost: x\r\n\r\n", "HTTP/1.1 505 "},
		{"malformed request line", "GET /x HTTP/1.1 extra\r\nHost: x\r\n\r\n", "HTTP/1.1 400 Bad Request"},
		{"unknown method", "BREW /pot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 405 Method Not Allowed"},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"},
		{"traversal", "GET /../outside.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 400 Bad Request"},
		{"encoded traversal", "GET /%2e%2e/outside.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 400 Bad Request"},
		{"header too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 8192) + "\r\n\r\n", "HTTP/1.1 431 Request Header Fields Too Large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := raw(t, e.plain, tc.req)
			if !strings.HasPrefix(got, tc.wantPrefix) {
				t.Errorf("answer = %q, want prefix %q", got, tc.wantPrefix)
			}
			if strings.Contains(got, "secret") {
				t.Error("file outside the root served")
			}
		})
	}
}

func TestPipelining(t *testing.T) {
	e := start(t, nil)
	paths := []string{"/hello.txt", "/dir/a.txt", "/index.html", "/nope", "/hello.txt"}
	var req strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", p)
	}
	c, err := net.Dial("tcp", e.plain)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, req.String())
	br := bufio.NewReader(c)
	wantBodies := []string{files["hello.txt"], files["dir/a.txt"], files["index.html"], "404 page not found\n", files["hello.txt"]}
	for i := range paths {
		r, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(r.Body)
		want(t, "pipelined body "+paths[i], string(b), wantBodies[i])
		want(t, "keep-alive", r.Close, false)
	}
}

func TestNonPersistent(t *testing.T) {
	e := start(t, func(c *Config) { c.NonPersistent = true })
	got := raw(t, e.plain, "GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
	if !strings.Contains(got, "Connection: close\r\n") || strings.Count(got, "HTTP/1.1 200") != 1 {
		t.Errorf("non-persistent answer = %q, want one response with Connection: close", got)
	}
}

func TestIdleTimeout(t *testing.T) {
	e := start(t, func(c *Config) { c.IdleTimeout = 200 * 1e6; c.ReadHeaderTimeout = 300 * 1e6 })
	c, err := net.Dial("tcp", e.plain)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	io.WriteString(c, "GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
	b, _ := io.ReadAll(c) // ends when the server closes the idle connection
	if !strings.HasPrefix(string(b), "HTTP/1.1 200") || time.Since(start) > 4*time.Second {
		t.Errorf("got %q after %s", b, time.Since(start))
	}
	// Slowloris: a header that never ends is cut off.
	c2, err := net.Dial("tcp", e.plain)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c2, "GET / HTTP/1.1\r\nHost: x\r\n")
	if _, err := io.ReadAll(c2); err != nil {
		t.Errorf("slow header: connection not closed by the server: %v", err)
	}
}

func TestAccessLogFormat(t *testing.T) {
	r := mustReq("GET", "/a?b=c")
	r.RemoteAddr, r.Proto = "192.0.2.1:5555", "HTTP/1.1"
	r.Header.Set("Referer", "http://x/")
	r.Header.Set("User-Agent", `curl "8"`)
	ts := time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC)
	want(t, "common", FormatAccess(r, 200, 42, ts, false), `192.0.2.1 - - [21/Nov/2026:06:00:00 +0000] "GET /a?b=c HTTP/1.1" 200 42`)
	want(t, "combined", FormatAccess(r, 304, 0, ts, true), `192.0.2.1 - - [21/Nov/2026:06:00:00 +0000] "GET /a?b=c HTTP/1.1" 304 - "http://x/" "curl \"8\""`)
}

func TestAccessLogFile(t *testing.T) {
	logf := filepath.Join(t.TempDir(), "access.log")
	e := start(t, func(c *Config) { c.AccessLog, c.AccessLogFile = "combined", logf })
	raw(t, e.plain, "GET /hello.txt HTTP/1.1\r\nHost: x\r\nUser-Agent: nc\r\nConnection: close\r\n\r\n")
	e.srv.Shutdown(context.Background())
	b, _ := os.ReadFile(logf)
	if !strings.Contains(string(b), `"GET /hello.txt HTTP/1.1" 200 13 "-" "nc"`) {
		t.Errorf("access log = %q", b)
	}
}

func TestCleanPath(t *testing.T) {
	cases := []struct {
		in, rel string
		ok      bool
	}{
		{"/", ".", true},
		{"/a/b.txt", "a/b.txt", true},
		{"//a/./b/", "a/b", true},
		{"/a/../b", "", false},
		{"/..", "", false},
		{"a", "", false},
		{"/a\\..\\b", "", false},
		{"/a\x00", "", false},
		{"/...", "...", true},
	}
	for _, tc := range cases {
		rel, ok := CleanPath(tc.in)
		if rel != tc.rel || ok != tc.ok {
			t.Errorf("CleanPath(%q) = %q, %v; want %q, %v", tc.in, rel, ok, tc.rel, tc.ok)
		}
	}
}

func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/", "/a/b", "/../x", "/a/./../b", "//x", "/a\\b", "/.%2e/", "/\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		rel, ok := CleanPath(p)
		if !ok {
			return
		}
		if rel != "." && !filepath.IsLocal(rel) {
			t.Fatalf("CleanPath(%q) = %q escapes the root", p, rel)
		}
		for _, seg := range strings.Split(rel, "/") {
			if seg == ".." || seg == "" {
				t.Fatalf("CleanPath(%q) = %q has segment %q", p, rel, seg)
			}
		}
	})
}

func TestAcceptsGzip(t *testing.T) {
	for in, exp := range map[string]bool{"gzip": true, "": false, "br, gzip;q=0.5": true, "gzip;q=0": false, "*": true, "*;q=0": false, "identity": false, "GZIP": true, "deflate, *;q=0.1": true} {
		want(t, "AcceptsGzip("+in+")", AcceptsGzip(in), exp)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := map[string]Config{
		"no sites":        {Addr: ":0"},
		"no root":         {Sites: []Site{{}}},
		"http3 no tls":    {HTTP3: true, Sites: []Site{{Root: "."}}},
		"tls no cert":     {TLSAddr: ":0", Sites: []Site{{Root: "."}}},
		"bad log":         {AccessLog: "json", Sites: []Site{{Root: "."}}},
		"second no hosts": {Sites: []Site{{Root: "."}, {Root: "."}}},
	}
	for name, c := range cases {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestManyIdleConnsParked: beyond parkIdleAbove connections, idle
// keep-alive connections wait in the transport's poller (Linux) and are
// served again when their next request comes, and closed at the idle
// timeout.
func TestManyIdleConnsParked(t *testing.T) {
	e := start(t, func(c *Config) { c.IdleTimeout = 1500 * 1e6 })
	n := parkIdleAbove + 20
	conns := make([]net.Conn, n)
	req := "GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"
	readResp := func(c net.Conn) string {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 0, 512)
		for !strings.Contains(string(b), "\r\n\r\n") || !strings.HasSuffix(string(b), files["hello.txt"]) {
			var buf [512]byte
			k, err := c.Read(buf[:])
			b = append(b, buf[:k]...)
			if err != nil {
				return string(b)
			}
		}
		return string(b)
	}
	for round := range 2 {
		for i := range conns {
			if round == 0 {
				c, err := net.Dial("tcp", e.plain)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				conns[i] = c
			}
			io.WriteString(conns[i], req)
		}
		for i, c := range conns {
			if got := readResp(c); !strings.HasPrefix(got, "HTTP/1.1 200") {
				t.Fatalf("round %d conn %d: %q", round, i, got)
			}
		}
		time.Sleep(100 * time.Millisecond) // idle: parked
	}
	// The idle timeout closes them, parked or not.
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if k, err := c.Read(make([]byte, 1)); k != 0 || err == nil {
			t.Fatalf("conn %d not closed at the idle timeout: %d, %v", i, k, err)
		}
	}
}
