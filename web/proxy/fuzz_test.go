package proxy

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/web/cache"
	"github.com/applayer/applayer/web/fastpath"
	"github.com/applayer/applayer/web/fastpath/fastpathtest"
)

// FuzzFastPath feeds arbitrary byte streams (pipelined requests) to the
// fast path's framing and parser, as serveFast runs them, and to net/http.
// It must never panic, and every request the fast path answers must be
// one net/http's server parses from the same bytes: the same start and
// end (no body), a GET or HEAD with the same cache key, accepted by the
// server's own checks (Host, field names and values). The requests after
// the first the fast path hands over are net/http's alone.
func FuzzFastPath(f *testing.F) {
	f.Add([]byte("GET /obj HTTP/1.1\r\nHost: site\r\n\r\n"))
	f.Add([]byte("HEAD http://Example.com:80/obj HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n"))
	f.Add([]byte("GET /obj HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"))
	f.Add([]byte("GET /obj HTTP/1.1\r\nCache-Control: no-cache\r\n\r\n"))
	f.Add([]byte("GET  HTTP/1.1\r\n\r\n"))
	f.Add([]byte("GET /obj HTTP/1.1\r\nHost: site\r\n\r\nHEAD /obj HTTP/1.1\r\nHost: SITE:80\r\n\r\nGET /obj HTTP/1.1\r\nHost: site\r\n\r\n"))
	f.Add([]byte("GET /obj HTTP/1.1\r\nHost: site\r\nX-A: 1\nContent-Length: 5\r\n\r\nGET /obj HTTP/1.1\r\nHost: site\r\n\r\n"))
	f.Add([]byte("GET /obj HTTP/1.1\r\nHost: site\r\nX-A: a\rb\r\n\r\n"))
	f.Add([]byte("GET /obj HTTP/1.1\r\nHost: site\r\nX-A: a\x00b\r\n\r\n"))
	f.Add([]byte("GET /obj HTTP/1.1\r\nHost: site\r\nX-A:\t\xffb \r\n\r\nGET /obj HTTP/1.1\r\nHost: site\r\nContent-Length: 2\r\n\r\nab"))
	f.Add([]byte("GET /obj HTTP/1.1\r\nHost: site\r\n\r\n\r\nGET /obj HTTP/1.1\r\nHost: site\r\n\r\n"))
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Write([]byte("hello"))
	}))
	s, err := New(Config{Sites: []Site{{Host: "*", Origins: []string{origin.Listener.Addr().String()}}}, Forward: ptr(true),
		MaxHeaderBytes: 4096}, service.Deps{Now: func() time.Time { return time.Unix(1e9, 0) }})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		s.cache.Close()
		s.tr.CloseIdleConnections()
		origin.Close()
	})
	// store one object so the parser's lookups can hit
	s.cache.ServeHTTP(discard{}, httptest.NewRequest("GET", "http://site/obj", nil))
	f.Fuzz(func(t *testing.T, stream []byte) {
		type frame struct {
			start, end int
			key        string
			head       bool
		}
		var fast []frame
		var req fastpath.Request
		for off := 0; ; {
			b := stream[off:]
			if len(b) > fastpath.BufSize {
				b = b[:fastpath.BufSize]
			}
			end, _ := fastpath.ScanHead(b)
			if end == 0 || end > s.cfg.MaxHeaderBytes || !fastpath.Parse(b[:end], &req) {
				break
			}
			key, ok := s.fastKey(nil, &req)
			if !ok {
				break
			}
			if _, _, hit := s.cache.FastHit(key, req.Head, s.via, nil); !hit {
				break
			}
			fast = append(fast, frame{off, off + end, string(key), req.Head})
			off += end
		}
		if len(fast) == 0 {
			return
		}
		rd := bytes.NewReader(stream)
		br := bufio.NewReader(rd)
		prev := 0
		for i, fr := range fast {
			req, err := http.ReadRequest(br)
			end := len(stream) - rd.Len() - br.Buffered()
			if err == nil {
				err = fastpathtest.ServerChecks(req, stream[prev:end])
			}
			if err != nil {
				t.Fatalf("fast path answered request %d %q that net/http refuses: %v", i, stream[fr.start:fr.end], err)
			}
			if req.ContentLength != 0 || len(req.TransferEncoding) > 0 {
				t.Fatalf("request %d: net/http sees a body (length %d, %v)", i, req.ContentLength, req.TransferEncoding)
			}
			if prev != fr.start || end != fr.end {
				t.Fatalf("request %d: fast path framed bytes %d-%d, net/http %d-%d of %q", i, fr.start, fr.end, prev, end, stream)
			}
			prev = end
			if want := map[bool]string{false: http.MethodGet, true: http.MethodHead}[fr.head]; req.Method != want {
				t.Fatalf("request %d: fast path answered %s, net/http read %q", i, want, req.Method)
			}
			u := *req.URL
			if !u.IsAbs() {
				u.Scheme, u.Host = "http", req.Host
			}
			if k := cache.Key(&http.Request{URL: &u, Host: u.Host}); k != fr.key {
				t.Fatalf("request %d: fast path key %q, net/http's %q", i, fr.key, k)
			}
		}
	})
}

func ptr[T any](v T) *T { return &v }

type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

// originDialer sends every outbound connection to one address, so fuzzed
// request targets naming any host reach only the test origin.
type originDialer struct{ addr string }

func (d originDialer) DialContext(ctx context.Context, network, _ string) (net.Conn, error) {
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", d.addr)
}

// FuzzProxyRequest feeds arbitrary requests (request-target, Via,
// Connection and any other fields) to the proxy's general path. It must
// never panic, and:
//   - every response carries our Via entry;
//   - a request whose Via already names us is refused with 508 and never
//     forwarded;
//   - what reaches the origin carries no hop-by-hop field and no field
//     the client's Connection header named, ends its Via with our entry,
//     and has X-Forwarded-For set to the real (untrusted) peer alone.
func FuzzProxyRequest(f *testing.F) {
	f.Add([]byte("GET http://example.com/a HTTP/1.1\r\nHost: example.com\r\nConnection: X-Secret, keep-alive\r\nX-Secret: 1\r\nKeep-Alive: 5\r\n\r\n"))
	f.Add([]byte("GET /a HTTP/1.1\r\nHost: site\r\nVia: 1.0 other, 1.1 fuzzcache\r\n\r\n"))
	f.Add([]byte("GET /a HTTP/1.1\r\nHost: site\r\nVia: 1.1 FuzzCache (comment)\r\n\r\n"))
	f.Add([]byte("POST http://h:8080/x?y HTTP/1.1\r\nHost: h:8080\r\nContent-Length: 3\r\nConnection: close, Via\r\nVia: 1.1 a\r\n\r\nabc"))
	f.Add([]byte("GET https://h/ HTTP/1.1\r\nHost: h\r\n\r\n"))
	f.Add([]byte("GET * HTTP/1.1\r\nHost: h\r\nProxy-Connection: keep-alive\r\nUpgrade: websocket\r\nTE: trailers\r\n\r\n"))
	f.Add([]byte("GET //h/a HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\nForwarded: for=10.0.0.1\r\n\r\n"))
	f.Add([]byte("GET /a HTTP/1.1\r\nHost: h\r\nX-Forwarded-Host: evil\r\nx-forwarded-proto: https\r\nX-Original-URL: /admin\r\n\r\n"))
	f.Add([]byte("GET http://user@h:80/a HTTP/1.0\r\nConnection: X-Forwarded-For, Cache-Control\r\nCache-Control: no-cache\r\n\r\n"))
	var hits atomic.Int64
	var mu sync.Mutex
	var got http.Header
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Clone()
		mu.Unlock()
		hits.Add(1)
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Connection", "X-Origin-Hop")
		w.Header().Set("X-Origin-Hop", "1")
		w.Write([]byte("ok"))
	}))
	s, err := New(Config{Name: "fuzzcache", Sites: []Site{{Host: "*", Origins: []string{origin.Listener.Addr().String()}}},
		Forward: ptr(true), Cache: cache.Config{FetchTimeout: config.Duration(5 * time.Second)},
		AllowDestinations: []string{"127.0.0.0/8"}},
		service.Deps{Dialer: originDialer{origin.Listener.Addr().String()}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		s.cache.Close()
		s.tr.CloseIdleConnections()
		origin.Close()
	})
	f.Fuzz(func(t *testing.T, raw []byte) {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil || req.Method == http.MethodConnect {
			return // net/http refuses it before us; CONNECT needs a real connection
		}
		req.RemoteAddr = "127.0.0.1:4242"
		clientConn := append([]string(nil), req.Header["Connection"]...)
		looped := false
		for _, line := range req.Header["Via"] {
			for _, hop := range strings.Split(line, ",") {
				if f := strings.Fields(hop); len(f) >= 2 && strings.EqualFold(f[1], "fuzzcache") {
					looped = true
				}
			}
		}
		before := hits.Load()
		w := httptest.NewRecorder()
		func() {
			defer func() {
				if v := recover(); v != nil && v != http.ErrAbortHandler {
					t.Fatalf("panic: %v", v)
				}
			}()
			s.ServeHTTP(w, req)
		}()
		if via := strings.Join(w.Header()["Via"], ", "); !strings.HasSuffix(via, "1.1 fuzzcache") {
			t.Fatalf("response Via %q lacks our entry (status %d)", via, w.Code)
		}
		if w.Header().Get("X-Origin-Hop") != "" {
			t.Fatalf("a field the origin's Connection named reached the client")
		}
		reached := hits.Load() != before
		if looped {
			if w.Code != http.StatusLoopDetected || reached {
				t.Fatalf("looped request: status %d, forwarded %v; want 508, not forwarded", w.Code, reached)
			}
			return
		}
		if !reached {
			return
		}
		mu.Lock()
		h := got
		mu.Unlock()
		for _, f := range append([]string{"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Trailer", "Upgrade", "Proxy-Authorization"}, untrustedForwarding[:]...) {
			if _, ok := h[f]; ok {
				t.Fatalf("hop-by-hop or untrusted field %s reached the origin: %q", f, h[f])
			}
		}
		for _, line := range clientConn {
			for _, name := range strings.Split(line, ",") {
				name = http.CanonicalHeaderKey(strings.TrimSpace(name))
				switch name {
				case "", "Via", "X-Forwarded-For", "User-Agent", "Accept-Encoding", "Content-Length", "Host":
					continue // ours, or set by the outbound transport
				}
				if _, ok := h[name]; ok {
					t.Fatalf("field %s named in Connection reached the origin", name)
				}
			}
		}
		if vs := h["Via"]; len(vs) == 0 || !strings.HasSuffix(vs[len(vs)-1], "1.1 fuzzcache") {
			t.Fatalf("origin Via %q: our entry is not last", vs)
		}
		if xff := h["X-Forwarded-For"]; len(xff) != 1 || xff[0] != "127.0.0.1" {
			t.Fatalf("origin X-Forwarded-For %q, want the peer alone", xff)
		}
	})
}
