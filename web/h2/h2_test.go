package h2

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// staticFast answers GET /static/NAME with body bodies[NAME].
type staticFast struct{ bodies map[string][]byte }

func (f staticFast) ServeH2(r *Request, w *Response) bool {
	name, ok := strings.CutPrefix(r.Path, "/static/")
	if !ok {
		return false
	}
	b, ok := f.bodies[name]
	if !ok {
		return false
	}
	w.Status = 200
	w.Fields = append(w.Fields, hpack.HeaderField{Name: "content-length", Value: fmt.Sprint(len(b))})
	w.Body = b
	return true
}

// serve runs s on a loopback listener (h2c with prior knowledge) until
// the test ends.
func serve(t testing.TB, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { s.ServeConn(c, false) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// h2cClient is x/net/http2's client speaking h2c with prior knowledge.
func h2cClient() *http.Client {
	return &http.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}, Timeout: 10 * time.Second}
}

func testHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		n, err := io.Copy(w, r.Body)
		if err != nil {
			return
		}
		w.Header().Set("X-Sum", fmt.Sprint(n))
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		for i := range 3 {
			fmt.Fprintf(w, "part %d\n", i)
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s %s", r.Proto, r.Header.Get("X-Name"))
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(200 * time.Millisecond):
			io.WriteString(w, "slow done")
		}
	})
	return mux
}

func TestRequests(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 100_000) // 1.6 MB: beyond every window
	s := New(Config{}, testHandler(), staticFast{map[string][]byte{"big": big, "small": []byte("small")}})
	addr := serve(t, s)
	cl := h2cClient()
	get := func(t *testing.T, path string, hdr ...string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	tests := []struct {
		name, path string
		hdr        []string
		status     int
		body       string
	}{
		{"handler", "/hello", []string{"X-Name", "ann"}, 200, "hello HTTP/2.0 ann"},
		{"fast", "/static/small", nil, 200, "small"},
		{"flushed parts", "/stream", nil, 200, "part 0\npart 1\npart 2\n"},
		{"not found", "/nothing", nil, 404, "404 page not found\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := get(t, tc.path, tc.hdr...)
			if resp.StatusCode != tc.status || string(b) != tc.body || resp.ProtoMajor != 2 {
				t.Errorf("GET %s = %d %q (%s), want %d %q", tc.path, resp.StatusCode, b, resp.Proto, tc.status, tc.body)
			}
		})
	}
	t.Run("fast body beyond the windows", func(t *testing.T) {
		var wg sync.WaitGroup
		for range 8 { // concurrent streams share the connection window
			wg.Go(func() {
				_, b := get(t, "/static/big")
				if !bytes.Equal(b, big) {
					t.Errorf("big body: %d bytes, want %d", len(b), len(big))
				}
			})
		}
		wg.Wait()
	})
	t.Run("request body and trailer", func(t *testing.T) {
		resp, err := cl.Post("http://"+addr+"/echo", "application/octet-stream", bytes.NewReader(big))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Equal(b, big) || resp.Trailer.Get("X-Sum") != fmt.Sprint(len(big)) {
			t.Errorf("echo: %d bytes, trailer %q", len(b), resp.Trailer)
		}
	})
}

// rawConn is a test client writing and reading frames itself.
type rawConn struct {
	t    testing.TB
	nc   net.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
}

func dialRaw(t testing.TB, addr string, settings ...http2.Setting) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &rawConn{t: t, nc: nc, fr: http2.NewFramer(nc, nc)}
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.hbuf)
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(nc, http2.ClientPreface)
	c.fr.WriteSettings(settings...)
	return c
}

func (c *rawConn) headerBlock(path string, extra ...string) []byte {
	c.hbuf.Reset()
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", path}} {
		c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for i := 0; i+1 < len(extra); i += 2 {
		c.enc.WriteField(hpack.HeaderField{Name: extra[i], Value: extra[i+1]})
	}
	return bytes.Clone(c.hbuf.Bytes())
}

func (c *rawConn) get(id uint32, path string, extra ...string) {
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.headerBlock(path, extra...), EndStream: true, EndHeaders: true})
}

// until reads frames until one satisfies ok (returned) or the connection
// ends (nil).
func (c *rawConn) until(ok func(http2.Frame) bool) http2.Frame {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return nil
		}
		if ok(f) {
			return f
		}
	}
}

func isGoAway(code http2.ErrCode) func(http2.Frame) bool {
	return func(f http2.Frame) bool {
		ga, ok := f.(*http2.GoAwayFrame)
		return ok && ga.ErrCode == code
	}
}

// TestRapidReset: a client opening streams and resetting them at once
// (CVE-2023-44487) is cut off with ENHANCE_YOUR_CALM, having started a
// bounded number of handlers.
func TestRapidReset(t *testing.T) {
	var started atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		<-r.Context().Done()
	})
	s := New(Config{MaxResets: 50, ResetRate: 10, MaxConcurrentStreams: 20}, h, nil)
	c := dialRaw(t, serve(t, s))
	go func() {
		for id := uint32(1); id < 20000; id += 2 {
			c.get(id, "/")
			if c.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				return
			}
		}
	}()
	if c.until(isGoAway(http2.ErrCodeEnhanceYourCalm)) == nil {
		t.Fatal("no GOAWAY ENHANCE_YOUR_CALM")
	}
	if n := started.Load(); n > 200 {
		t.Errorf("%d handlers started, want at most about MaxResets+MaxConcurrentStreams", n)
	}
}

// TestContinuationFlood: endless CONTINUATION frames end the connection
// (CVE-2024-27316-style), as does a header block far over the limit.
func TestContinuationFlood(t *testing.T) {
	s := New(Config{MaxHeaderListSize: 4096}, testHandler(), nil)
	addr := serve(t, s)
	t.Run("many frames", func(t *testing.T) {
		c := dialRaw(t, addr)
		c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.headerBlock("/hello")})
		go func() {
			for range 10000 {
				if c.fr.WriteContinuation(1, false, nil) != nil {
					return
				}
			}
		}()
		if c.until(isGoAway(http2.ErrCodeEnhanceYourCalm)) == nil {
			t.Fatal("no GOAWAY ENHANCE_YOUR_CALM")
		}
	})
	t.Run("large block", func(t *testing.T) {
		c := dialRaw(t, addr)
		c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.headerBlock("/hello")})
		junk := c.headerBlock("/", "x-junk", strings.Repeat("j", 16000))
		go func() {
			for range 100 {
				if c.fr.WriteContinuation(1, false, junk) != nil {
					return
				}
			}
		}()
		if c.until(isGoAway(http2.ErrCodeEnhanceYourCalm)) == nil {
			t.Fatal("no GOAWAY ENHANCE_YOUR_CALM")
		}
	})
	t.Run("header list over the limit", func(t *testing.T) {
		c := dialRaw(t, addr)
		c.get(1, "/hello", "x-big", strings.Repeat("b", 5000))
		f := c.until(func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok })
		if f == nil || f.(*http2.MetaHeadersFrame).PseudoValue("status") != "431" {
			t.Fatalf("got %v, want a 431 answer", f)
		}
	})
}

// TestFrameSizing: a Fast body goes out in DATA frames no larger than
// the peer's SETTINGS_MAX_FRAME_SIZE and its window, continued by
// WINDOW_UPDATEs.
func TestFrameSizing(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 100_000)
	s := New(Config{}, testHandler(), staticFast{map[string][]byte{"b": body}})
	c := dialRaw(t, serve(t, s), http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1000})
	c.get(1, "/static/b")
	got := 0
	for got < len(body) {
		f := c.until(func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok })
		if f == nil {
			t.Fatalf("connection ended after %d bytes", got)
		}
		d := f.(*http2.DataFrame)
		if n := len(d.Data()); n > 1000 {
			t.Fatalf("DATA of %d bytes beyond a window of 1000", n)
		}
		got += len(d.Data())
		c.fr.WriteWindowUpdate(1, uint32(len(d.Data())))
		c.fr.WriteWindowUpdate(0, uint32(len(d.Data())))
	}
	c2 := dialRaw(t, serve(t, New(Config{}, testHandler(), staticFast{map[string][]byte{"b": body}})))
	c2.get(1, "/static/b")
	f := c2.until(func(f http2.Frame) bool { _, ok := f.(*http2.DataFrame); return ok })
	if f == nil || len(f.(*http2.DataFrame).Data()) != 16384 {
		t.Fatalf("first DATA %v, want 16384 bytes (the default frame size)", f)
	}
}

// TestGracefulShutdown: Shutdown sends GOAWAY NO_ERROR, lets the stream
// in flight finish, then closes.
func TestGracefulShutdown(t *testing.T) {
	s := New(Config{}, testHandler(), nil)
	c := dialRaw(t, serve(t, s))
	c.get(1, "/slow")
	time.Sleep(50 * time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	if c.until(isGoAway(http2.ErrCodeNo)) == nil {
		t.Fatal("no GOAWAY")
	}
	var body []byte
	for {
		f := c.until(func(http2.Frame) bool { return true })
		if f == nil {
			break
		}
		if d, ok := f.(*http2.DataFrame); ok {
			body = append(body, d.Data()...)
		}
	}
	if string(body) != "slow done" {
		t.Errorf("stream in flight answered %q", body)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestIdleTimeout: a connection without streams ends with GOAWAY.
func TestIdleTimeout(t *testing.T) {
	s := New(Config{IdleTimeout: 300 * time.Millisecond}, testHandler(), nil)
	c := dialRaw(t, serve(t, s))
	start := time.Now()
	if c.until(isGoAway(http2.ErrCodeNo)) == nil {
		t.Fatal("no GOAWAY")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("idle connection closed after %v", d)
	}
}

func TestPush(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/page" {
			if err := w.(http.Pusher).Push("/style.css", nil); err != nil {
				t.Errorf("Push: %v", err)
			}
		}
		io.WriteString(w, "body of "+r.URL.Path)
	})
	c := dialRaw(t, serve(t, New(Config{}, h, nil)))
	c.get(1, "/page")
	var promised uint32
	bodies := map[uint32]string{}
	ended := 0
	for ended < 2 {
		f := c.until(func(http2.Frame) bool { return true })
		if f == nil {
			t.Fatal("connection ended")
		}
		switch f := f.(type) {
		case *http2.PushPromiseFrame:
			promised = f.PromiseID
		case *http2.DataFrame:
			bodies[f.StreamID] += string(f.Data())
			if f.StreamEnded() {
				ended++
			}
		}
	}
	if promised != 2 || bodies[1] != "body of /page" || bodies[2] != "body of /style.css" {
		t.Errorf("promised %d, bodies %v", promised, bodies)
	}
}

func TestParsePriority(t *testing.T) {
	for _, tc := range []struct {
		v   string
		u   uint8
		inc bool
	}{
		{"", 3, false}, {"u=1", 1, false}, {"u=5, i", 5, true}, {"i=?0, u=0", 0, false}, {"u=9", 3, false}, {"u=2;x=1,i=?1", 2, true},
	} {
		if u, inc := parsePriority(tc.v); u != tc.u || inc != tc.inc {
			t.Errorf("parsePriority(%q) = %d %v, want %d %v", tc.v, u, inc, tc.u, tc.inc)
		}
	}
}

// TestAppendLiteral: blocks of AppendLiteral fields decode (x/net's hpack)
// to the same fields, on a decoder in any state.
func TestAppendLiteral(t *testing.T) {
	fields := []hpack.HeaderField{
		{Name: "content-type", Value: "text/plain"},
		{Name: "etag", Value: `"abc"`},
		{Name: "x-unknown-name", Value: strings.Repeat("v", 300)}, // multi-byte lengths
		{Name: "content-length", Value: ""},
		{Name: "vary", Value: "Accept-Encoding"},
	}
	var block []byte
	for _, f := range fields {
		block = AppendLiteral(block, f.Name, f.Value)
	}
	dec := hpack.NewDecoder(4096, nil)
	for round := range 2 {
		got, err := dec.DecodeFull(block)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(fields) {
			t.Errorf("round %d: decoded %v, want %v", round, got, fields)
		}
		// Fill the dynamic table between rounds: literals do not depend on it.
		var b bytes.Buffer
		hpack.NewEncoder(&b).WriteField(hpack.HeaderField{Name: "x-other", Value: "1"})
		dec.DecodeFull(b.Bytes())
	}
}

// TestStalledPeer: a peer that stops granting flow-control credit while
// an answer waits for it is cut off after the idle timeout.
func TestStalledPeer(t *testing.T) {
	body := bytes.Repeat([]byte("s"), 100_000)
	s := New(Config{IdleTimeout: 300 * time.Millisecond}, testHandler(), staticFast{map[string][]byte{"b": body}})
	c := dialRaw(t, serve(t, s), http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1000})
	c.get(1, "/static/b")
	start := time.Now()
	if c.until(isGoAway(http2.ErrCodeFlowControl)) == nil {
		t.Fatal("no GOAWAY for a peer that stopped reading")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cut off after %v", d)
	}
}

// TestReadTimeout: a request body that stops coming fails the handler's
// reads after ReadTimeout, and the stream is answered.
func TestReadTimeout(t *testing.T) {
	s := New(Config{ReadTimeout: 200 * time.Millisecond}, testHandler(), nil)
	c := dialRaw(t, serve(t, s))
	c.hbuf.Reset()
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/echo"}, {"content-length", "10"}} {
		c.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.hbuf.Bytes(), EndHeaders: true})
	c.fr.WriteData(1, false, []byte("abc"))
	start := time.Now()
	f := c.until(func(f http2.Frame) bool {
		if f.Header().StreamID != 1 {
			return false
		}
		_, h := f.(*http2.MetaHeadersFrame)
		_, r := f.(*http2.RSTStreamFrame)
		return h || r
	})
	if f == nil {
		t.Fatal("stream 1 never answered")
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 5*time.Second {
		t.Errorf("answered after %v, want about the read timeout", d)
	}
}
