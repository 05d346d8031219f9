package server

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// wireResp is a response as read off the wire, Date left out.
type wireResp struct {
	status int
	header http.Header
	body   string
}

func (w wireResp) String() string {
	keys := make([]string, 0, len(w.header))
	for k := range w.header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%d\n", w.status)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %q\n", k, w.header[k])
	}
	fmt.Fprintf(&b, "body %q", w.body)
	return b.String()
}

// exchangeOn writes req on c and reads up to max responses (fewer when
// the connection ends); head says the requests are HEAD.
func exchangeOn(t *testing.T, c net.Conn, req string, head bool, max int) []wireResp {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var out []wireResp
	for {
		var r *http.Request
		if head {
			r = &http.Request{Method: http.MethodHead}
		}
		res, err := http.ReadResponse(br, r)
		if err != nil {
			return out
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		res.Header.Del("Date")
		out = append(out, wireResp{res.StatusCode, res.Header, string(b)})
		if res.Close || len(out) == max {
			return out
		}
	}
}

// TestFastPathAsNetHTTP: for every request form the fast path answers,
// its response (status, every header field but Date, body) is the one
// net/http's path gives for the same bytes (the TLS port, HTTP/1.1 by
// ALPN, runs the same handler without the fast path), and the fast path
// did answer it (the net/http handler's request count did not move).
func TestFastPathAsNetHTTP(t *testing.T) {
	e := start(t, nil)
	get := func(path, extra string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n" + extra + "\r\n"
	}
	etag := ETag(statOf(t, filepath.Join(e.root, "big.css")))
	lastMod := fileTime.UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		name, req string
		head      bool
	}{
		{"plain", get("/hello.txt", ""), false},
		{"index", get("/", ""), false},
		{"subdir", get("/dir/a.txt", ""), false},
		{"query", get("/hello.txt?x=1", ""), false},
		{"head", "HEAD /big.css HTTP/1.1\r\nHost: localhost\r\n\r\n", true},
		{"gzip", get("/big.css", "Accept-Encoding: gzip, br\r\n"), false},
		{"gzip q0", get("/big.css", "Accept-Encoding: gzip;q=0\r\n"), false},
		{"identity", get("/big.css", "Accept-Encoding: identity\r\n"), false},
		{"inm match", get("/big.css", "If-None-Match: "+etag+"\r\n"), false},
		{"inm weak", get("/big.css", "If-None-Match: W/"+etag+", \"x\"\r\n"), false},
		{"inm star", get("/big.css", "If-None-Match: *\r\n"), false},
		{"inm other", get("/big.css", "If-None-Match: \"nope\"\r\n"), false},
		{"ims same", get("/hello.txt", "If-Modified-Since: "+lastMod+"\r\n"), false},
		{"ims later", get("/hello.txt", "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n"), false},
		{"ims earlier", get("/hello.txt", "If-Modified-Since: Thu, 01 Jan 2015 00:00:00 GMT\r\n"), false},
		{"range", get("/big.css", "Range: bytes=2-9\r\n"), false},
		{"range open", get("/big.css", "Range: bytes=100-\r\n"), false},
		{"range suffix", get("/big.css", "Range: bytes=-7\r\n"), false},
		{"range past end", get("/hello.txt", "Range: bytes=3-1000\r\n"), false},
		{"range gzip", get("/big.css", "Range: bytes=0-4\r\nAccept-Encoding: gzip\r\n"), false},
		{"close", get("/hello.txt", "Connection: close\r\n"), false},
		{"vhost", "GET / HTTP/1.1\r\nHost: B.Example.:80\r\n\r\n", false},
		{"sendfile", get("/medium.bin", ""), false},
		{"sendfile range", get("/medium.bin", "Range: bytes=1000-17000\r\n"), false},
		{"sendfile small range", get("/medium.bin", "Range: bytes=-10\r\n"), false},
		{"large", get("/large.bin", ""), false},
		{"large head", "HEAD /large.bin HTTP/1.1\r\nHost: localhost\r\n\r\n", true},
		{"large range", get("/large.bin", "Range: bytes=100000-\r\n"), false},
		{"large range suffix", get("/large.bin", "Range: bytes=-300\r\n"), false},
		{"large inm", get("/large.bin", "If-None-Match: "+ETag(statOf(t, filepath.Join(e.root, "large.bin")))+"\r\n"), false},
		{"large ims", get("/large.bin", "If-Modified-Since: "+lastMod+"\r\n"), false},
		{"large text", get("/large.txt", ""), false},
		{"large text close", get("/large.txt", "Connection: close\r\n"), false},
		{"unknown host", "GET /hello.txt HTTP/1.1\r\nHost: other.example\r\n\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(e.srv.m.requests.WithLabelValues("HTTP/1.1", map[bool]string{false: "GET", true: "HEAD"}[tc.head], "200")) +
				testutil.ToFloat64(e.srv.m.requests.WithLabelValues("HTTP/1.1", "GET", "206")) +
				testutil.ToFloat64(e.srv.m.requests.WithLabelValues("HTTP/1.1", "GET", "304"))
			fc, err := net.Dial("tcp", e.plain)
			if err != nil {
				t.Fatal(err)
			}
			fast := exchangeOn(t, fc, tc.req, tc.head, 1)
			after := testutil.ToFloat64(e.srv.m.requests.WithLabelValues("HTTP/1.1", map[bool]string{false: "GET", true: "HEAD"}[tc.head], "200")) +
				testutil.ToFloat64(e.srv.m.requests.WithLabelValues("HTTP/1.1", "GET", "206")) +
				testutil.ToFloat64(e.srv.m.requests.WithLabelValues("HTTP/1.1", "GET", "304"))
			if after != before+1 {
				t.Errorf("request counted %v times, want 1", after-before)
			}
			tc2, err := tls.Dial("tcp", e.tlsA, &tls.Config{RootCAs: e.pool(), ServerName: "localhost", NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			slow := exchangeOn(t, tc2, tc.req, tc.head, 1)
			for _, r := range slow {
				r.header.Del("Alt-Svc") // the TLS port's; the cleartext one's differs in port only
			}
			for _, r := range fast {
				r.header.Del("Alt-Svc")
			}
			if len(fast) != 1 || len(slow) != 1 || fast[0].String() != slow[0].String() {
				t.Fatalf("fast path:\n%v\nnet/http:\n%v", fast, slow)
			}
		})
	}
}

func statOf(t *testing.T, p string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// TestFastPathPipelinedBatch: pipelined requests are answered in order
// in one write when they all arrive together, a request the fast path
// does not take in the middle hands the rest to net/http, which answers
// them in order too, and Connection: close ends the batch.
func TestFastPathPipelinedBatch(t *testing.T) {
	e := start(t, nil)
	req := func(m, p string) string { return m + " " + p + " HTTP/1.1\r\nHost: localhost\r\n\r\n" }
	stream := req("GET", "/hello.txt") + req("GET", "/dir/a.txt") + req("OPTIONS", "/") + req("GET", "/hello.txt") +
		"GET /dir/a.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" + req("GET", "/hello.txt")
	c, err := net.Dial("tcp", e.plain)
	if err != nil {
		t.Fatal(err)
	}
	got := exchangeOn(t, c, stream, false, 10)
	var codes []string
	for _, r := range got {
		codes = append(codes, fmt.Sprintf("%d %q", r.status, r.body))
	}
	want := []string{`200 "hello, world\n"`, `200 "a\n"`, `204 ""`, `200 "hello, world\n"`, `200 "a\n"`}
	if !slices.Equal(codes, want) {
		t.Fatalf("got %q, want %q", codes, want)
	}
	// Two requests in one segment: both answers arrive in one read.
	c, err = net.Dial("tcp", e.plain)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, req("GET", "/hello.txt")+req("HEAD", "/hello.txt"))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil || strings.Count(string(buf[:n]), "HTTP/1.1 200 OK") != 2 {
		t.Fatalf("first read %q (%v), want both answers", buf[:n], err)
	}
}

// TestFastPathObserved: fast-path requests reach the access log, the
// metrics and the trace.
func TestFastPathObserved(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "access.log")
	e := start(t, func(c *Config) { c.AccessLog = "combined"; c.AccessLogFile = logFile })
	raw(t, e.plain, "GET /hello.txt?q=\"x\" HTTP/1.1\r\nHost: localhost\r\nReferer: http://r/\r\nUser-Agent: t/1\r\nConnection: close\r\n\r\n")
	if n := testutil.ToFloat64(e.srv.m.requests.WithLabelValues("HTTP/1.1", "GET", "200")); n != 1 {
		t.Errorf("requests_total = %v, want 1", n)
	}
	var sawReq, sawResp bool
	for _, ev := range e.events.all() {
		sawReq = sawReq || strings.Contains(ev.Summary, `GET /hello.txt?q="x" HTTP/1.1 Host: localhost`)
		sawResp = sawResp || strings.HasPrefix(ev.Summary, "HTTP/1.1 200 OK Last-Modified: ") && ev.Bytes == len(files["hello.txt"])
	}
	if !sawReq || !sawResp {
		t.Errorf("trace events %+v lack the request or the answer", e.events.all())
	}
	e.srv.access.flush()
	b, _ := os.ReadFile(logFile)
	line := strings.TrimSpace(string(b))
	if !strings.HasPrefix(line, "127.0.0.1 - - [") ||
		!strings.HasSuffix(line, `] "GET /hello.txt?q=\"x\" HTTP/1.1" 200 13 "http://r/" "t/1"`) {
		t.Errorf("access log %q", line)
	}
}

// gzLenOf returns the Content-Length in a response header.
func gzLenOf(h []byte) int {
	_, v, _ := bytes.Cut(h, []byte("Content-Length: "))
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// acceptsGzipRef is AcceptsGzip as it was before it stopped allocating.
func acceptsGzipRef(ae string) bool {
	star := false
	for _, part := range strings.Split(ae, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					q = f
				}
			}
		}
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "gzip", "x-gzip":
			return q > 0
		case "*":
			star = q > 0
		}
	}
	return star
}

// FuzzAcceptsGzip: the allocation-free parser agrees with the reference
// on every ASCII value, from a string and from bytes.
func FuzzAcceptsGzip(f *testing.F) {
	for _, s := range []string{"gzip", "br, gzip;q=0.5", "gzip;q=0", "*;q=0.001", "x-gzip; Q = 1e-3", "deflate, *;q=.5", "gzip;q=0.", "gzip;q=.", "GZIP;q=0x1p-2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for i := 0; i < len(s); i++ {
			if s[i] >= 0x80 {
				return
			}
		}
		want := acceptsGzipRef(s)
		if got := acceptsGzip(s); got != want {
			t.Fatalf("acceptsGzip(%q) = %v, reference %v", s, got, want)
		}
		if got := acceptsGzip([]byte(s)); got != want {
			t.Fatalf("acceptsGzip([]byte(%q)) = %v, reference %v", s, got, want)
		}
	})
}

// TestSmugglingAsNetHTTP: request streams built for smuggling (CL+TE,
// duplicate Content-Length, bare CR or LF, invalid field names, obs-fold,
// two Hosts), each followed by a pipelined GET, get on the cleartext
// port (fast path first) exactly the responses net/http alone gives on
// the TLS port: the fast path never answers one of them itself.
func TestSmugglingAsNetHTTP(t *testing.T) {
	e := start(t, nil)
	raw(t, e.plain, "GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n") // cached
	next := "GET /dir/a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"
	for _, s := range []string{
		"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n",
		"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX-A: 1\rContent-Length: 44\r\n\r\n",
		"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX-A: 1\nContent-Length: 44\r\n\r\n",
		"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length : 44\r\n\r\n",
		"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\n Content-Length: 44\r\n\r\n",
		"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nHost: b.example\r\n\r\n",
		"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
		"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n2c\r\n" + next + "\r\n0\r\n\r\n",
	} {
		fc, err := net.Dial("tcp", e.plain)
		if err != nil {
			t.Fatal(err)
		}
		fast := exchangeOn(t, fc, s+next, false, 2)
		tc, err := tls.Dial("tcp", e.tlsA, &tls.Config{RootCAs: e.pool(), ServerName: "localhost", NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		slow := exchangeOn(t, tc, s+next, false, 2)
		for _, r := range append(fast, slow...) {
			r.header.Del("Alt-Svc")
		}
		if fmt.Sprint(fast) != fmt.Sprint(slow) {
			t.Errorf("%q:\ncleartext (fast path first):\n%v\nnet/http:\n%v", s, fast, slow)
		}
	}
}
