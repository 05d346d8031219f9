package cache

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/service"
)

// variantOrigin varies on Accept-Language, answers a matching
// If-None-Match with 304, and tags each variant with etag(lang).
func variantOrigin(etag func(lang string) string, maxAge func(n int64) int) func(w http.ResponseWriter, r *http.Request, n int64) {
	return func(w http.ResponseWriter, r *http.Request, n int64) {
		lang := r.Header.Get("Accept-Language")
		w.Header().Set("Vary", "Accept-Language")
		w.Header().Set("Cache-Control", "max-age="+strconv.Itoa(maxAge(n)))
		w.Header().Set("X-Version", strconv.FormatInt(n, 10))
		tag := etag(lang)
		w.Header().Set("ETag", tag)
		for _, t := range strings.Split(r.Header.Get("If-None-Match"), ",") {
			if strings.TrimSpace(t) == tag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
		fmt.Fprintf(w, "%s-v%d", lang, n)
	}
}

// RFC 9111 section 4.3.4: a 304 with a strong validator updates every
// stored response with that validator, across Vary variants.
func TestNotModifiedUpdatesAllVariantsWithStrongETag(t *testing.T) {
	e := newEnv(t, Config{}, variantOrigin(func(string) string { return `"same"` },
		func(n int64) int {
			if n <= 2 {
				return 1
			}
			return 100
		}))
	e.wantBody(e.do("GET", "/a", "Accept-Language", "en"), "en-v1")
	e.wantBody(e.do("GET", "/a", "Accept-Language", "fr"), "fr-v2")
	e.clk.Advance(2 * time.Second)
	r := e.do("GET", "/a", "Accept-Language", "en") // stale: validated, 304
	e.wantBody(r, "en-v1")
	if r.header.Get("X-Version") != "3" {
		t.Fatalf("en after 304: X-Version %q, want 3", r.header.Get("X-Version"))
	}
	r = e.do("GET", "/a", "Accept-Language", "fr") // freshened by the same 304
	e.wantBody(r, "fr-v2")
	if r.header.Get("X-Version") != "3" || !strings.Contains(r.header.Get("Cache-Status"), "hit") {
		t.Fatalf("fr: X-Version %q, Cache-Status %q; want the 304's header and a hit",
			r.header.Get("X-Version"), r.header.Get("Cache-Status"))
	}
	if e.hits.Load() != 3 {
		t.Fatalf("origin hits %d, want 3", e.hits.Load())
	}
}

// A 304 updates only the stored responses its validator selects: a
// variant with another ETag stays stale.
func TestNotModifiedLeavesOtherETags(t *testing.T) {
	e := newEnv(t, Config{}, variantOrigin(func(l string) string { return `"` + l + `"` },
		func(n int64) int {
			if n <= 2 {
				return 1
			}
			return 100
		}))
	e.do("GET", "/a", "Accept-Language", "en")
	e.do("GET", "/a", "Accept-Language", "fr")
	e.clk.Advance(2 * time.Second)
	e.wantBody(e.do("GET", "/a", "Accept-Language", "en"), "en-v1")
	if inm := e.lastReq().Get("If-None-Match"); !strings.Contains(inm, `"en"`) || !strings.Contains(inm, `"fr"`) {
		t.Errorf("If-None-Match %q, want the tags of both stored variants", inm)
	}
	r := e.do("GET", "/a", "Accept-Language", "fr")
	e.wantBody(r, "fr-v2")
	if !strings.Contains(r.header.Get("Cache-Status"), "fwd=stale") {
		t.Fatalf("fr Cache-Status %q, want a validation (fwd=stale)", r.header.Get("Cache-Status"))
	}
	if e.hits.Load() != 4 {
		t.Fatalf("origin hits %d, want 4", e.hits.Load())
	}
}

// With no ETag, a 304's Last-Modified selects the stored responses with
// that Last-Modified.
func TestNotModifiedUpdatesByLastModified(t *testing.T) {
	lm := "Mon, 01 Dec 2025 00:00:00 GMT"
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Vary", "Accept-Language")
		w.Header().Set("Last-Modified", lm)
		w.Header().Set("X-Version", strconv.FormatInt(n, 10))
		if n <= 2 {
			w.Header().Set("Cache-Control", "max-age=1")
		} else {
			w.Header().Set("Cache-Control", "max-age=100")
		}
		if r.Header.Get("If-Modified-Since") == lm {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, "v%d", n)
	})
	e.do("GET", "/a", "Accept-Language", "en")
	e.do("GET", "/a", "Accept-Language", "fr")
	e.clk.Advance(2 * time.Second)
	e.wantBody(e.do("GET", "/a", "Accept-Language", "en"), "v1")
	r := e.do("GET", "/a", "Accept-Language", "fr")
	e.wantBody(r, "v2")
	if r.header.Get("X-Version") != "3" || e.hits.Load() != 3 {
		t.Fatalf("fr X-Version %q, origin hits %d; want 3 and 3", r.header.Get("X-Version"), e.hits.Load())
	}
}

// RFC 9111 section 4.3.5: a HEAD response whose Content-Length or
// validators differ from the stored GET response's invalidates it.
func TestHeadInvalidatesChangedGet(t *testing.T) {
	for _, tc := range []struct {
		name  string
		field string
	}{{"Content-Length", ""}, {"ETag", "ETag"}, {"Last-Modified", "Last-Modified"}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
				w.Header().Set("Cache-Control", "max-age=10")
				body := "v1"
				switch tc.field {
				case "":
					if n > 1 {
						body = "longer"
					}
				case "ETag":
					w.Header().Set("ETag", fmt.Sprintf(`"%d"`, n))
				case "Last-Modified":
					w.Header().Set("Last-Modified", time.Date(2025, 1, int(n), 0, 0, 0, 0, time.UTC).Format(http.TimeFormat))
				}
				if r.Method == http.MethodGet && n > 1 {
					body = fmt.Sprintf("v%d", n)
				}
				io.WriteString(w, body)
			})
			e.do("GET", "/a")
			e.clk.Advance(20 * time.Second)
			if r := e.do("HEAD", "/a"); r.code != 200 {
				t.Fatalf("HEAD %d", r.code)
			}
			r := e.do("GET", "/a")
			e.wantBody(r, "v3")
			if e.hits.Load() != 3 {
				t.Fatalf("origin hits %d, want 3", e.hits.Load())
			}
		})
	}
}

// A HEAD miss is forwarded as HEAD and stores nothing (its response has no
// body); a following GET fetches the object.
func TestHeadMissNotStored(t *testing.T) {
	e := newEnv(t, Config{}, counting("Cache-Control", "max-age=100"))
	if r := e.do("HEAD", "/a"); r.code != 200 || r.body != "" || !strings.Contains(r.header.Get("Cache-Status"), "uri-miss") {
		t.Fatalf("HEAD: %d %q %q", r.code, r.body, r.header.Get("Cache-Status"))
	}
	e.wantBody(e.do("GET", "/a"), "v2")
	e.wantBody(e.do("GET", "/a"), "v2")
}

// rangeOrigin serves "0123456789" with http.ServeContent (ranges and
// conditionals), recording each request's Range.
func rangeOrigin(ranges *[]string) func(w http.ResponseWriter, r *http.Request, n int64) {
	return func(w http.ResponseWriter, r *http.Request, n int64) {
		*ranges = append(*ranges, r.Header.Get("Range"))
		w.Header().Set("Cache-Control", "max-age=100")
		w.Header().Set("ETag", `"x"`)
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader("0123456789"))
	}
}

// Sections 3.3/3.4: a 206 from the origin is passed through with its
// Content-Range and never stored as a complete response.
func TestPartialPassedThroughNotStored(t *testing.T) {
	for _, hdr := range [][]string{
		{"Cache-Control", "no-store"},
		{"Authorization", "Basic eDp5"},
	} {
		t.Run(hdr[0], func(t *testing.T) {
			var ranges []string
			e := newEnv(t, Config{}, rangeOrigin(&ranges))
			r := e.do("GET", "/a", append([]string{"Range", "bytes=2-4"}, hdr...)...)
			if r.code != 206 || r.body != "234" || r.header.Get("Content-Range") != "bytes 2-4/10" {
				t.Fatalf("range: %d %q %q", r.code, r.body, r.header.Get("Content-Range"))
			}
			e.wantBody(e.do("GET", "/a"), "0123456789")
			if e.hits.Load() != 2 || ranges[0] != "bytes=2-4" || ranges[1] != "" {
				t.Fatalf("origin hits %d, ranges %q", e.hits.Load(), ranges)
			}
		})
	}
}

// An origin that answers 206 to a request without Range is not stored.
func TestPartialFromOriginNotStored(t *testing.T) {
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=100")
		w.Header().Set("Content-Range", "bytes 0-1/10")
		w.WriteHeader(http.StatusPartialContent)
		io.WriteString(w, "01")
	})
	r := e.do("GET", "/a")
	if r.code != 206 || r.body != "01" || r.header.Get("Content-Range") != "bytes 0-1/10" {
		t.Fatalf("206: %d %q %v", r.code, r.body, r.header)
	}
	e.do("GET", "/a")
	if e.hits.Load() != 2 {
		t.Fatalf("a 206 was stored (origin hits %d)", e.hits.Load())
	}
}

// The disk tier evicts the least recently used object (a memory hit
// counts as a use), not the oldest written, and keeps within its budget.
func TestDiskTierLRUByAccess(t *testing.T) {
	dir := t.TempDir()
	body := strings.Repeat("x", 10000)
	cfg := Config{Dir: dir, MaxDiskBytes: 36000}
	e := newEnv(t, cfg, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=1000")
		io.WriteString(w, body)
	})
	for _, p := range []string{"/a", "/b", "/c"} {
		e.do("GET", p)
	}
	e.clk.Advance(time.Second)
	if r := e.do("GET", "/a"); !strings.Contains(r.header.Get("Cache-Status"), "hit") {
		t.Fatalf("/a not a hit: %q", r.header.Get("Cache-Status"))
	}
	e.do("GET", "/d") // over budget: evicts /b, the least recently used
	if e.c.disk.bytes > cfg.MaxDiskBytes {
		t.Fatalf("disk tier holds %d bytes, budget %d", e.c.disk.bytes, cfg.MaxDiskBytes)
	}
	c2, err := New(cfg, e.tr, service.Deps{Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	e.c = c2 // fresh memory tier: only the disk tier answers
	before := e.hits.Load()
	for _, p := range []string{"/a", "/c", "/d"} {
		if r := e.do("GET", p); !strings.Contains(r.header.Get("Cache-Status"), "hit") {
			t.Errorf("%s after restart: Cache-Status %q, want a disk hit", p, r.header.Get("Cache-Status"))
		}
	}
	if e.hits.Load() != before {
		t.Fatalf("origin fetched %d kept objects", e.hits.Load()-before)
	}
	if r := e.do("GET", "/b"); !strings.Contains(r.header.Get("Cache-Status"), "miss") {
		t.Fatalf("/b after restart: Cache-Status %q, want a miss (evicted)", r.header.Get("Cache-Status"))
	}
}

// chanWriter is a ResponseWriter that hands each write to a channel, so a
// test can watch a response arrive while the handler still runs.
type chanWriter struct {
	h    http.Header
	code int
	ch   chan []byte
}

func (c *chanWriter) Header() http.Header { return c.h }
func (c *chanWriter) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
}
func (c *chanWriter) Write(b []byte) (int, error) {
	c.WriteHeader(200)
	c.ch <- append([]byte(nil), b...)
	return len(b), nil
}

// A coalesced waiter streams the object while it arrives, like the
// request that fetches it, instead of waiting for all of it.
func TestCoalescedWaiterStreams(t *testing.T) {
	const half = 100000
	started, release := make(chan struct{}), make(chan struct{})
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=100")
		w.Header().Set("Content-Length", strconv.Itoa(2*half))
		io.WriteString(w, strings.Repeat("a", half))
		w.(http.Flusher).Flush()
		close(started)
		<-release
		io.WriteString(w, strings.Repeat("b", half))
	})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // a failing test must not leave the origin blocked
	url := e.origin.URL + "/big"
	first := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.c.ServeHTTP(first, httptest.NewRequest("GET", url, nil))
	}()
	<-started
	cw := &chanWriter{h: http.Header{}, ch: make(chan []byte, 64)}
	waiterDone := make(chan struct{})
	go func() {
		defer close(waiterDone)
		e.c.ServeHTTP(cw, httptest.NewRequest("GET", url, nil))
	}()
	got := 0
	timeout := time.After(10 * time.Second)
	for got < half {
		select {
		case b := <-cw.ch:
			if strings.Trim(string(b), "a") != "" {
				t.Fatalf("waiter got unexpected bytes before the release")
			}
			got += len(b)
		case <-timeout:
			t.Fatalf("waiter received %d bytes while the origin was sending, want %d", got, half)
		}
	}
	unblock()
	for {
		select {
		case b := <-cw.ch:
			got += len(b)
			continue
		case <-waiterDone:
		}
		break
	}
	for len(cw.ch) > 0 {
		got += len(<-cw.ch)
	}
	<-done
	if got != 2*half || cw.code != 200 || first.Body.Len() != 2*half {
		t.Fatalf("waiter %d bytes (status %d), first %d; want %d", got, cw.code, first.Body.Len(), 2*half)
	}
	if cs := cw.h.Get("Cache-Status"); !strings.Contains(cs, "collapsed") {
		t.Errorf("waiter Cache-Status %q, want collapsed", cs)
	}
	if e.hits.Load() != 1 {
		t.Fatalf("origin fetches %d, want 1", e.hits.Load())
	}
}

// A waiter whose request selects another Vary variant than the fetched
// response doesn't get it.
func TestCoalescedWaiterOtherVariant(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=100")
		w.Header().Set("Vary", "Accept-Language")
		w.Header().Set("Content-Length", "200000")
		lang := r.Header.Get("Accept-Language")
		io.WriteString(w, strings.Repeat(lang[:1], 100000))
		if n == 1 {
			w.(http.Flusher).Flush()
			close(started)
			<-release
		}
		io.WriteString(w, strings.Repeat(lang[:1], 100000))
	})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	url := e.origin.URL + "/v"
	var wg sync.WaitGroup
	bodies := make([]string, 2)
	wg.Go(func() {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", url, nil)
		r.Header.Set("Accept-Language", "en")
		e.c.ServeHTTP(w, r)
		bodies[0] = w.Body.String()
	})
	<-started
	wg.Go(func() {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", url, nil)
		r.Header.Set("Accept-Language", "fr")
		e.c.ServeHTTP(w, r)
		bodies[1] = w.Body.String()
	})
	waitFor(t, func() bool { return e.c.waiting(url) == 1 })
	unblock()
	wg.Wait()
	if bodies[0] != strings.Repeat("e", 200000) || bodies[1] != strings.Repeat("f", 200000) {
		t.Fatalf("bodies %.10q… %.10q…", bodies[0], bodies[1])
	}
}
