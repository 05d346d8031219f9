package cache

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/service"
)

// RFC 9111 section 4: when several stored responses could answer a
// request, the cache uses "the most recent response (as determined by the
// Date header field)" — not the one it received last.
func TestMostRecentByDate(t *testing.T) {
	for _, fromDisk := range []bool{false, true} {
		t.Run("disk="+strconv.FormatBool(fromDisk), func(t *testing.T) {
			var base time.Time
			dir := t.TempDir()
			e := newEnv(t, Config{Dir: dir}, func(w http.ResponseWriter, r *http.Request, n int64) {
				w.Header().Set("Cache-Control", "max-age=1000")
				switch n {
				case 1: // the newer response, received first, varies on the language
					w.Header().Set("Vary", "Accept-Language")
					w.Header().Set("Date", base.Format(http.TimeFormat))
				case 2: // an older response (e.g. from a lagging replica), received later
					w.Header().Set("Vary", "Accept-Encoding")
					w.Header().Set("Date", base.Add(-30*time.Second).Format(http.TimeFormat))
				}
				fmt.Fprintf(w, "v%d", n)
			})
			base = e.clk.Now()
			e.wantBody(e.do("GET", "/d", "Accept-Language", "en", "Accept-Encoding", "br"), "v1")
			e.clk.Advance(time.Second)
			// vary-miss for the first response (another language): the
			// second is stored alongside it, with another Vary.
			e.wantBody(e.do("GET", "/d", "Accept-Language", "fr", "Accept-Encoding", "gzip"), "v2")
			e.clk.Advance(time.Second)
			if fromDisk { // a restarted cache: both only in the disk tier
				c2, err := New(Config{Dir: dir}, e.tr, service.Deps{Now: e.clk.Now})
				if err != nil {
					t.Fatal(err)
				}
				defer c2.Close()
				e.c = c2
			}
			// Both stored responses match this request; v1 has the later Date.
			e.wantBody(e.do("GET", "/d", "Accept-Language", "en", "Accept-Encoding", "gzip"), "v1")
			if e.hits.Load() != 2 {
				t.Fatalf("origin hits %d, want 2", e.hits.Load())
			}
		})
	}
}

// Equal Dates fall back to the time of receipt: the response received
// later wins.
func TestMostRecentEqualDates(t *testing.T) {
	var date string
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=1000")
		w.Header().Set("Date", date)
		if n == 1 {
			w.Header().Set("Vary", "Accept-Language")
		} else {
			w.Header().Set("Vary", "Accept-Encoding")
		}
		fmt.Fprintf(w, "v%d", n)
	})
	date = e.clk.Now().Format(http.TimeFormat)
	e.do("GET", "/d", "Accept-Language", "en", "Accept-Encoding", "br")
	e.clk.Advance(time.Second)
	e.do("GET", "/d", "Accept-Language", "fr", "Accept-Encoding", "gzip")
	e.wantBody(e.do("GET", "/d", "Accept-Language", "en", "Accept-Encoding", "gzip"), "v2")
}

// RFC 9111 section 4.3.2: a client's If-Modified-Since is evaluated
// against the stored Last-Modified, or the stored Date when there is none.
func TestClientIfModifiedSinceUsesDate(t *testing.T) {
	e := newEnv(t, Config{}, counting("Cache-Control", "max-age=100"))
	date := e.clk.Now()
	e.wantBody(e.do("GET", "/a"), "v1")
	if r := e.do("GET", "/a", "If-Modified-Since", date.Add(time.Hour).Format(http.TimeFormat)); r.code != http.StatusNotModified {
		t.Fatalf("If-Modified-Since after Date: %d, want 304", r.code)
	}
	if r := e.do("GET", "/a", "If-Modified-Since", date.Format(http.TimeFormat)); r.code != http.StatusNotModified {
		t.Fatalf("If-Modified-Since equal to Date: %d, want 304", r.code)
	}
	r := e.do("GET", "/a", "If-Modified-Since", date.Add(-time.Hour).Format(http.TimeFormat))
	if r.code != http.StatusOK {
		t.Fatalf("If-Modified-Since before Date: %d, want 200", r.code)
	}
	e.wantBody(r, "v1")
	if e.hits.Load() != 1 {
		t.Fatalf("origin hits %d, want 1", e.hits.Load())
	}
}
