package cache

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

// scriptedOrigin answers each request by parsing the next raw response
// (status line, header, body) with net/http's client parser, as a real
// origin's bytes would be.
type scriptedOrigin struct {
	raws [][]byte
	n    int
}

func (o *scriptedOrigin) RoundTrip(r *http.Request) (*http.Response, error) {
	if o.n >= len(o.raws) {
		return nil, fmt.Errorf("origin: no more responses")
	}
	raw := o.raws[o.n]
	o.n++
	return http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), r)
}

var hopFields = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Proxy-Authenticate"}

// checkServed checks what every response served from the cache must be:
// an Age that is a non-negative integer, a Content-Length equal to the
// body's, no hop-by-hop field and no Set-Cookie (but the validating
// client's own, from the 304, when ownCookie).
func checkServed(t *testing.T, what string, w *httptest.ResponseRecorder, body []byte, ownCookie bool) {
	t.Helper()
	h := w.Result().Header
	age, err := strconv.ParseInt(h.Get("Age"), 10, 64)
	if err != nil || age < 0 {
		t.Fatalf("%s: Age %q", what, h.Get("Age"))
	}
	if w.Code != http.StatusNoContent && w.Code != http.StatusNotModified {
		if cl := h.Get("Content-Length"); cl != strconv.Itoa(len(body)) {
			t.Fatalf("%s: Content-Length %q for a %d-byte body", what, cl, len(body))
		}
	}
	if !bytes.Equal(w.Body.Bytes(), body) {
		t.Fatalf("%s: body %q, want the stored %q", what, w.Body.Bytes(), body)
	}
	for _, f := range hopFields {
		if _, ok := h[f]; ok {
			t.Fatalf("%s: hop-by-hop field %s stored: %q", what, f, h[f])
		}
	}
	if v, ok := h["Set-Cookie"]; ok && !ownCookie {
		t.Fatalf("%s: a stored response replays Set-Cookie %q", what, v)
	}
}

// FuzzOriginResponse runs arbitrary origin responses through the cache:
// the first is fetched and perhaps stored; after the clock moves past its
// lifetime, the second answers the validation (a 304 merges into the
// stored header, anything else replaces or passes). It must never panic,
// store only what RFC 9111 section 3 and the Set-Cookie policy allow, and
// serve what it stored with a valid Age and the stored body's length.
func FuzzOriginResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nETag: \"a\"\r\nContent-Length: 2\r\n\r\nhi"),
		[]byte("HTTP/1.1 304 Not Modified\r\nETag: \"a\"\r\nContent-Length: 99\r\nAge: 5\r\nSet-Cookie: s=1\r\nX-New: 1\r\n\r\n"), int64(100))
	f.Add([]byte("HTTP/1.1 200 OK\r\nLast-Modified: Mon, 01 Dec 2025 00:00:00 GMT\r\nSet-Cookie: a=b\r\n\r\nbody"),
		[]byte("HTTP/1.1 200 OK\r\n\r\n"), int64(10))
	f.Add([]byte("HTTP/1.1 200 OK\r\nCache-Control: s-maxage=10, no-cache=\"Set-Cookie\"\r\nSet-Cookie: a=b\r\nAge: 99999999999999999999\r\nDate: Thu, 01 Jan 2026 11:00:00 GMT\r\nConnection: X-A\r\nX-A: 1\r\n\r\nx"),
		[]byte("HTTP/1.1 304 Not Modified\r\nCache-Control: max-age=5, private=\"X-B\"\r\nX-B: 1\r\nDate: garbage\r\n\r\n"), int64(20))
	f.Add([]byte("HTTP/1.1 200 OK\r\nExpires: Thu, 01 Jan 2026 12:01:00 GMT\r\nVary: Accept\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
		[]byte("HTTP/1.1 503 Nope\r\n\r\n"), int64(61))
	f.Add([]byte("HTTP/1.1 404 Not Found\r\nCache-Control: public\r\nLast-Modified: Wed, 31 Dec 2025 12:00:00 GMT\r\n\r\n"),
		[]byte("HTTP/1.1 304 Not Modified\r\nLast-Modified: Wed, 31 Dec 2025 12:00:00 GMT\r\n\r\n"), int64(9000))
	f.Fuzz(func(t *testing.T, first, second []byte, later int64) {
		clk := testkit.NewClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
		o := &scriptedOrigin{raws: [][]byte{first, second}}
		c, err := New(Config{MaxObjectBytes: 1 << 16}, o, service.Deps{Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		serve := func() *httptest.ResponseRecorder {
			w := httptest.NewRecorder()
			func() {
				defer func() {
					if v := recover(); v != nil && v != http.ErrAbortHandler {
						panic(v)
					}
				}()
				c.ServeHTTP(w, httptest.NewRequest("GET", "http://origin.example/x", nil))
			}()
			return w
		}
		serve()
		res, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(first)), httptest.NewRequest("GET", "http://origin.example/x", nil))
		if err != nil {
			return
		}
		body, berr := io.ReadAll(res.Body)
		e, _ := c.lookup("http://origin.example/x", http.Header{})
		if e == nil {
			return
		}
		// stored: it was allowed to be
		cc := ParseCacheControl(res.Header)
		switch {
		case berr != nil:
			t.Fatalf("an incomplete response was stored (%v)", berr)
		case !understoodStatus(res.StatusCode):
			t.Fatalf("status %d stored", res.StatusCode)
		case cc.NoStore() && cc.flags&ccMustUnderstand == 0, cc.Private():
			t.Fatalf("stored despite Cache-Control %q", res.Header["Cache-Control"])
		case res.Header.Get("Vary") == "*":
			t.Fatalf("Vary: * stored")
		}
		if _, ok := res.Header["Set-Cookie"]; ok && !cc.excludes("Set-Cookie") {
			t.Fatalf("a response with Set-Cookie was stored")
		}
		if !bytes.Equal(e.body, body) {
			t.Fatalf("stored body %q, origin sent %q", e.body, body)
		}
		if e.lifetime < 0 || e.corrInitAge < 0 {
			t.Fatalf("lifetime %v, corrected initial age %v", e.lifetime, e.corrInitAge)
		}
		if len(e.varyNames) == 0 && e.lifetime > e.currentAge(clk.Now()) && !e.cc.NoCache() {
			checkServed(t, "hit", serve(), body, false)
		}
		// later: validation, with the second response
		if later < 0 {
			later = -later
		}
		clk.Advance(time.Duration(later%100000) * time.Second)
		w := serve()
		if w.Code == http.StatusNotModified || strings.Contains(w.Result().Header.Get("Cache-Status"), "fwd-status=304") {
			checkServed(t, "after a 304", w, body, true)
		}
		if e2, _ := c.lookup("http://origin.example/x", http.Header{}); e2 != nil {
			if _, ok := e2.header["Set-Cookie"]; ok {
				t.Fatalf("Set-Cookie stored after validation")
			}
			if e2.lifetime < 0 || e2.corrInitAge < 0 {
				t.Fatalf("after validation: lifetime %v, corrected initial age %v", e2.lifetime, e2.corrInitAge)
			}
		}
	})
}

// etagTag matches one entity-tag of an If-None-Match list (RFC 9110
// section 8.8.3): an optional W/ and a quoted opaque tag.
// (etagc is any byte but controls, space and DQUOTE; obs-text bytes
// need not be UTF-8: the negated class takes each as one character).
var etagTag = regexp.MustCompile(`^(W/)?"([^"\x00-\x20\x7f]*)"`)

// inmMatches is the reference evaluation of If-None-Match (RFC 9110
// section 13.1.2): "*", or a list of entity-tags one of which weakly
// matches etag. A malformed list matches nothing.
func inmMatches(list, etag string) bool {
	if etag == "" {
		return false
	}
	if strings.Trim(list, " \t") == "*" {
		return true
	}
	m := etagTag.FindStringSubmatch(etag)
	if m == nil || len(m[0]) != len(etag) {
		return false
	}
	want := m[2]
	s := list
	found := false
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			return found
		}
		t := etagTag.FindStringSubmatch(s)
		if t == nil {
			return false
		}
		if t[2] == want {
			found = true
		}
		s = strings.TrimLeft(s[len(t[0]):], " \t")
		if s != "" && s[0] != ',' {
			return false
		}
	}
}

// FuzzStoredConditionalRange asks a stored response with arbitrary
// Range, If-Range and If-None-Match values: a 304 exactly when the
// If-None-Match list matches (by a reference parser of entity-tag
// lists); a 206 only when If-Range allows, with a Content-Range that
// net/http's ServeContent gives for the same single range and the
// matching bytes; else the whole object, or 416 with "bytes */N".
func FuzzStoredConditionalRange(f *testing.F) {
	f.Add("bytes=0-3", "", "", `"v1"`)
	f.Add("bytes=-5", `"v1"`, "", `"v1"`)
	f.Add("bytes=10-", `W/"v1"`, `"x", W/"v1"`, `W/"v1"`)
	f.Add("bytes=0-1,4-5", "", `"a,b"`, `"a,b"`)
	f.Add("bytes=99-", "Thu, 01 Jan 2026 11:00:00 GMT", `*`, `"v1"`)
	f.Add("bytes=+1-+2", "", `"v1" "v2"`, `"v1"`)
	f.Add("items=0-1", "", `,,"v1",`, `"v1"`)
	f.Fuzz(func(t *testing.T, rng, ifRange, inm, etag string) {
		if !etagTag.MatchString(etag) || strings.ContainsAny(rng+ifRange+inm, "\r\n\x00") {
			return
		}
		// as net/http's parser hands field values over: without
		// leading or trailing whitespace
		rng, ifRange, inm = strings.Trim(rng, " \t"), strings.Trim(ifRange, " \t"), strings.Trim(inm, " \t")
		obj := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
		clk := testkit.NewClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
		raw := "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nETag: " + etag + "\r\nLast-Modified: Thu, 01 Jan 2026 11:00:00 GMT\r\nContent-Length: 36\r\n\r\n" + string(obj)
		c, err := New(Config{}, &scriptedOrigin{raws: [][]byte{[]byte(raw)}}, service.Deps{Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "http://o.example/x", nil))
		if e, _ := c.lookup("http://o.example/x", http.Header{}); e == nil || e.etag != etag {
			return // an ETag net/http's parser changed (trimmed): not this test's subject
		}
		r := httptest.NewRequest("GET", "http://o.example/x", nil)
		for k, v := range map[string]string{"Range": rng, "If-Range": ifRange, "If-None-Match": inm} {
			if v != "" {
				r.Header.Set(k, v)
			}
		}
		w := httptest.NewRecorder()
		c.ServeHTTP(w, r)
		got := w.Result()
		if !strings.Contains(got.Header.Get("Cache-Status"), "hit") {
			t.Fatalf("not answered from the stored object: %d %q", got.StatusCode, got.Header.Get("Cache-Status"))
		}
		matches := inm != "" && inmMatches(inm, etag)
		if (got.StatusCode == http.StatusNotModified) != (matches && strings.TrimSpace(rng) == "") {
			if !(rng != "" && got.StatusCode != http.StatusNotModified) {
				t.Fatalf("If-None-Match %q against %s: status %d, reference match %v", inm, etag, got.StatusCode, matches)
			}
		}
		rangeApplies := rng != "" && (ifRange == "" || strings.TrimSpace(ifRange) == etag && !strings.HasPrefix(etag, "W/") ||
			strings.TrimSpace(ifRange) == "Thu, 01 Jan 2026 11:00:00 GMT")
		switch got.StatusCode {
		case http.StatusNotModified:
		case http.StatusOK:
			if !bytes.Equal(w.Body.Bytes(), obj) {
				t.Fatalf("200 with body %q", w.Body.Bytes())
			}
		case http.StatusPartialContent:
			if !rangeApplies {
				t.Fatalf("206 though If-Range %q doesn't match %s", ifRange, etag)
			}
			var a, b, n int
			if _, err := fmt.Sscanf(got.Header.Get("Content-Range"), "bytes %d-%d/%d", &a, &b, &n); err != nil || n != len(obj) || a < 0 || a > b || b >= n {
				t.Fatalf("Content-Range %q", got.Header.Get("Content-Range"))
			}
			if !bytes.Equal(w.Body.Bytes(), obj[a:b+1]) || got.Header.Get("Content-Length") != strconv.Itoa(b-a+1) {
				t.Fatalf("206 %q: body %q, Content-Length %q", got.Header.Get("Content-Range"), w.Body.Bytes(), got.Header.Get("Content-Length"))
			}
			ref := httptest.NewRecorder()
			rr := httptest.NewRequest("GET", "/x", nil)
			rr.Header.Set("Range", rng)
			http.ServeContent(ref, rr, "", time.Time{}, bytes.NewReader(obj))
			if ref.Code == http.StatusPartialContent && !strings.HasPrefix(ref.Header().Get("Content-Type"), "multipart/") &&
				ref.Header().Get("Content-Range") != got.Header.Get("Content-Range") {
				t.Fatalf("Range %q: Content-Range %q, net/http's %q", rng, got.Header.Get("Content-Range"), ref.Header().Get("Content-Range"))
			}
		case http.StatusRequestedRangeNotSatisfiable:
			if !rangeApplies || got.Header.Get("Content-Range") != "bytes */36" {
				t.Fatalf("416 with Content-Range %q (If-Range %q)", got.Header.Get("Content-Range"), ifRange)
			}
		default:
			t.Fatalf("status %d", got.StatusCode)
		}
	})
}

// FuzzDiskTierFile opens a disk tier holding one arbitrary file (with a
// correct checksum appended when fix is set, so the metadata parser is
// reached) and serves its key: it must never panic, and whatever it
// serves must come from a file that decodes as a valid entry.
func FuzzDiskTierFile(f *testing.F) {
	meta := `{"v":2,"key":"http://o.example/x","vkey":"","status":200,"header":{"Cache-Control":["max-age=60"],"Age":["-3"],"Date":["Thu, 01 Jan 2026 12:00:00 GMT"]},"req_time":"2026-01-01T12:00:00Z","resp_time":"2026-01-01T12:00:00Z","corr_init_age_ns":-5}`
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(meta)))
	good := append(append(hdr[:], meta...), "body"...)
	f.Add(good, true)
	f.Add(good, false)
	f.Add([]byte{0, 0, 0, 2, '{', '}'}, true)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, true)
	f.Add([]byte(`{"v":2,"status":0,"header":null}`), true)
	f.Fuzz(fuzzDiskOnce)
}

func fuzzDiskOnce(t *testing.T, b []byte, fix bool) {
	{
		if fix {
			b = binary.BigEndian.AppendUint32(append([]byte(nil), b...), crc32.Checksum(b, castagnoli))
		}
		dir := t.TempDir()
		name := filepath.Join(dir, "0123456789abcdef0123456789abcdef.obj")
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
		clk := testkit.NewClock(time.Date(2026, 1, 1, 12, 0, 30, 0, time.UTC))
		c, err := New(Config{Dir: dir}, &scriptedOrigin{}, service.Deps{Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		de, derr := decodeEntry(b)
		key := "http://o.example/x"
		if derr == nil {
			if u, err := url.ParseRequestURI(de.key); err == nil && u.Scheme == "http" && u.Host != "" {
				key = de.key
			}
		}
		w := httptest.NewRecorder()
		func() {
			defer func() {
				if v := recover(); v != nil && v != http.ErrAbortHandler {
					panic(v)
				}
			}()
			c.ServeHTTP(w, httptest.NewRequest("GET", key, nil))
		}()
		if !strings.Contains(w.Result().Header.Get("Cache-Status"), "hit") {
			return
		}
		if derr != nil {
			t.Fatalf("served a hit from a file that doesn't decode: %v", derr)
		}
		if age, err := strconv.ParseInt(w.Result().Header.Get("Age"), 10, 64); err != nil || age < 0 {
			t.Fatalf("Age %q", w.Result().Header.Get("Age"))
		}
		if w.Code == http.StatusOK && !bytes.Equal(w.Body.Bytes(), de.body) {
			t.Fatalf("served %q, the file holds %q", w.Body.Bytes(), de.body)
		}
	}
}
