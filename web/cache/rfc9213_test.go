package cache

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

// cdnConfig is a CDN edge's cache: its own targeted field first, then
// CDN-Cache-Control (RFC 9213 section 2.1's target list).
func cdnConfig(strip bool) Config {
	return Config{TargetedCacheControl: []string{"KingCDN-Cache-Control", "CDN-Cache-Control"}, StripTargeted: strip}
}

// isHit reports whether a response came from the cache.
func isHit(r resp) bool { return strings.Contains(r.header.Get("Cache-Status"), "; hit") }

// RFC 9213 section 2.1: a cache with a target list uses the first field
// of its list with a valid, non-empty value and ignores Cache-Control
// and Expires; absent, empty or invalid, it falls back to them.
func TestTargetedCacheControl(t *testing.T) {
	cases := []struct {
		name     string
		fields   []string
		freshFor time.Duration // a hit after this (0: never stored as fresh)
		staleBy  time.Duration // a miss after this
	}{
		{"CDN-Cache-Control overrides Cache-Control", []string{"Cache-Control", "max-age=10", "CDN-Cache-Control", "max-age=100"}, 99 * time.Second, 101 * time.Second},
		{"CDN-Cache-Control makes no-store cacheable for the CDN", []string{"Cache-Control", "no-store", "CDN-Cache-Control", "max-age=60"}, 59 * time.Second, 61 * time.Second},
		{"Expires ignored with a targeted field", []string{"Expires", "Thu, 01 Jan 2026 13:00:00 GMT", "CDN-Cache-Control", "max-age=30"}, 29 * time.Second, 31 * time.Second},
		{"the first of the target list wins", []string{"CDN-Cache-Control", "max-age=10", "Kingcdn-Cache-Control", "max-age=200"}, 199 * time.Second, 201 * time.Second},
		{"an invalid first field falls to the next", []string{"KingCDN-Cache-Control", "max-age=[10]", "CDN-Cache-Control", "max-age=50"}, 49 * time.Second, 51 * time.Second},
		{"an empty field is ignored", []string{"CDN-Cache-Control", "", "Cache-Control", "max-age=40"}, 39 * time.Second, 41 * time.Second},
		{"an invalid field is ignored", []string{"CDN-Cache-Control", "max-age=10,", "Cache-Control", "max-age=40"}, 39 * time.Second, 41 * time.Second},
		{"a field not on the list changes nothing", []string{"Other-CDN-Cache-Control", "max-age=999", "Cache-Control", "max-age=20"}, 19 * time.Second, 21 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, cdnConfig(false), counting(tc.fields...))
			e.wantBody(e.do("GET", "/a"), "v1")
			e.clk.Advance(tc.freshFor)
			if r := e.do("GET", "/a"); !isHit(r) || r.body != "v1" {
				t.Fatalf("after %v: %q, Cache-Status %q, want a hit", tc.freshFor, r.body, r.header.Get("Cache-Status"))
			}
			e.clk.Advance(tc.staleBy - tc.freshFor)
			e.wantBody(e.do("GET", "/a"), "v2")
		})
	}
}

// RFC 9213 section 2.1: the directives a targeted field must support
// (no-store, no-cache, private, must-revalidate) override a permissive
// Cache-Control.
func TestTargetedDirectivesPreventReuse(t *testing.T) {
	for _, tc := range []struct{ name, cdn string }{
		{"no-store", "no-store"},
		{"private", "private"},
		{"no-cache", "no-cache"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, cdnConfig(false), counting("Cache-Control", "public, max-age=600", "CDN-Cache-Control", tc.cdn, "ETag", `"x"`))
			e.do("GET", "/a")
			if r := e.do("GET", "/a"); isHit(r) {
				t.Errorf("CDN-Cache-Control: %s: reused as a hit (%q)", tc.cdn, r.header.Get("Cache-Status"))
			}
		})
	}
	t.Run("must-revalidate", func(t *testing.T) {
		e := newEnv(t, cdnConfig(false), counting("Cache-Control", "max-age=600", "CDN-Cache-Control", "max-age=10, must-revalidate"))
		e.do("GET", "/a")
		e.clk.Advance(20 * time.Second)
		e.origin.Close() // upstream gone: a stale must-revalidate response is not served
		if r := e.do("GET", "/a", "Cache-Control", "max-stale=100"); r.code != http.StatusGatewayTimeout && r.code != http.StatusBadGateway {
			t.Errorf("stale must-revalidate with origin down: %d %q", r.code, r.body)
		}
	})
}

// RFC 9213 section 3: CDN-Cache-Control is for the CDN's caches: a
// client-facing edge does not forward the fields of its target list
// downstream (on a miss, a hit from memory, and the fast path's wire
// header); a shield (StripTargeted off) keeps them for its edges; other
// fields pass.
func TestTargetedNotForwarded(t *testing.T) {
	for _, strip := range []bool{true, false} {
		t.Run(fmt.Sprint("strip=", strip), func(t *testing.T) {
			e := newEnv(t, cdnConfig(strip), counting("Cache-Control", "max-age=5", "CDN-Cache-Control", "max-age=60", "KingCDN-Cache-Control", "max-age=90", "Other-Cache-Control", "max-age=1"))
			miss := e.do("GET", "/a")
			hit := e.do("GET", "/a")
			for what, r := range map[string]resp{"miss": miss, "hit": hit} {
				_, has := r.header["Cdn-Cache-Control"]
				_, has2 := r.header["Kingcdn-Cache-Control"]
				if has != !strip || has2 != !strip {
					t.Errorf("%s: targeted fields present %v %v, want %v", what, has, has2, !strip)
				}
				if r.header.Get("Other-Cache-Control") != "max-age=1" || r.header.Get("Cache-Control") != "max-age=5" {
					t.Errorf("%s: other fields not passed: %v", what, r.header)
				}
			}
			hdr, _, ok := e.c.FastHit([]byte(Key(httptest.NewRequest("GET", e.origin.URL+"/a", nil))), false, "", nil)
			if !ok {
				t.Fatal("no fast hit")
			}
			if got := strings.Contains(string(hdr), "Cache-Control: max-age=60"); got == strip {
				t.Errorf("fast path header carries CDN-Cache-Control: %v, want %v\n%s", got, !strip, hdr)
			}
		})
	}
}

func TestValidDictionary(t *testing.T) {
	for v, want := range map[string]bool{
		"max-age=60": true, "max-age=60, must-revalidate": true, "no-store": true,
		`private="x"`: true, "max-age=60;a=1": true, "a=?1": true, "a=1.5": true, "a=tok/en": true,
		"": false, " ": false, "Max-Age=60": false, "max-age=60,": false, "max-age=[1]": false,
		`a="unterminated`: false, "a=1.2345": false, "a=1234567890123456": false, ",a": false, "a b": false,
	} {
		if got := validDictionary(v); got != want {
			t.Errorf("validDictionary(%q) = %v, want %v", v, got, want)
		}
	}
}

// RFC 9111 section 5.3 and RFC 9110 section 5.6.7: Expires in each of
// the three date formats a recipient must accept; an invalid date
// (including "0", and a zone in the wrong case: HTTP-date is case
// sensitive) means already expired; two Expires lines mean stale
// (section 4.2.1).
func TestExpiresEdgeCases(t *testing.T) {
	for _, tc := range []struct {
		name    string
		expires []string
		fresh   time.Duration // 0: stale at once
	}{
		{"IMF-fixdate", []string{"Thu, 01 Jan 2026 12:05:00 GMT"}, 5 * time.Minute},
		{"obsolete RFC 850 date", []string{"Thursday, 01-Jan-26 12:05:00 GMT"}, 5 * time.Minute},
		{"obsolete asctime date", []string{"Thu Jan  1 12:05:00 2026"}, 5 * time.Minute},
		{"0", []string{"0"}, 0},
		{"garbage", []string{"tomorrow"}, 0},
		{"lower-case zone", []string{"Thu, 01 Jan 2026 12:05:00 gmt"}, 0},
		{"not GMT", []string{"Thu, 01 Jan 2026 12:05:00 UTC"}, 0},
		{"in the past", []string{"Thu, 01 Jan 2026 11:00:00 GMT"}, 0},
		{"two lines", []string{"Thu, 01 Jan 2026 12:05:00 GMT", "Thu, 01 Jan 2026 12:10:00 GMT"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
				w.Header()["Expires"] = tc.expires
				fmt.Fprintf(w, "v%d", n)
			})
			e.do("GET", "/a")
			if tc.fresh == 0 {
				if r := e.do("GET", "/a"); isHit(r) {
					t.Errorf("Expires %q: a hit, want stale", tc.expires)
				}
				return
			}
			e.clk.Advance(tc.fresh - time.Second)
			if r := e.do("GET", "/a"); !isHit(r) {
				t.Errorf("Expires %q: not a hit %v later (%q)", tc.expires, tc.fresh-time.Second, r.header.Get("Cache-Status"))
			}
			e.clk.Advance(2 * time.Second)
			if r := e.do("GET", "/a"); isHit(r) {
				t.Errorf("Expires %q: still a hit after it", tc.expires)
			}
		})
	}
}

// RFC 9111 sections 1.2.2 and 4.2.1: max-age must be delta-seconds; an
// invalid value makes the response stale (it is not fresh for a
// guessed time), a huge one is taken as 2^31 seconds; of two max-age
// directives the first is used.
func TestMaxAgeInvalidValues(t *testing.T) {
	for _, tc := range []struct {
		cc    string
		fresh bool
	}{
		{"max-age=abc", false},
		{"max-age=-5", false},
		{"max-age=1.5", false},
		{"max-age=", false},
		{"max-age", false},
		{"max-age=99999999999999999999999", true},
		{"max-age=60, max-age=0", true},
		{"max-age=0, max-age=60", false},
	} {
		t.Run(tc.cc, func(t *testing.T) {
			e := newEnv(t, Config{}, counting("Cache-Control", tc.cc))
			e.do("GET", "/a")
			e.clk.Advance(30 * time.Second)
			if r := e.do("GET", "/a"); isHit(r) != tc.fresh {
				t.Errorf("Cache-Control %q: hit %v after 30s, want %v", tc.cc, isHit(r), tc.fresh)
			}
		})
	}
}

// RFC 9111 section 5.1: an Age that is not delta-seconds is ignored (the
// response is as old as Date says), a huge one makes it stale.
func TestAgeInvalidValues(t *testing.T) {
	for _, tc := range []struct {
		age   string
		fresh bool
	}{
		{"abc", true},
		{"-30", true},
		{"99999999999999999999", false},
		{"50", false}, // max-age=60: 50+30 > 60
	} {
		t.Run(tc.age, func(t *testing.T) {
			e := newEnv(t, Config{}, counting("Cache-Control", "max-age=60", "Age", tc.age))
			e.do("GET", "/a")
			e.clk.Advance(30 * time.Second)
			if r := e.do("GET", "/a"); isHit(r) != tc.fresh {
				t.Errorf("Age %q: hit %v after 30s, want %v", tc.age, isHit(r), tc.fresh)
			}
		})
	}
}

// RFC 9110 section 15.2 and RFC 8297: a proxy forwards 1xx responses it
// does not handle itself, so 103 Early Hints reach the client before the
// final response; the hints' fields do not leak into the final header.
func TestEarlyHintsForwarded(t *testing.T) {
	release := make(chan struct{})
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		delete(w.Header(), "Link")
		<-release
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "page")
	}))
	defer origin.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c, err := New(Config{}, tr, service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.URL.Scheme, r.URL.Host = "http", origin.Listener.Addr().String()
		c.ServeHTTP(w, r)
	}))
	defer front.Close()
	var mu sync.Mutex
	var hints []textproto.MIMEHeader
	got := make(chan struct{}, 1)
	ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		mu.Lock()
		hints = append(hints, h)
		mu.Unlock()
		if code == http.StatusEarlyHints {
			got <- struct{}{}
		}
		return nil
	}})
	req, _ := http.NewRequestWithContext(ctx, "GET", front.URL+"/", nil)
	done := make(chan *http.Response, 1)
	go func() {
		res, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	select {
	case <-got: // the hint arrived while the origin still holds the final response
	case <-time.After(10 * time.Second):
		t.Fatal("no 103 before the final response")
	}
	close(release)
	res := <-done
	if res == nil {
		return
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	mu.Lock()
	defer mu.Unlock()
	if len(hints) != 1 || hints[0].Get("Link") != "</style.css>; rel=preload; as=style" {
		t.Errorf("hints %v", hints)
	}
	if res.StatusCode != 200 || string(b) != "page" || res.Header.Get("Link") != "" {
		t.Errorf("final: %d %q Link %q", res.StatusCode, b, res.Header.Get("Link"))
	}
}

// RFC 9111 section 4.2.2: a heuristic lifetime is a fraction of the time
// since Last-Modified, capped. A large configured fraction of an old
// Last-Modified (an operator's "keep everything up to a minute") is the
// cap, not an overflowed, negative lifetime (which made every response
// stale and, once validated, fresh for ever).
func TestHeuristicLargeFractionCapped(t *testing.T) {
	e := newEnv(t, Config{HeuristicFraction: 1000, MaxHeuristic: 60e9}, counting("Last-Modified", "Mon, 01 Jan 1990 00:00:00 GMT"))
	e.do("GET", "/a")
	e.clk.Advance(59 * time.Second)
	if r := e.do("GET", "/a"); !isHit(r) || !strings.Contains(r.header.Get("Cache-Status"), "ttl=1") {
		t.Errorf("after 59s: Cache-Status %q, want a hit with ttl=1", r.header.Get("Cache-Status"))
	}
	e.clk.Advance(2 * time.Second)
	if r := e.do("GET", "/a"); isHit(r) {
		t.Errorf("after 61s: still a hit (%q)", r.header.Get("Cache-Status"))
	}
}
