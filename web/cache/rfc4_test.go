package cache

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHopByHopNotStoredHit: the stored response (served as a hit, so a
// cache that stores nothing fails) keeps the end-to-end fields and none of
// the hop-by-hop ones or those the origin's Connection named (RFC 9111
// section 3.1).
func TestHopByHopNotStoredHit(t *testing.T) {
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
		h := w.Header()
		h.Set("Cache-Control", "max-age=100")
		h.Set("Connection", "X-Hop, Keep-Alive")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("X-Hop", "1")
		h.Set("Proxy-Authenticate", "Basic")
		h.Set("Upgrade", "h2c")
		h.Set("Trailer", "X-Tr")
		h.Set("X-Keep", "1")
		fmt.Fprintf(w, "v%d", n)
	})
	e.do("GET", "/a")
	r := e.do("GET", "/a")
	e.wantBody(r, "v1")
	if !strings.Contains(r.header.Get("Cache-Status"), "hit") {
		t.Fatalf("Cache-Status %q, want a hit", r.header.Get("Cache-Status"))
	}
	if r.header.Get("X-Keep") != "1" {
		t.Errorf("end-to-end field X-Keep not stored: %v", r.header)
	}
	for _, f := range []string{"Connection", "Keep-Alive", "X-Hop", "Proxy-Authenticate", "Upgrade", "Trailer", "Transfer-Encoding"} {
		if v, ok := r.header[f]; ok {
			t.Errorf("hop-by-hop field %s %q stored", f, v)
		}
	}
	// the fast path's precomputed header too
	hdr, _, ok := e.c.FastHit([]byte(Key(httptest.NewRequest("GET", e.origin.URL+"/a", nil))), false, "", nil)
	if !ok {
		t.Fatalf("no fast hit")
	}
	for _, f := range []string{"Connection:", "Keep-Alive:", "X-Hop:", "Proxy-Authenticate:", "Upgrade:", "Trailer:"} {
		if strings.Contains(string(hdr), "\r\n"+f) {
			t.Errorf("fast hit header carries %s: %q", f, hdr)
		}
	}
}

// TestInvalidationCrossOrigin: after an unsafe request, the URIs in
// Location and Content-Location are invalidated only when they have the
// target's origin (RFC 9111 section 4.4): another origin's (another port)
// stored responses stay.
func TestInvalidationCrossOrigin(t *testing.T) {
	var other *env
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
		if r.Method == http.MethodPost {
			w.Header().Set("Location", other.origin.URL+"/loc")
			w.Header().Set("Content-Location", other.origin.URL+"/cloc")
			w.WriteHeader(http.StatusCreated)
			return
		}
		w.Header().Set("Cache-Control", "max-age=100")
		fmt.Fprintf(w, "%s%d", r.URL.Path, n)
	})
	other = newEnv(t, Config{}, counting("Cache-Control", "max-age=100"))
	get := func(u string) resp {
		t.Helper()
		r := httptest.NewRequest("GET", u, nil)
		w := httptest.NewRecorder()
		e.c.ServeHTTP(w, r)
		return resp{w.Code, w.Result().Header, w.Body.String()}
	}
	e.wantBody(get(other.origin.URL+"/loc"), "v1")
	e.wantBody(get(other.origin.URL+"/cloc"), "v2")
	e.wantBody(e.do("GET", "/a"), "/a1")
	if r := e.do("POST", "/a"); r.code != http.StatusCreated {
		t.Fatalf("POST: %d", r.code)
	}
	e.wantBody(e.do("GET", "/a"), "/a3") // the target: invalidated
	for _, p := range []string{"/loc", "/cloc"} {
		r := get(other.origin.URL + p)
		if !strings.Contains(r.header.Get("Cache-Status"), "hit") {
			t.Errorf("%s of another origin was invalidated: %q, Cache-Status %q", p, r.body, r.header.Get("Cache-Status"))
		}
	}
	if n := other.hits.Load(); n != 2 {
		t.Errorf("the other origin served %d requests, want 2", n)
	}
}

// TestNotModifiedContentLengthKept: a 304 carrying a Content-Length (of
// nothing, or of another representation) must not replace the stored
// one (RFC 9111 section 3.2): the validated response and later hits carry
// the stored body's length and the whole body.
func TestNotModifiedContentLengthKept(t *testing.T) {
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
		if r.Header.Get("If-None-Match") == `"x"` {
			// written raw: net/http's server would drop the field
			c, bw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				panic(err)
			}
			defer c.Close()
			fmt.Fprintf(bw, "HTTP/1.1 304 Not Modified\r\nDate: %s\r\nETag: \"x\"\r\nCache-Control: max-age=100\r\nContent-Length: 999\r\nX-Version: 2\r\nConnection: close\r\n\r\n", time.Now().UTC().Format(http.TimeFormat))
			bw.Flush()
			return
		}
		w.Header().Set("Cache-Control", "max-age=10")
		w.Header().Set("ETag", `"x"`)
		w.Header().Set("X-Version", "1")
		fmt.Fprint(w, "twelve bytes")
	})
	e.do("GET", "/a")
	e.clk.Advance(20 * time.Second)
	for i, what := range []string{"validated", "hit"} {
		r := e.do("GET", "/a")
		e.wantBody(r, "twelve bytes")
		if cl := r.header.Get("Content-Length"); cl != "12" {
			t.Errorf("%s response: Content-Length %q, want 12", what, cl)
		}
		if r.header.Get("X-Version") != "2" {
			t.Errorf("%s response: the 304's other fields were not applied: X-Version %q", what, r.header.Get("X-Version"))
		}
		if i == 1 {
			hdr, body, ok := e.c.FastHit([]byte(Key(httptest.NewRequest("GET", e.origin.URL+"/a", nil))), false, "", nil)
			if !ok || len(body) != 12 || !strings.Contains(string(hdr), "\r\nContent-Length: 12\r\n") || strings.Contains(string(hdr), "999") {
				t.Errorf("fast hit: ok %v, header %q, body %q", ok, hdr, body)
			}
		}
	}
	if e.hits.Load() != 2 {
		t.Errorf("origin hits %d, want 2", e.hits.Load())
	}
	if st, _ := e.c.lookup(Key(httptest.NewRequest("GET", e.origin.URL+"/a", nil)), http.Header{}); st == nil {
		t.Errorf("nothing stored")
	} else if cl := st.header.Get("Content-Length"); cl != "12" {
		t.Errorf("stored Content-Length %q, want 12 (the 304's replaced it)", cl)
	}
}

// TestAgeAfterValidationAndOnHead: Age is sent on every response served
// from the cache (RFC 9111 section 4 and 5.1): on one served after a 304
// (computed from the 304's Age) and on a HEAD answered from a stored GET.
func TestAgeAfterValidationAndOnHead(t *testing.T) {
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=10")
		w.Header().Set("ETag", `"x"`)
		if r.Header.Get("If-None-Match") == `"x"` {
			w.Header().Set("Age", "7") // the 304 came through another cache
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, "v%d", n)
	})
	e.do("GET", "/a")
	e.clk.Advance(3 * time.Second)
	if r := e.do("HEAD", "/a"); r.header.Get("Age") != "3" || !strings.Contains(r.header.Get("Cache-Status"), "hit") {
		t.Errorf("HEAD from a stored GET: Age %q, Cache-Status %q; want Age 3 on a hit", r.header.Get("Age"), r.header.Get("Cache-Status"))
	}
	hdr, _, ok := e.c.FastHit([]byte(Key(httptest.NewRequest("GET", e.origin.URL+"/a", nil))), true, "", nil)
	if !ok || !strings.Contains(string(hdr), "\r\nAge: 3\r\n") {
		t.Errorf("fast HEAD hit: ok %v, header %q; want Age: 3", ok, hdr)
	}
	e.clk.Advance(20 * time.Second)
	r := e.do("GET", "/a")
	e.wantBody(r, "v1")
	if !strings.Contains(r.header.Get("Cache-Status"), "fwd-status=304") || r.header.Get("Age") != "7" {
		t.Errorf("after validation: Age %q, Cache-Status %q; want Age 7 (the 304's)", r.header.Get("Age"), r.header.Get("Cache-Status"))
	}
	e.clk.Advance(2 * time.Second)
	if r := e.do("HEAD", "/a"); r.header.Get("Age") != "9" {
		t.Errorf("HEAD after validation: Age %q, want 9", r.header.Get("Age"))
	}
	e.clk.Advance(20 * time.Second)
	r = e.do("HEAD", "/a") // stale: validated with a conditional HEAD
	if !strings.Contains(r.header.Get("Cache-Status"), "fwd-status=304") || r.header.Get("Age") != "7" {
		t.Errorf("HEAD validated: Age %q, Cache-Status %q; want Age 7", r.header.Get("Age"), r.header.Get("Cache-Status"))
	}
}

// TestUnsafeMethodsWriteThroughAndInvalidate: requests with an unsafe
// method (POST, PUT, PATCH, DELETE, and a method the cache doesn't know)
// go to the origin, their answer is the origin's, and a non-error answer
// invalidates the stored response for the target URI (RFC 9111 section
// 4 and 4.4).
func TestUnsafeMethodsWriteThroughAndInvalidate(t *testing.T) {
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE", "FROB"} {
		t.Run(m, func(t *testing.T) {
			var mu sync.Mutex
			var seen []string
			e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
				mu.Lock()
				seen = append(seen, r.Method)
				mu.Unlock()
				if r.Method != http.MethodGet {
					w.Header().Set("X-Written", r.Method)
					w.WriteHeader(http.StatusAccepted)
					return
				}
				w.Header().Set("Cache-Control", "max-age=100")
				fmt.Fprintf(w, "v%d", n)
			})
			e.wantBody(e.do("GET", "/a"), "v1")
			e.wantBody(e.do("GET", "/a"), "v1")
			r := e.do(m, "/a")
			if r.code != http.StatusAccepted || r.header.Get("X-Written") != m || !strings.Contains(r.header.Get("Cache-Status"), "fwd=method") {
				t.Fatalf("%s: %d, X-Written %q, Cache-Status %q; want the origin's 202", m, r.code, r.header.Get("X-Written"), r.header.Get("Cache-Status"))
			}
			e.wantBody(e.do("GET", "/a"), "v3")
			mu.Lock()
			defer mu.Unlock()
			if fmt.Sprint(seen) != fmt.Sprint([]string{"GET", m, "GET"}) {
				t.Fatalf("origin saw %v", seen)
			}
		})
	}
}
