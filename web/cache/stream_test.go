package cache

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// frontEnd serves the cache over a real listener, so a test sees what a
// client sees: chunked framing, Content-Length, and an aborted handler as
// a truncated response.
type frontEnd struct {
	*env
	srv    *httptest.Server
	client *http.Client
	host   string
}

func newFront(t *testing.T, cfg Config, h func(w http.ResponseWriter, r *http.Request, n int64)) *frontEnd {
	e := newEnv(t, cfg, h)
	f := &frontEnd{env: e, srv: httptest.NewServer(e.c), host: e.origin.Listener.Addr().String()}
	tr := &http.Transport{DisableCompression: true}
	f.client = &http.Client{Transport: tr}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		f.srv.Close()
	})
	return f
}

// get sends GET path for the origin's host through the cache.
func (f *frontEnd) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", f.srv.URL+path, nil)
	if err != nil {
		return nil, err
	}
	req.Host = f.host
	return f.client.Do(req)
}

type result struct {
	res  *http.Response
	body []byte
	err  error
}

// pattern is a body whose every byte depends on its offset, so a body
// stitched together at the wrong place shows.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26 + i/26%3)
	}
	return b
}

// blockingOrigin sends the first `first` bytes of body, flushes, signals
// started and waits for release before sending the rest (or breaking off
// after `failAt` bytes when failAt > 0). With known true it declares the
// Content-Length, else the body is chunked. Later requests with a Range
// are answered by http.ServeContent.
func blockingOrigin(body []byte, first int, known bool, etag string, failAt int, started, release chan struct{}) func(w http.ResponseWriter, r *http.Request, n int64) {
	return func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=100")
		if etag != "" {
			w.Header().Set("ETag", etag)
		}
		if n > 1 {
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
			return
		}
		if known {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		w.Write(body[:first])
		w.(http.Flusher).Flush()
		close(started)
		<-release
		if failAt > 0 {
			w.Write(body[first:failAt])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		w.Write(body[first:])
	}
}

// startPair starts the fetching request, then, once the origin has sent
// the first part, a second request that coalesces onto it; it returns
// both results (the waiter's first part already read: readFirst bytes).
func (f *frontEnd) startPair(t *testing.T, path string, started chan struct{}, readFirst int) (fetcher, waiter chan result, waiterFirst chan []byte) {
	ctx := t.Context()
	fetcher, waiter = make(chan result, 1), make(chan result, 1)
	waiterFirst = make(chan []byte, 1)
	go func() {
		res, err := f.get(ctx, path)
		if err != nil {
			fetcher <- result{err: err}
			return
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		fetcher <- result{res, b, err}
	}()
	<-started
	go func() {
		res, err := f.get(ctx, path)
		if err != nil {
			close(waiterFirst)
			waiter <- result{err: err}
			return
		}
		first := make([]byte, readFirst)
		if _, err := io.ReadFull(res.Body, first); err != nil {
			close(waiterFirst)
			waiter <- result{res: res, err: err}
			return
		}
		waiterFirst <- first
		rest, err := io.ReadAll(res.Body)
		res.Body.Close()
		waiter <- result{res, append(first, rest...), err}
	}()
	return fetcher, waiter, waiterFirst
}

// releaser returns a function closing release once, also at cleanup.
// Call it after the servers are set up: cleanups run last-first, and the
// origin's Close waits for its blocked handler.
func releaser(t *testing.T, release chan struct{}) func() {
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	return unblock
}

// A coalesced waiter streams a chunked response (no Content-Length) as
// it arrives, like a response of known length.
func TestWaiterStreamsChunked(t *testing.T) {
	body := pattern(200000)
	const first = 70000
	started := make(chan struct{})
	release := make(chan struct{})
	f := newFront(t, Config{}, blockingOrigin(body, first, false, `"v1"`, 0, started, release))
	unblock := releaser(t, release)
	fetcher, waiter, waiterFirst := f.startPair(t, "/chunked", started, first)
	select {
	case b, ok := <-waiterFirst:
		if !ok {
			r := <-waiter
			t.Fatalf("waiter failed before the origin finished: %v", r.err)
		}
		if !bytes.Equal(b, body[:first]) {
			t.Fatalf("waiter's first part differs")
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("waiter got nothing while the origin was sending: it doesn't stream")
	}
	unblock()
	for name, ch := range map[string]chan result{"fetcher": fetcher, "waiter": waiter} {
		r := <-ch
		if r.err != nil || !bytes.Equal(r.body, body) {
			t.Fatalf("%s: %d bytes, err %v; want the whole body", name, len(r.body), r.err)
		}
		if r.res.ContentLength != -1 {
			t.Errorf("%s: Content-Length %d, want chunked", name, r.res.ContentLength)
		}
		if name == "waiter" && !strings.Contains(r.res.Header.Get("Cache-Status"), "collapsed") {
			t.Errorf("waiter Cache-Status %q, want collapsed", r.res.Header.Get("Cache-Status"))
		}
	}
	if f.hits.Load() != 1 {
		t.Fatalf("origin requests %d, want 1", f.hits.Load())
	}
	// stored whole: the next request is a hit with the complete body
	res, err := f.get(t.Context(), "/chunked")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !bytes.Equal(b, body) || !strings.Contains(res.Header.Get("Cache-Status"), "hit") {
		t.Fatalf("after: %d bytes, Cache-Status %q", len(b), res.Header.Get("Cache-Status"))
	}
}

// When the origin's body breaks off mid-stream, the fetching client and
// the streaming waiter both see a truncated response (a client error),
// never a short response that looks complete, and nothing is stored.
func TestWaiterOriginFailsMidStream(t *testing.T) {
	for _, known := range []bool{true, false} {
		t.Run("content-length="+strconv.FormatBool(known), func(t *testing.T) {
			body := pattern(200000)
			const first = 50000
			started := make(chan struct{})
			release := make(chan struct{})
			f := newFront(t, Config{}, blockingOrigin(body, first, known, `"v1"`, 120000, started, release))
			unblock := releaser(t, release)
			fetcher, waiter, waiterFirst := f.startPair(t, "/broken", started, first)
			select {
			case <-waiterFirst:
			case <-time.After(10 * time.Second):
				t.Fatalf("waiter got nothing while the origin was sending")
			}
			unblock()
			for name, ch := range map[string]chan result{"fetcher": fetcher, "waiter": waiter} {
				r := <-ch
				if r.err == nil {
					t.Fatalf("%s: read %d bytes without an error; want a truncated response", name, len(r.body))
				}
				if len(r.body) > 120000 || !bytes.Equal(r.body, body[:len(r.body)]) {
					t.Fatalf("%s: %d bytes that are not a prefix of the origin's", name, len(r.body))
				}
			}
			// nothing stored: the next request goes to the origin again
			res, err := f.get(t.Context(), "/broken")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if !bytes.Equal(b, body) || f.hits.Load() != 2 {
				t.Fatalf("after: %d bytes, origin requests %d; want the whole body from the origin (2)", len(b), f.hits.Load())
			}
		})
	}
}

// A chunked response that outgrows max_object_bytes isn't stored; a
// waiter that was streaming it fetches the rest with a Range request
// conditional on the strong ETag (If-Range), so its body is still whole
// and consistent. Without a strong ETag it can't, and its response is
// truncated.
func TestWaiterChunkedTooLarge(t *testing.T) {
	for _, etag := range []string{`"big"`, ""} {
		t.Run("etag="+etag, func(t *testing.T) {
			body := pattern(300000)
			const first = 40000
			started := make(chan struct{})
			release := make(chan struct{})
			f := newFront(t, Config{MaxObjectBytes: 100000}, blockingOrigin(body, first, false, etag, 0, started, release))
			unblock := releaser(t, release)
			fetcher, waiter, waiterFirst := f.startPair(t, "/large", started, first)
			select {
			case <-waiterFirst:
			case <-time.After(10 * time.Second):
				t.Fatalf("waiter got nothing while the origin was sending")
			}
			unblock()
			r := <-fetcher
			if r.err != nil || !bytes.Equal(r.body, body) {
				t.Fatalf("fetcher: %d bytes, err %v", len(r.body), r.err)
			}
			r = <-waiter
			if etag == "" {
				if r.err == nil {
					t.Fatalf("waiter: %d bytes without an error; want a truncated response", len(r.body))
				}
				return
			}
			if r.err != nil || !bytes.Equal(r.body, body) {
				t.Fatalf("waiter: %d bytes, err %v; want the whole body", len(r.body), r.err)
			}
			last := f.lastReq()
			if !strings.HasPrefix(last.Get("Range"), "bytes=") || last.Get("If-Range") != etag {
				t.Fatalf("resume request Range %q If-Range %q", last.Get("Range"), last.Get("If-Range"))
			}
			if f.hits.Load() != 2 {
				t.Fatalf("origin requests %d, want 2 (the fetch and the waiter's resume)", f.hits.Load())
			}
		})
	}
}

// A range request on a miss for an object larger than max_object_bytes:
// the object can't be stored, so the client's Range goes to the origin,
// which sends the part asked for (206), not the whole object; later range
// requests for it keep their Range from the start.
func TestRangeMissTooLarge(t *testing.T) {
	body := pattern(50000)
	for _, known := range []bool{true, false} {
		t.Run("content-length="+strconv.FormatBool(known), func(t *testing.T) {
			var ranges []string
			var mu sync.Mutex
			e := newEnv(t, Config{MaxObjectBytes: 10000}, func(w http.ResponseWriter, r *http.Request, n int64) {
				mu.Lock()
				ranges = append(ranges, r.Header.Get("Range"))
				mu.Unlock()
				w.Header().Set("Cache-Control", "max-age=100")
				w.Header().Set("ETag", `"L"`)
				if r.Header.Get("Range") == "" && !known {
					w.(http.Flusher).Flush() // chunked: the length is learned by reading
					w.Write(body)
					return
				}
				http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
			})
			r := e.do("GET", "/big", "Range", "bytes=100-199")
			if r.code != http.StatusPartialContent || r.body != string(body[100:200]) ||
				r.header.Get("Content-Range") != "bytes 100-199/50000" {
				t.Fatalf("first: status %d, %d bytes, Content-Range %q", r.code, len(r.body), r.header.Get("Content-Range"))
			}
			r = e.do("GET", "/big", "Range", "bytes=-10")
			if r.code != http.StatusPartialContent || r.body != string(body[len(body)-10:]) {
				t.Fatalf("second: status %d, %d bytes", r.code, len(r.body))
			}
			mu.Lock()
			got := strings.Join(ranges, "|")
			mu.Unlock()
			if want := "|bytes=100-199|bytes=-10"; got != want {
				t.Fatalf("origin saw ranges %q, want %q", got, want)
			}
			// a request without Range still gets (and passes through) the whole object
			if r := e.do("GET", "/big"); r.code != 200 || r.body != string(body) {
				t.Fatalf("whole: status %d, %d bytes", r.code, len(r.body))
			}
		})
	}
}

// An origin that ignores Range: the ranged retry's 200 passes through
// whole, and later range requests (sent with their Range) are not sent
// twice.
func TestRangeMissTooLargeOriginIgnoresRange(t *testing.T) {
	body := strings.Repeat("z", 50000)
	e := newEnv(t, Config{MaxObjectBytes: 10000}, counting("Cache-Control", "max-age=100"))
	e.origin.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.hits.Add(1)
		w.Header().Set("Cache-Control", "max-age=100")
		io.WriteString(w, body)
	})
	for i, wantHits := range []int64{2, 3} {
		r := e.do("GET", "/big", "Range", "bytes=0-9")
		if r.code != http.StatusOK || r.body != body {
			t.Fatalf("request %d: status %d, %d bytes; want the whole 200", i, r.code, len(r.body))
		}
		if e.hits.Load() != wantHits {
			t.Fatalf("request %d: origin requests %d, want %d", i, e.hits.Load(), wantHits)
		}
	}
}
