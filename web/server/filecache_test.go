package server

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/config"
)

// TestFileCacheRevalidation: a cached file that changes on disk, is
// deleted, or is replaced by a PUT is served fresh (the cache re-stats it;
// here FileCacheValid is 1ns so every request does).
func TestFileCacheRevalidation(t *testing.T) {
	run(t, func(c *Config) { c.Sites[0].FileCacheValid = config.Duration(time.Nanosecond) }, func(t *testing.T, c *conn) {
		p := filepath.Join(c.e.root, "changing-"+filepath.Base(c.p.name)+".txt")
		if err := os.WriteFile(p, []byte("one\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		path := "/" + filepath.Base(p)
		want(t, "first", string(c.get(path, nil).body), "one\n")
		want(t, "cached", string(c.get(path, nil).body), "one\n")
		if err := os.WriteFile(p, []byte("second\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := c.get(path, nil)
		want(t, "after change", string(r.body), "second\n")
		want(t, "after change Content-Length", r.ContentLength, 7)
		os.Remove(p)
		want(t, "after delete", c.get(path, nil).StatusCode, 404)
	})
}

// TestFileCachePut: a PUT drops the cached copy at once, even with a long
// validity.
func TestFileCachePut(t *testing.T) {
	run(t, func(c *Config) { c.Sites[0].FileCacheValid = config.Duration(time.Hour) }, func(t *testing.T, c *conn) {
		path := "/put-" + filepath.Base(c.p.name) + ".txt"
		want(t, "create", c.do("PUT", path, nil, strings.NewReader("v1")).StatusCode, 201)
		want(t, "v1", string(c.get(path, nil).body), "v1")
		want(t, "replace", c.do("PUT", path, nil, strings.NewReader("v22")).StatusCode, 204)
		want(t, "v2", string(c.get(path, nil).body), "v22")
	})
}

// TestServeEntryConditions checks the cached path's own precondition
// handling against http.ServeContent's answers for the same requests.
func TestServeEntryConditions(t *testing.T) {
	dir := t.TempDir()
	body := []byte("hello, cache\n")
	p := filepath.Join(dir, "f.txt")
	os.WriteFile(p, body, 0o644)
	os.Chtimes(p, fileTime, fileTime)
	fi, _ := os.Stat(p)
	site, err := newFileSite(Site{Root: dir, Index: []string{"index.html"}, FileCacheValid: config.Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	defer site.close()
	etag := `"d-1816c11f12b67800"` // 13 bytes, fileTime in ns (hex), not computed by ETag
	lm := fi.ModTime().UTC().Format(http.TimeFormat)
	before := fi.ModTime().Add(-time.Hour).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		name   string
		method string
		hdr    map[string]string
		code   int
	}{
		{"plain", "GET", nil, 200},
		{"head", "HEAD", nil, 200},
		{"inm match", "GET", map[string]string{"If-None-Match": etag}, 304},
		{"inm weak", "GET", map[string]string{"If-None-Match": "W/" + etag}, 304},
		{"inm list", "GET", map[string]string{"If-None-Match": `"x", ` + etag}, 304},
		{"inm star", "GET", map[string]string{"If-None-Match": "*"}, 304},
		{"inm other", "GET", map[string]string{"If-None-Match": `"x"`}, 200},
		{"inm malformed", "GET", map[string]string{"If-None-Match": `x`}, 200},
		{"inm beats ims", "GET", map[string]string{"If-None-Match": `"x"`, "If-Modified-Since": lm}, 200},
		{"ims equal", "GET", map[string]string{"If-Modified-Since": lm}, 304},
		{"ims before", "GET", map[string]string{"If-Modified-Since": before}, 200},
		{"ims bad", "GET", map[string]string{"If-Modified-Since": "yesterday"}, 200},
		{"range", "GET", map[string]string{"Range": "bytes=0-4"}, 206},
		{"if-match fails", "GET", map[string]string{"If-Match": `"x"`}, 412},
		{"if-match ok", "GET", map[string]string{"If-Match": etag}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range 2 { // the first request fills the cache, the second is served from it
				req := httptest.NewRequest(tc.method, "/f.txt", nil)
				for k, v := range tc.hdr {
					req.Header.Set(k, v)
				}
				w := httptest.NewRecorder()
				site.ServeHTTP(w, req)
				want(t, "status", w.Code, tc.code)
				if tc.code == 304 {
					want(t, "304 ETag", w.Header().Get("ETag"), etag)
					want(t, "304 Content-Type", w.Header().Get("Content-Type"), "")
					want(t, "304 body", w.Body.Len(), 0)
				}
				if tc.code == 200 {
					want(t, "Content-Length", w.Header().Get("Content-Length"), len(body))
					want(t, "Last-Modified", w.Header().Get("Last-Modified"), lm)
					if tc.method == "GET" {
						want(t, "body", w.Body.String(), string(body))
					}
				}
				if i == 1 && site.cache.get("/f.txt") == nil {
					t.Error("not cached after a request")
				}
			}
		})
	}
}

func TestETagListMatches(t *testing.T) {
	for _, tc := range []struct {
		list, etag string
		ok         bool
	}{
		{`"a"`, `"a"`, true},
		{`W/"a"`, `"a"`, true},
		{` "b" , "a"`, `"a"`, true},
		{`"b"`, `"a"`, false},
		{`*`, `"a"`, true},
		{``, `"a"`, false},
		{`"a`, `"a"`, false},
		{`a`, `"a"`, false},
		{`"a"`, `W/"a"`, true},
	} {
		if got := etagListMatches(tc.list, tc.etag); got != tc.ok {
			t.Errorf("etagListMatches(%q, %q) = %v, want %v", tc.list, tc.etag, got, tc.ok)
		}
	}
}

// BenchmarkServeEntry measures the cached path's handler cost (no network).
func BenchmarkServeEntry(b *testing.B) {
	dir := b.TempDir()
	os.WriteFile(filepath.Join(dir, "1k.txt"), make([]byte, 1024), 0o644)
	site, _ := newFileSite(Site{Root: dir, FileCacheValid: config.Duration(time.Hour)})
	defer site.close()
	req := httptest.NewRequest("GET", "/1k.txt", nil)
	w := &discardWriter{h: http.Header{}}
	site.ServeHTTP(w, req)
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		site.ServeHTTP(w, req)
	}
}

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}
