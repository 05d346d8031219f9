package cache

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// env is a cache in front of a scripted origin.
type env struct {
	t      *testing.T
	clk    *testkit.Clock
	origin *httptest.Server
	hits   atomic.Int64
	mu     sync.Mutex
	last   http.Header // header of the last origin request
	c      *Cache
	tr     *http.Transport
}

func (e *env) lastReq() http.Header { e.mu.Lock(); defer e.mu.Unlock(); return e.last }

// newEnv starts an origin running h (with Date set from the test clock
// unless h sets it) and a cache in front of it.
func newEnv(t *testing.T, cfg Config, h func(w http.ResponseWriter, r *http.Request, n int64)) *env {
	t.Helper()
	e := &env{t: t, clk: testkit.NewClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))}
	e.origin = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := e.hits.Add(1)
		e.mu.Lock()
		e.last = r.Header.Clone()
		e.mu.Unlock()
		w.Header().Set("Date", e.clk.Now().Format(http.TimeFormat))
		h(w, r, n)
	}))
	e.tr = &http.Transport{DisableCompression: true}
	c, err := New(cfg, e.tr, service.Deps{Now: e.clk.Now, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	t.Cleanup(func() {
		c.Close()
		e.origin.Close()
		e.tr.CloseIdleConnections()
	})
	return e
}

type resp struct {
	code   int
	header http.Header
	body   string
}

func (e *env) do(method, path string, hdr ...string) resp {
	e.t.Helper()
	r := httptest.NewRequest(method, e.origin.URL+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	func() {
		defer func() {
			// an origin body that breaks off aborts the response, as
			// net/http's server does with http.ErrAbortHandler
			if v := recover(); v != nil && v != http.ErrAbortHandler {
				panic(v)
			}
		}()
		e.c.ServeHTTP(w, r)
	}()
	res := w.Result()
	b, _ := io.ReadAll(res.Body)
	if res.Header.Get("Cache-Status") == "" {
		e.t.Errorf("%s %s: no Cache-Status header", method, path)
	}
	return resp{res.StatusCode, res.Header, string(b)}
}

// counting returns an origin handler that answers "v<n>" with the given
// header fields.
func counting(fields ...string) func(w http.ResponseWriter, r *http.Request, n int64) {
	return func(w http.ResponseWriter, r *http.Request, n int64) {
		for i := 0; i+1 < len(fields); i += 2 {
			w.Header().Set(fields[i], fields[i+1])
		}
		fmt.Fprintf(w, "v%d", n)
	}
}

func (e *env) wantBody(r resp, body string) {
	e.t.Helper()
	if r.body != body {
		e.t.Fatalf("body %q, want %q (status %d, Cache-Status %q)", r.body, body, r.code, r.header.Get("Cache-Status"))
	}
}

func TestFreshness(t *testing.T) {
	lm := time.Date(2025, 12, 22, 12, 0, 0, 0, time.UTC) // 10 days before the clock
	cases := []struct {
		name     string
		fields   []string
		freshFor time.Duration // still a hit after this
		staleBy  time.Duration // a miss after this
	}{
		{"max-age", []string{"Cache-Control", "max-age=60"}, 59 * time.Second, 61 * time.Second},
		{"s-maxage beats max-age", []string{"Cache-Control", "max-age=10, s-maxage=100"}, 99 * time.Second, 101 * time.Second},
		{"Expires minus Date", []string{"Expires", "Thu, 01 Jan 2026 12:05:00 GMT"}, 299 * time.Second, 301 * time.Second},
		{"max-age beats Expires", []string{"Cache-Control", "max-age=30", "Expires", "Thu, 01 Jan 2026 13:00:00 GMT"}, 29 * time.Second, 31 * time.Second},
		{"heuristic 10% of Last-Modified age", []string{"Last-Modified", lm.Format(http.TimeFormat)}, 23 * time.Hour, 25 * time.Hour},
		{"Age counts against max-age", []string{"Cache-Control", "max-age=60", "Age", "50"}, 9 * time.Second, 11 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{}, counting(tc.fields...))
			e.wantBody(e.do("GET", "/a"), "v1")
			e.clk.Advance(tc.freshFor)
			r := e.do("GET", "/a")
			e.wantBody(r, "v1")
			if !strings.Contains(r.header.Get("Cache-Status"), "hit") {
				t.Errorf("Cache-Status %q, want hit", r.header.Get("Cache-Status"))
			}
			e.clk.Advance(tc.staleBy - tc.freshFor)
			e.wantBody(e.do("GET", "/a"), "v2")
		})
	}
}

func TestAgeHeader(t *testing.T) {
	e := newEnv(t, Config{}, counting("Cache-Control", "max-age=600", "Age", "100"))
	e.do("GET", "/a")
	e.clk.Advance(30 * time.Second)
	r := e.do("GET", "/a")
	if got := r.header.Get("Age"); got != "130" {
		t.Fatalf("Age %q, want 130 (corrected initial age 100 + resident 30)", got)
	}
	if !strings.Contains(r.header.Get("Cache-Status"), "ttl=470") {
		t.Errorf("Cache-Status %q, want ttl=470", r.header.Get("Cache-Status"))
	}
}

func TestApparentAgeFromDate(t *testing.T) {
	// The origin's Date is 20s in the past: the response arrives 20s old.
	var e *env
	e = newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Date", e.clk.Now().Add(-20*time.Second).Format(http.TimeFormat))
		w.Header().Set("Cache-Control", "max-age=30")
		fmt.Fprintf(w, "v%d", n)
	})
	e.do("GET", "/a")
	if got := e.do("GET", "/a").header.Get("Age"); got != "20" {
		t.Fatalf("Age %q, want 20", got)
	}
	e.clk.Advance(11 * time.Second)
	e.wantBody(e.do("GET", "/a"), "v2")
}

func TestNotStored(t *testing.T) {
	cases := []struct {
		name   string
		fields []string
		req    []string
	}{
		{"response no-store", []string{"Cache-Control", "max-age=60, no-store"}, nil},
		{"request no-store", []string{"Cache-Control", "max-age=60"}, []string{"Cache-Control", "no-store"}},
		{"private", []string{"Cache-Control", "max-age=60, private"}, nil},
		{"Authorization without public", []string{"Cache-Control", "max-age=60"}, []string{"Authorization", "Basic eDp5"}},
		{"Vary star", []string{"Cache-Control", "max-age=60", "Vary", "*"}, nil},
		{"no freshness, no validator, not heuristic status", nil, nil},
		{"invalid max-age is stale", []string{"Cache-Control", "max-age=abc"}, nil},
		{"invalid Expires is stale", []string{"Expires", "0"}, nil},
		{"explicit max-age=0 is not overridden by heuristics", []string{"Cache-Control", "max-age=0", "Last-Modified", "Mon, 01 Dec 2025 00:00:00 GMT"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{}, counting(tc.fields...))
			e.wantBody(e.do("GET", "/a", tc.req...), "v1")
			e.wantBody(e.do("GET", "/a", tc.req...), "v2")
		})
	}
}

func TestStored(t *testing.T) {
	cases := []struct {
		name   string
		fields []string
		req    []string
	}{
		{"Authorization with public", []string{"Cache-Control", "public, max-age=60"}, []string{"Authorization", "Basic eDp5"}},
		{"Authorization with s-maxage", []string{"Cache-Control", "s-maxage=60"}, []string{"Authorization", "Basic eDp5"}},
		{"duplicate max-age: first wins", []string{"Cache-Control", "max-age=60, max-age=0"}, nil},
		{"quoted max-age value", []string{"Cache-Control", `max-age="60"`}, nil},
		{"directive names are case-insensitive", []string{"Cache-Control", "MAX-AGE=60"}, nil},
		{"private with a field name stores the rest", []string{"Cache-Control", `max-age=60, private="X-Secret"`, "X-Secret", "s"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{}, counting(tc.fields...))
			e.wantBody(e.do("GET", "/a", tc.req...), "v1")
			r := e.do("GET", "/a", tc.req...)
			e.wantBody(r, "v1")
			if r.header.Get("X-Secret") != "" {
				t.Errorf("stored a field named in private=")
			}
		})
	}
}

// validating answers 304 to a matching If-None-Match and counts them.
func validating(etag string, fields ...string) (func(w http.ResponseWriter, r *http.Request, n int64), *atomic.Int64) {
	var n304 atomic.Int64
	return func(w http.ResponseWriter, r *http.Request, n int64) {
		for i := 0; i+1 < len(fields); i += 2 {
			w.Header().Set(fields[i], fields[i+1])
		}
		w.Header().Set("ETag", etag)
		w.Header().Set("X-Version", strconv.FormatInt(n, 10))
		if r.Header.Get("If-None-Match") == etag {
			n304.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, "v%d", n)
	}, &n304
}

func TestValidation(t *testing.T) {
	cases := []struct {
		name   string
		fields []string
		req    []string
		wait   time.Duration
	}{
		{"stale entry", []string{"Cache-Control", "max-age=10"}, nil, 11 * time.Second},
		{"response no-cache", []string{"Cache-Control", "max-age=100, no-cache"}, nil, 0},
		{"request no-cache", []string{"Cache-Control", "max-age=100"}, []string{"Cache-Control", "no-cache"}, 0},
		{"Pragma no-cache", []string{"Cache-Control", "max-age=100"}, []string{"Pragma", "no-cache"}, 0},
		{"request max-age=0", []string{"Cache-Control", "max-age=100"}, []string{"Cache-Control", "max-age=0"}, time.Second},
		{"request min-fresh", []string{"Cache-Control", "max-age=100"}, []string{"Cache-Control", "min-fresh=50"}, 60 * time.Second},
		{"must-revalidate ignores max-stale", []string{"Cache-Control", "max-age=10, must-revalidate"}, []string{"Cache-Control", "max-stale"}, 20 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, n304 := validating(`"e1"`, tc.fields...)
			e := newEnv(t, Config{}, h)
			e.wantBody(e.do("GET", "/a"), "v1")
			e.clk.Advance(tc.wait)
			r := e.do("GET", "/a", tc.req...)
			e.wantBody(r, "v1")
			if n304.Load() != 1 {
				t.Fatalf("origin sent %d 304s, want 1 (Cache-Status %q)", n304.Load(), r.header.Get("Cache-Status"))
			}
			if e.lastReq().Get("If-None-Match") != `"e1"` {
				t.Errorf("conditional request had If-None-Match %q", e.lastReq().Get("If-None-Match"))
			}
			// RFC 9111 section 4.3.4: the stored header is updated from the 304.
			if got := r.header.Get("X-Version"); got != "2" {
				t.Errorf("X-Version %q after the 304, want 2", got)
			}
			if r.header.Get("Content-Length") != "2" {
				t.Errorf("Content-Length %q, want 2", r.header.Get("Content-Length"))
			}
			if !strings.Contains(r.header.Get("Cache-Status"), "fwd-status=304") {
				t.Errorf("Cache-Status %q, want fwd-status=304", r.header.Get("Cache-Status"))
			}
		})
	}
}

func TestValidationWithLastModified(t *testing.T) {
	lm := "Mon, 01 Dec 2025 00:00:00 GMT"
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Last-Modified", lm)
		w.Header().Set("Cache-Control", "max-age=1")
		if r.Header.Get("If-Modified-Since") == lm {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, "v%d", n)
	})
	e.do("GET", "/a")
	e.clk.Advance(2 * time.Second)
	e.wantBody(e.do("GET", "/a"), "v1")
	if e.hits.Load() != 2 {
		t.Fatalf("origin hits %d, want 2", e.hits.Load())
	}
}

func TestServeStaleByRequest(t *testing.T) {
	e := newEnv(t, Config{}, counting("Cache-Control", "max-age=10"))
	e.do("GET", "/a")
	e.clk.Advance(20 * time.Second)
	e.wantBody(e.do("GET", "/a", "Cache-Control", "max-stale=15"), "v1")
	e.wantBody(e.do("GET", "/a", "Cache-Control", "max-stale"), "v1")
	e.wantBody(e.do("GET", "/a", "Cache-Control", "max-stale=5"), "v2")
}

func TestOnlyIfCached(t *testing.T) {
	e := newEnv(t, Config{}, counting("Cache-Control", "max-age=10"))
	if r := e.do("GET", "/a", "Cache-Control", "only-if-cached"); r.code != http.StatusGatewayTimeout {
		t.Fatalf("cold only-if-cached: %d, want 504", r.code)
	}
	e.do("GET", "/a")
	e.wantBody(e.do("GET", "/a", "Cache-Control", "only-if-cached"), "v1")
	e.clk.Advance(11 * time.Second)
	if r := e.do("GET", "/a", "Cache-Control", "only-if-cached"); r.code != http.StatusGatewayTimeout {
		t.Fatalf("stale only-if-cached: %d, want 504", r.code)
	}
	if e.hits.Load() != 1 {
		t.Fatalf("origin hits %d, want 1", e.hits.Load())
	}
}

func TestMustRevalidateOriginDown(t *testing.T) {
	for _, cc := range []string{"max-age=10, must-revalidate", "max-age=10, proxy-revalidate", "s-maxage=10"} {
		t.Run(cc, func(t *testing.T) {
			e := newEnv(t, Config{}, counting("Cache-Control", cc+", stale-if-error=100"))
			e.do("GET", "/a")
			e.origin.Close()
			e.clk.Advance(20 * time.Second)
			if r := e.do("GET", "/a", "Cache-Control", "max-stale"); r.code != http.StatusGatewayTimeout {
				t.Fatalf("got %d %q, want 504", r.code, r.body)
			}
		})
	}
}

func TestImmutable(t *testing.T) {
	e := newEnv(t, Config{}, counting("Cache-Control", "max-age=100, immutable"))
	e.do("GET", "/a")
	e.wantBody(e.do("GET", "/a", "Cache-Control", "no-cache"), "v1")
}

func TestVary(t *testing.T) {
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=100")
		w.Header().Set("Vary", "Accept-Encoding, accept-language")
		fmt.Fprintf(w, "v%d:%s", n, r.Header.Get("Accept-Encoding"))
	})
	e.wantBody(e.do("GET", "/a", "Accept-Encoding", "gzip, br"), "v1:gzip, br")
	e.wantBody(e.do("GET", "/a", "Accept-Encoding", "br,GZIP"), "v1:gzip, br") // normalised
	r := e.do("GET", "/a", "Accept-Encoding", "identity")
	e.wantBody(r, "v2:identity")
	if !strings.Contains(r.header.Get("Cache-Status"), "vary-miss") {
		t.Errorf("Cache-Status %q, want vary-miss", r.header.Get("Cache-Status"))
	}
	e.wantBody(e.do("GET", "/a", "Accept-Encoding", "gzip,br"), "v1:gzip, br")
	e.wantBody(e.do("GET", "/a", "Accept-Encoding", "gzip,br", "Accept-Language", "fr"), "v3:gzip,br")
	e.wantBody(e.do("GET", "/a"), "v4:") // absent differs from every value
	e.wantBody(e.do("GET", "/a"), "v4:")
}

func TestInvalidation(t *testing.T) {
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
		if r.Method == http.MethodPost {
			w.Header().Set("Location", "/b")
			w.Header().Set("Content-Location", "http://elsewhere.example/c")
			w.WriteHeader(http.StatusCreated)
			return
		}
		w.Header().Set("Cache-Control", "max-age=100")
		fmt.Fprintf(w, "%s%d", r.URL.Path, n)
	})
	e.wantBody(e.do("GET", "/a"), "/a1")
	e.wantBody(e.do("GET", "/b"), "/b2")
	if r := e.do("POST", "/a"); r.code != http.StatusCreated {
		t.Fatalf("POST: %d", r.code)
	}
	e.wantBody(e.do("GET", "/a"), "/a4")
	e.wantBody(e.do("GET", "/b"), "/b5") // Location, same origin
	e.wantBody(e.do("DELETE", "/a"), "/a6")
	e.wantBody(e.do("GET", "/a"), "/a7")
}

func TestInvalidationNotOnError(t *testing.T) {
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
		if r.Method == http.MethodPut {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		w.Header().Set("Cache-Control", "max-age=100")
		fmt.Fprintf(w, "v%d", n)
	})
	e.do("GET", "/a")
	e.do("PUT", "/a")
	e.wantBody(e.do("GET", "/a"), "v1")
}

func TestStaleWhileRevalidate(t *testing.T) {
	e := newEnv(t, Config{}, counting("Cache-Control", "max-age=10, stale-while-revalidate=60"))
	e.do("GET", "/a")
	e.clk.Advance(30 * time.Second)
	r := e.do("GET", "/a")
	e.wantBody(r, "v1")
	if !strings.Contains(r.header.Get("Cache-Status"), "stale-while-revalidate") {
		t.Errorf("Cache-Status %q", r.header.Get("Cache-Status"))
	}
	waitFor(t, func() bool { return e.hits.Load() == 2 && !e.c.revalidating("") })
	e.wantBody(e.do("GET", "/a"), "v2")
	e.clk.Advance(100 * time.Second) // beyond the window: synchronous
	e.wantBody(e.do("GET", "/a"), "v3")
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestStaleIfError(t *testing.T) {
	var fail atomic.Bool
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
		if fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Cache-Control", "max-age=10, stale-if-error=60")
		fmt.Fprintf(w, "v%d", n)
	})
	e.do("GET", "/a")
	fail.Store(true)
	e.clk.Advance(30 * time.Second)
	r := e.do("GET", "/a")
	e.wantBody(r, "v1")
	if !strings.Contains(r.header.Get("Cache-Status"), "fwd-status=503") {
		t.Errorf("Cache-Status %q", r.header.Get("Cache-Status"))
	}
	e.clk.Advance(60 * time.Second)
	if r := e.do("GET", "/a"); r.code != http.StatusServiceUnavailable {
		t.Fatalf("beyond stale-if-error: %d, want 503", r.code)
	}
	// the request directive works too
	e.clk.Advance(0)
	if r := e.do("GET", "/a", "Cache-Control", "stale-if-error=1000"); r.code != http.StatusOK {
		t.Fatalf("request stale-if-error: %d", r.code)
	}
}

func TestHeadFromGet(t *testing.T) {
	e := newEnv(t, Config{}, counting("Cache-Control", "max-age=100"))
	e.do("GET", "/a")
	r := e.do("HEAD", "/a")
	if r.code != 200 || r.body != "" || r.header.Get("Content-Length") != "2" {
		t.Fatalf("HEAD: %d %q CL=%q", r.code, r.body, r.header.Get("Content-Length"))
	}
	if e.hits.Load() != 1 {
		t.Fatalf("origin hits %d", e.hits.Load())
	}
}

func TestRanges(t *testing.T) {
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
		if r.Header.Get("Range") != "" {
			t.Errorf("Range forwarded to the origin")
		}
		w.Header().Set("Cache-Control", "max-age=100")
		w.Header().Set("ETag", `"x"`)
		io.WriteString(w, "0123456789")
	})
	r := e.do("GET", "/a", "Range", "bytes=2-4") // miss: fetched whole, stored
	if r.code != 206 || r.body != "234" || r.header.Get("Content-Range") != "bytes 2-4/10" {
		t.Fatalf("miss range: %d %q %q", r.code, r.body, r.header.Get("Content-Range"))
	}
	for _, tc := range []struct {
		hdr  []string
		code int
		body string
	}{
		{[]string{"Range", "bytes=-3"}, 206, "789"},
		{[]string{"Range", "bytes=8-"}, 206, "89"},
		{[]string{"Range", "bytes=20-"}, 416, ""},
		{[]string{"Range", "bytes=0-1,4-5"}, 200, "0123456789"},
		{[]string{"Range", "bytes=0-1", "If-Range", `"x"`}, 206, "01"},
		{[]string{"Range", "bytes=0-1", "If-Range", `"y"`}, 200, "0123456789"},
	} {
		r := e.do("GET", "/a", tc.hdr...)
		if r.code != tc.code || (tc.code != 416 && r.body != tc.body) {
			t.Errorf("%v: %d %q, want %d %q", tc.hdr, r.code, r.body, tc.code, tc.body)
		}
	}
	if e.hits.Load() != 1 {
		t.Fatalf("origin hits %d, want 1", e.hits.Load())
	}
}

func TestClientConditional(t *testing.T) {
	e := newEnv(t, Config{}, counting("Cache-Control", "max-age=100", "ETag", `W/"v"`, "Last-Modified", "Mon, 01 Dec 2025 00:00:00 GMT"))
	if r := e.do("GET", "/a", "If-None-Match", `"v"`); r.code != 304 {
		t.Fatalf("miss with If-None-Match: %d", r.code)
	}
	if r := e.do("GET", "/a", "If-None-Match", `"other", W/"v"`); r.code != 304 {
		t.Fatalf("hit with If-None-Match: %d", r.code)
	}
	if r := e.do("GET", "/a", "If-Modified-Since", "Tue, 02 Dec 2025 00:00:00 GMT"); r.code != 304 {
		t.Fatalf("hit with If-Modified-Since: %d", r.code)
	}
	e.wantBody(e.do("GET", "/a", "If-None-Match", `"nope"`), "v1")
}

func TestHopByHopNotStored(t *testing.T) {
	e := newEnv(t, Config{}, counting("Cache-Control", "max-age=100", "Connection", "X-Hop", "X-Hop", "1", "X-Keep", "1"))
	e.do("GET", "/a")
	r := e.do("GET", "/a")
	if r.header.Get("X-Hop") != "" || r.header.Get("X-Keep") != "1" {
		t.Fatalf("stored header: %v", r.header)
	}
}

func TestCoalescing(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
		<-release
		w.Header().Set("Cache-Control", "max-age=100")
		fmt.Fprintf(w, "v%d", n)
	})
	const N = 1000
	var wg sync.WaitGroup
	bodies := make([]string, N)
	for i := range N {
		wg.Go(func() {
			w := httptest.NewRecorder()
			e.c.ServeHTTP(w, httptest.NewRequest("GET", e.origin.URL+"/cold", nil))
			bodies[i] = w.Body.String()
		})
	}
	waitFor(t, func() bool { return e.c.waiting(e.origin.URL+"/cold") == N-1 })
	close(release)
	wg.Wait()
	if e.hits.Load() != 1 {
		t.Fatalf("origin fetches %d, want 1", e.hits.Load())
	}
	for i, b := range bodies {
		if b != "v1" {
			t.Fatalf("request %d got %q", i, b)
		}
	}
}

func TestCoalescingOriginFails(t *testing.T) {
	e := newEnv(t, Config{FetchTimeout: 0}, counting())
	e.origin.Close()
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			w := httptest.NewRecorder()
			e.c.ServeHTTP(w, httptest.NewRequest("GET", e.origin.URL+"/x", nil))
			if w.Code != http.StatusBadGateway {
				t.Errorf("status %d, want 502", w.Code)
			}
		})
	}
	wg.Wait()
}

func TestCoalescingNotCacheable(t *testing.T) {
	release := make(chan struct{})
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
		if n == 1 {
			<-release
		}
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintf(w, "v%d", n)
	})
	const N = 20
	var wg sync.WaitGroup
	var ok atomic.Int64
	for range N {
		wg.Go(func() {
			w := httptest.NewRecorder()
			e.c.ServeHTTP(w, httptest.NewRequest("GET", e.origin.URL+"/p", nil))
			if w.Code == 200 && strings.HasPrefix(w.Body.String(), "v") {
				ok.Add(1)
			}
		})
	}
	waitFor(t, func() bool { return e.c.waiting(e.origin.URL+"/p") == N-1 })
	close(release)
	wg.Wait()
	if ok.Load() != N || e.hits.Load() != N {
		t.Fatalf("ok %d, origin hits %d; want %d each", ok.Load(), e.hits.Load(), N)
	}
}

func TestDiskTierSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, Config{Dir: dir}, counting("Cache-Control", "max-age=100", "Vary", "Accept-Language"))
	e.wantBody(e.do("GET", "/a", "Accept-Language", "en"), "v1")
	e.wantBody(e.do("GET", "/a", "Accept-Language", "fr"), "v2")
	c2, err := New(Config{Dir: dir}, e.tr, service.Deps{Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	e.c = c2
	e.clk.Advance(10 * time.Second)
	r := e.do("GET", "/a", "Accept-Language", "fr")
	e.wantBody(r, "v2")
	if r.header.Get("Age") != "10" {
		t.Errorf("Age after restart %q, want 10", r.header.Get("Age"))
	}
	e.wantBody(e.do("GET", "/a", "Accept-Language", "en"), "v1")
	if e.hits.Load() != 2 {
		t.Fatalf("origin hits %d, want 2", e.hits.Load())
	}
	if n := c2.Purge(e.origin.URL + "/a"); n != 2 {
		t.Fatalf("purged %d, want 2", n)
	}
	c3, err := New(Config{Dir: dir}, e.tr, service.Deps{Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	e.c = c3
	e.wantBody(e.do("GET", "/a", "Accept-Language", "en"), "v3")
}

func TestLRUEviction(t *testing.T) {
	big := strings.Repeat("x", 1000)
	e := newEnv(t, Config{MaxBytes: 5000}, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=100")
		io.WriteString(w, big)
	})
	for i := range 4 {
		e.do("GET", fmt.Sprintf("/%d", i))
	}
	e.do("GET", "/0") // /0 is now most recently used
	for i := 4; i < 6; i++ {
		e.do("GET", fmt.Sprintf("/%d", i))
	}
	before := e.hits.Load()
	e.do("GET", "/0")
	if e.hits.Load() != before {
		t.Errorf("recently used /0 was evicted")
	}
	e.do("GET", "/1")
	if e.hits.Load() != before+1 {
		t.Errorf("least recently used /1 was not evicted")
	}
	if _, b := e.c.mem.usage(); b > 5000 {
		t.Errorf("memory %d over budget", b)
	}
}

func TestLargeObjectStreamedNotStored(t *testing.T) {
	e := newEnv(t, Config{MaxObjectBytes: 100}, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=100")
		io.WriteString(w, strings.Repeat("y", 1000))
	})
	if r := e.do("GET", "/big"); len(r.body) != 1000 {
		t.Fatalf("body %d bytes", len(r.body))
	}
	e.do("GET", "/big")
	if e.hits.Load() != 2 {
		t.Fatalf("object over the limit was stored")
	}
}

func TestAdminPurgeAndStats(t *testing.T) {
	e := newEnv(t, Config{}, counting("Cache-Control", "max-age=100"))
	e.do("GET", "/x/1")
	e.do("GET", "/x/2")
	e.do("GET", "/y")
	e.do("GET", "/y")
	admin := e.c.AdminHandler()
	call := func(method, target string) string {
		w := httptest.NewRecorder()
		admin.ServeHTTP(w, httptest.NewRequest(method, target, nil))
		return strings.TrimSpace(w.Body.String())
	}
	if got := call("POST", "/cache/purge?prefix="+e.origin.URL+"/x/"); got != `{"purged":2}` {
		t.Fatalf("purge prefix: %s", got)
	}
	if got := call("POST", "/cache/purge?url="+e.origin.URL+"/y"); got != `{"purged":1}` {
		t.Fatalf("purge url: %s", got)
	}
	st := e.c.Stats()
	if st.Requests != 4 || st.Hits != 1 || st.OriginRequests != 3 {
		t.Fatalf("stats %+v", st)
	}
	if !strings.Contains(call("GET", "/cache/stats"), `"hit_ratio":0.25`) {
		t.Fatalf("stats JSON: %s", call("GET", "/cache/stats"))
	}
}

func TestLinkModel(t *testing.T) {
	without, with := LinkModel(15, 1e6, 15.4e6, 0.4)
	if without < 0.97 || without > 0.98 || with < 0.58 || with > 0.59 {
		t.Fatalf("LinkModel = %.3f, %.3f; want 0.974, 0.584", without, with)
	}
}

func TestParseCacheControl(t *testing.T) {
	cases := []struct {
		in   string
		want func(d Directives) bool
	}{
		{`max-age=60`, func(d Directives) bool { return d.MaxAge == 60 }},
		{`max-age=60, max-age=10`, func(d Directives) bool { return d.MaxAge == 60 }},
		{`max-age=-1`, func(d Directives) bool { return d.MaxAge == 0 }},
		{`max-age=1.5`, func(d Directives) bool { return d.MaxAge == 0 }},
		{`max-age`, func(d Directives) bool { return d.MaxAge == 0 }},
		{`max-age=99999999999999999999`, func(d Directives) bool { return d.MaxAge == maxDelta }},
		{` Max-Age = "30" ,public`, func(d Directives) bool { return d.MaxAge == 30 && d.Public() }},
		{`no-cache="Set-Cookie, X-A", private`, func(d Directives) bool {
			return !d.NoCache() && d.Private() && len(d.NoCacheFields) == 2 && d.NoCacheFields[1] == "X-A"
		}},
		{`foo="a,b,no-store", max-age=5`, func(d Directives) bool { return !d.NoStore() && d.MaxAge == 5 }},
		{`max-stale`, func(d Directives) bool { return d.MaxStaleAny() && d.MaxStale == -1 }},
		{`max-stale=7, min-fresh=3, only-if-cached`, func(d Directives) bool { return d.MaxStale == 7 && d.MinFresh == 3 && d.OnlyIfCached() }},
		{`stale-while-revalidate=5,stale-if-error=6,immutable,must-revalidate,proxy-revalidate,no-store`, func(d Directives) bool {
			return d.StaleWhileRevalidate == 5 && d.StaleIfError == 6 && d.Immutable() && d.MustRevalidate() && d.ProxyRevalidate() && d.NoStore()
		}},
		{`,,, ,`, func(d Directives) bool { return d.MaxAge == -1 && d.flags == 0 }},
		{`max-age="12`, func(d Directives) bool { return d.MaxAge == 12 }},
	}
	for _, tc := range cases {
		d := parseCC([]string{tc.in})
		if !tc.want(d) {
			t.Errorf("%q: %+v", tc.in, d)
		}
	}
}

func TestKey(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"http://Example.COM:80/a?b=c", "http://example.com/a?b=c"},
		{"http://example.com", "http://example.com/"},
		{"https://example.com:443/x", "https://example.com/x"},
		{"http://example.com:8080/x", "http://example.com:8080/x"},
	} {
		r := httptest.NewRequest("GET", tc.url, nil)
		if got := Key(r); got != tc.want {
			t.Errorf("Key(%s) = %s, want %s", tc.url, got, tc.want)
		}
	}
}

func TestIncompleteResponseNotStored(t *testing.T) {
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=100")
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // the connection closes mid-body
	})
	e.do("GET", "/a")
	e.do("GET", "/a")
	if e.hits.Load() != 2 {
		t.Fatalf("incomplete response was stored (origin hits %d)", e.hits.Load())
	}
}

func TestPostNotStored(t *testing.T) {
	e := newEnv(t, Config{}, counting("Cache-Control", "max-age=100"))
	e.do("POST", "/a")
	e.wantBody(e.do("GET", "/a"), "v2")
}

func TestNoCacheFieldNotReused(t *testing.T) {
	e := newEnv(t, Config{}, counting("Cache-Control", `max-age=100, no-cache="X-Token"`, "X-Token", "t", "X-Other", "o"))
	e.do("GET", "/a")
	r := e.do("GET", "/a")
	e.wantBody(r, "v1")
	if r.header.Get("X-Token") != "" || r.header.Get("X-Other") != "o" {
		t.Fatalf("header %v", r.header)
	}
}

func TestUnsafeMethodStatusNotFromCache(t *testing.T) {
	e := newEnv(t, Config{}, counting("Cache-Control", "max-age=100"))
	e.do("GET", "/a")
	if r := e.do("OPTIONS", "/a"); !strings.Contains(r.header.Get("Cache-Status"), "fwd=method") {
		t.Fatalf("OPTIONS Cache-Status %q", r.header.Get("Cache-Status"))
	}
	e.wantBody(e.do("GET", "/a"), "v1") // OPTIONS is safe: no invalidation
}

func TestNotModifiedForOtherRepresentation(t *testing.T) {
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=1")
		if n == 1 {
			w.Header().Set("ETag", `"a"`)
		} else {
			w.Header().Set("ETag", `"b"`)
		}
		if r.Header.Get("If-None-Match") != "" {
			w.WriteHeader(http.StatusNotModified) // wrongly: for "b"
			return
		}
		fmt.Fprintf(w, "v%d", n)
	})
	e.do("GET", "/a")
	e.clk.Advance(2 * time.Second)
	e.wantBody(e.do("GET", "/a"), "v3")
	if e.lastReq().Get("If-None-Match") != "" {
		t.Fatalf("refetch was conditional")
	}
}

func TestHeadRevalidatesStoredGet(t *testing.T) {
	var methods sync.Map
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
		methods.Store(n, r.Method)
		w.Header().Set("Cache-Control", "max-age=10")
		w.Header().Set("X-Version", strconv.FormatInt(n, 10))
		io.WriteString(w, "v1") // same length each time
	})
	e.do("GET", "/a")
	e.clk.Advance(20 * time.Second)
	r := e.do("HEAD", "/a") // stale: validated with HEAD, which freshens the GET response
	if r.code != 200 || r.body != "" || r.header.Get("Content-Length") != "2" {
		t.Fatalf("HEAD: %d %q %v", r.code, r.body, r.header)
	}
	if m, _ := methods.Load(int64(2)); m != "HEAD" {
		t.Fatalf("origin saw %v, want HEAD", m)
	}
	r = e.do("GET", "/a")
	e.wantBody(r, "v1")
	if r.header.Get("X-Version") != "2" || !strings.Contains(r.header.Get("Cache-Status"), "hit") {
		t.Fatalf("GET after HEAD: X-Version %q, Cache-Status %q", r.header.Get("X-Version"), r.header.Get("Cache-Status"))
	}
	if e.hits.Load() != 2 {
		t.Fatalf("origin hits %d", e.hits.Load())
	}
}
