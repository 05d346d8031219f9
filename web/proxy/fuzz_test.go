package proxy

import (
	"bufio"
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/service"
)

// FuzzFastPath feeds arbitrary request headers to the fast path's parser.
// It must never panic, and whatever it accepts net/http must parse as the
// same GET or HEAD request.
func FuzzFastPath(f *testing.F) {
	f.Add([]byte("GET /obj HTTP/1.1\r\nHost: site\r\n\r\n"))
	f.Add([]byte("HEAD http://Example.com:80/obj HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n"))
	f.Add([]byte("GET /obj HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"))
	f.Add([]byte("GET /obj HTTP/1.1\r\nCache-Control: no-cache\r\n\r\n"))
	f.Add([]byte("GET  HTTP/1.1\r\n\r\n"))
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Write([]byte("hello"))
	}))
	s, err := New(Config{Sites: []Site{{Host: "*", Origins: []string{origin.Listener.Addr().String()}}}, Forward: ptr(true)},
		service.Deps{Now: func() time.Time { return time.Unix(1e9, 0) }})
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
	f.Fuzz(func(t *testing.T, head []byte) {
		if !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
			head = append(head, "\r\n\r\n"...)
		}
		fc := &fastConn{s: s}
		if !fc.prepare(head) {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			t.Fatalf("fast path accepted %q that net/http rejects: %v", head, err)
		}
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			t.Fatalf("fast path accepted method %q", req.Method)
		}
	})
}

func ptr[T any](v T) *T { return &v }

type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}
