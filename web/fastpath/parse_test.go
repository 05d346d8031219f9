package fastpath

import (
	"net/http"
	"net/textproto"
	"strings"
	"testing"

	"github.com/applayer/applayer/web/fastpath/fastpathtest"
)

// netHTTPRead parses the first request in raw as net/http's server does.
var netHTTPRead = fastpathtest.ReadAsNetHTTP

// TestSmugglingFormsRefused: the request forms used for smuggling and the
// framing net/http refuses are never taken by the fast path, and net/http
// itself refuses them (or, for those it accepts, sees a body or an end
// the fast path would not agree on).
func TestSmugglingFormsRefused(t *testing.T) {
	for _, tc := range []struct {
		name, raw    string
		netHTTPFails bool
	}{
		// net/http takes chunked and drops Content-Length (RFC 9112 6.3)
		{"CL+TE", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false},
		{"duplicate CL", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", true},
		{"bare CR", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", true},
		{"bare LF end", "GET / HTTP/1.1\r\nHost: a\r\nX: 1\nContent-Length: 1\r\n\r\nx", false},
		{"NUL", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", true},
		{"invalid name", "GET / HTTP/1.1\r\nHost: a\r\nX(A): 1\r\n\r\n", true},
		{"space before colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A : 1\r\n\r\n", true},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n", false},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", true},
		{"no host", "GET / HTTP/1.1\r\n\r\n", true},
		{"bad host", "GET / HTTP/1.1\r\nHost: a<b\r\n\r\n", true},
		{"chunked", "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false},
		{"body", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx", false},
		{"expect", "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n", false},
		{"upgrade", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false},
		{"HTTP/1.0", "GET / HTTP/1.0\r\n\r\n", false},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false},
		{"POST", "POST / HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"lower-case method", "get / HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"percent", "GET /a%20b HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"leading CRLF", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := []byte(tc.raw)
			var r Request
			if end, _ := ScanHead(raw); end > 0 && Parse(raw[:end], &r) {
				t.Errorf("fast path takes %q", tc.raw)
			}
			_, _, err := netHTTPRead(raw)
			if tc.netHTTPFails && err == nil {
				t.Errorf("net/http accepts %q", tc.raw)
			}
		})
	}
}

// TestParse: what the fast path takes, and the view it builds.
func TestParse(t *testing.T) {
	raw := "HEAD /a/b.txt?x=1 HTTP/1.1\r\nhost: Example.com:80\r\nConnection: close\r\nX-A:  v  \r\n\r\n"
	var r Request
	end, done := ScanHead([]byte(raw + "GET"))
	if end != len(raw) || !done {
		t.Fatalf("ScanHead = %d %v, want %d true", end, done, len(raw))
	}
	if !Parse([]byte(raw), &r) {
		t.Fatal("not taken")
	}
	if !r.Head || string(r.Method) != "HEAD" || string(r.Path) != "/a/b.txt" || string(r.Query) != "x=1" ||
		string(r.Host) != "Example.com:80" || !r.Close || len(r.Fields) != 3 {
		t.Fatalf("view %+v", r)
	}
	if v, ok, dup := r.Get("x-a"); !ok || dup || string(v) != "v" {
		t.Errorf("Get(x-a) = %q %v %v", v, ok, dup)
	}
	for _, partial := range []string{"GET / HTTP/1.1\r\nHost: a\r\n", "GET / HTTP/1.1\r\nHost: a\r\n\r"} {
		if end, done := ScanHead([]byte(partial)); end != 0 || done {
			t.Errorf("ScanHead(%q) = %d %v, want more", partial, end, done)
		}
	}
	b := []byte(raw)
	if n := testing.AllocsPerRun(100, func() { Parse(b, &r) }); n != 0 {
		t.Errorf("Parse allocates %v times", n)
	}
}

// FuzzParse: every request the fast path takes, net/http's server parses
// from the same bytes to the same framing (end of header, no body), method,
// target, version, Host, path and query, and fields (names canonical,
// values as textproto reads them); Parse never panics.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"HEAD /x?y HTTP/1.1\r\nHost: A:80\r\nAccept-Encoding: gzip\r\nIf-None-Match: \"x\"\r\n\r\n",
		"GET http://h/p HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX:\t\xff \r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost:\r\nRange: bytes=0-1\r\n\r\n",
		"GET /a;b=c:d@e HTTP/1.1\r\nHost: [::1]:8\r\nConnection: CLOSE\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var r Request
		end, _ := ScanHead(raw)
		if end == 0 || !Parse(raw[:end], &r) {
			return
		}
		req, nend, err := netHTTPRead(raw)
		if err != nil {
			t.Fatalf("fast path takes %q, net/http refuses: %v", raw[:end], err)
		}
		if nend != end || req.ContentLength != 0 || len(req.TransferEncoding) > 0 {
			t.Fatalf("%q: fast path header ends at %d, net/http at %d (body %d %v)", raw, end, nend, req.ContentLength, req.TransferEncoding)
		}
		if req.Method != string(r.Method) || req.RequestURI != string(r.Target) || req.Proto != "HTTP/1.1" {
			t.Fatalf("%q: net/http reads %s %s %s", raw, req.Method, req.RequestURI, req.Proto)
		}
		if len(r.Path) > 0 && (req.URL.Path != string(r.Path) || req.URL.RawQuery != string(r.Query)) {
			t.Fatalf("%q: path %q query %q, net/http %q %q", raw, r.Path, r.Query, req.URL.Path, req.URL.RawQuery)
		}
		if len(r.Path) == 0 && !req.URL.IsAbs() {
			t.Fatalf("%q: not absolute for net/http", raw)
		}
		if len(r.Path) > 0 && req.Host != string(r.Host) {
			t.Fatalf("%q: Host %q, net/http %q", raw, r.Host, req.Host)
		}
		if r.Close != req.Close {
			t.Fatalf("%q: close %v, net/http %v", raw, r.Close, req.Close)
		}
		got := http.Header{}
		for _, fl := range r.Fields {
			if k := textproto.CanonicalMIMEHeaderKey(string(fl.Name)); k != "Host" {
				got[k] = append(got[k], string(fl.Value))
			}
		}
		if len(got) != len(req.Header) {
			t.Fatalf("%q: fields %v, net/http %v", raw, got, req.Header)
		}
		for k, vs := range req.Header {
			if strings.Join(got[k], "\x00") != strings.Join(vs, "\x00") {
				t.Fatalf("%q: field %s = %q, net/http %q", raw, k, got[k], vs)
			}
		}
	})
}
