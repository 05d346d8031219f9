package edge_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/applayer/applayer/cdn/edge"
	"github.com/applayer/applayer/cdn/router"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// origin is the content provider's server: counts requests per path,
// and can hold responses until released.
type origin struct {
	srv   *httptest.Server
	mu    sync.Mutex
	count map[string]int
	hold  chan struct{} // when set, responses wait for it to close
	last  map[string]http.Header
	h     func(w http.ResponseWriter, r *http.Request)
}

func newOrigin(t *testing.T, h func(w http.ResponseWriter, r *http.Request)) *origin {
	o := &origin{count: map[string]int{}, last: map[string]http.Header{}, h: h}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.count[r.URL.Path]++
		o.last[r.URL.Path] = r.Header.Clone()
		hold := o.hold
		o.mu.Unlock()
		if hold != nil {
			<-hold
		}
		o.h(w, r)
	}))
	t.Cleanup(o.srv.Close)
	return o
}

func (o *origin) n(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.count[path]
}

func (o *origin) lastFor(path string) http.Header {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last[path]
}

func (o *origin) total() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for p, c := range o.count {
		if p != "/" { // the upstream health checks of the proxies
			n += c
		}
	}
	return n
}

// status is the edge's own Cache-Status entry: the last (upstream caches'
// entries come first, RFC 9211).
func status(res *http.Response) string {
	vs := res.Header.Values("Cache-Status")
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

func segment(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "max-age=600")
	w.Header().Set("Content-Type", "video/mp4")
	fmt.Fprintf(w, "segment %s", r.URL.Path)
}

func startEdge(t *testing.T, cfg edge.Config) *edge.Server {
	t.Helper()
	cfg.Addr, cfg.Control = "127.0.0.1:0", "127.0.0.1:0"
	e, err := edge.New(cfg, service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return testkit.Start(t, e)
}

// get fetches path from an edge as a client of video.netcinema.com.
func get(t *testing.T, addr, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	req.Host = "video.netcinema.com"
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// TestCoalescingThroughShield: a burst of clients asks an edge for one
// cold segment; the edge sends one request to the shield, the shield
// one to the origin, and every client gets the segment.
func TestCoalescingThroughShield(t *testing.T) {
	o := newOrigin(t, segment)
	o.hold = make(chan struct{})
	shield := startEdge(t, edge.Config{Name: "shield", Shield: true, Upstreams: []string{o.srv.Listener.Addr().String()}})
	e := startEdge(t, edge.Config{Name: "edge1", Upstreams: []string{shield.Addr()}})
	const n = 24
	var wg sync.WaitGroup
	bodies := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, b := get(t, e.Addr(), "/video/seg-1.m4s")
			if res.StatusCode != 200 {
				t.Errorf("client %d: status %d", i, res.StatusCode)
			}
			bodies[i] = b
		}()
	}
	// every client's request is in the edge before the origin answers
	for deadline := time.Now().Add(10 * time.Second); e.Cache().Stats().Requests < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("edge saw %d of %d requests", e.Cache().Stats().Requests, n)
		}
	}
	o.mu.Lock()
	close(o.hold)
	o.hold = nil
	o.mu.Unlock()
	wg.Wait()
	for i, b := range bodies {
		if b != "segment /video/seg-1.m4s" {
			t.Errorf("client %d got %q", i, b)
		}
	}
	if got := o.n("/video/seg-1.m4s"); got != 1 {
		t.Errorf("origin fetches %d, want 1", got)
	}
	if got := e.Cache().Stats().OriginRequests; got != 1 {
		t.Errorf("edge fetches from the shield %d, want 1 (the edge coalesced)", got)
	}
}

// TestPrefetchThenNoOriginFetches: objects pushed ahead (POST
// /cdn/prefetch) are then served with no origin fetch at all.
func TestPrefetchThenNoOriginFetches(t *testing.T) {
	o := newOrigin(t, segment)
	e := startEdge(t, edge.Config{Name: "edge1", Upstreams: []string{o.srv.Listener.Addr().String()}})
	var list strings.Builder
	for i := range 6 {
		fmt.Fprintf(&list, "http://video.netcinema.com/video/seg-%d.m4s\n", i)
	}
	res, err := http.Post("http://"+e.ControlAddr()+"/cdn/prefetch", "text/plain", strings.NewReader(list.String()))
	if err != nil {
		t.Fatal(err)
	}
	var pr struct{ Stored, Asked int }
	json.NewDecoder(res.Body).Decode(&pr)
	res.Body.Close()
	if pr.Stored != 6 || pr.Asked != 6 {
		t.Fatalf("prefetch: %+v", pr)
	}
	before := o.total()
	if before != 6 {
		t.Fatalf("origin fetches during prefetch %d, want 6", before)
	}
	for i := range 6 {
		res, b := get(t, e.Addr(), fmt.Sprintf("/video/seg-%d.m4s", i))
		if !strings.Contains(status(res), "edge1; hit") || !strings.HasPrefix(b, "segment") {
			t.Errorf("seg %d: %q Cache-Status %q", i, b, status(res))
		}
	}
	if o.total() != before {
		t.Errorf("origin fetches during playback: %d, want 0", o.total()-before)
	}
}

// TestPurgePropagated: a purge through the router reaches every edge and
// the shield, by URL and by prefix; the next request is a miss.
func TestPurgePropagated(t *testing.T) {
	o := newOrigin(t, segment)
	shield := startEdge(t, edge.Config{Name: "shield", Shield: true, Upstreams: []string{o.srv.Listener.Addr().String()}})
	e1 := startEdge(t, edge.Config{Name: "e1", Upstreams: []string{shield.Addr()}})
	e2 := startEdge(t, edge.Config{Name: "e2", Upstreams: []string{shield.Addr()}})
	m := &router.Map{Clusters: []router.Cluster{{Name: "c", Edges: []router.Edge{
		{Name: "e1", Addr: "192.0.2.1", Control: e1.ControlAddr()}, {Name: "e2", Addr: "192.0.2.2", Control: e2.ControlAddr()}}}},
		Shields: []router.Shield{{Name: "shield", Control: shield.ControlAddr()}}}
	r, err := router.New(router.Config{Addr: "127.0.0.1:0", Domain: "kingcdn.com", Map: m}, service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, r)
	for _, e := range []*edge.Server{e1, e2} {
		for _, p := range []string{"/a/1", "/a/2", "/b/1"} {
			get(t, e.Addr(), p)
		}
	}
	res := r.Purge(t.Context(), "http://video.netcinema.com/a/1", false)
	want := map[string]int{"e1": 1, "e2": 1, "shield": 1}
	for _, pr := range res {
		if pr.Error != "" || pr.Removed != want[pr.Cache] {
			t.Errorf("purge url: %+v", pr)
		}
	}
	if len(res) != 3 {
		t.Errorf("purge reached %d caches, want 3", len(res))
	}
	res = r.Purge(t.Context(), "http://video.netcinema.com/a/", true)
	for _, pr := range res {
		if pr.Error != "" || pr.Removed != 1 { // /a/2 left
			t.Errorf("purge prefix: %+v", pr)
		}
	}
	before := o.n("/a/2")
	for _, e := range []*edge.Server{e1, e2} {
		if res, _ := get(t, e.Addr(), "/a/2"); strings.Contains(status(res), "hit") {
			t.Errorf("purged object still a hit at %s: %q", e.Name(), status(res))
		}
		if res, _ := get(t, e.Addr(), "/b/1"); !strings.Contains(status(res), "hit") {
			t.Errorf("an object not purged: Cache-Status %q, want a hit", status(res))
		}
	}
	if got := o.n("/a/2") - before; got != 1 {
		t.Errorf("origin fetches of the purged object %d, want 1 (the shield's, for both edges)", got)
	}
}

// TestCDNCacheControlAtEdge: the origin keeps browsers from caching
// (no-store) but lets the CDN keep a copy (CDN-Cache-Control); the edge
// does not pass the CDN's field on, and the shield passes it to the edge.
func TestCDNCacheControlAtEdge(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("CDN-Cache-Control", "max-age=300")
		io.WriteString(w, "manifest")
	})
	shield := startEdge(t, edge.Config{Name: "shield", Shield: true, Upstreams: []string{o.srv.Listener.Addr().String()}})
	e := startEdge(t, edge.Config{Name: "edge1", Upstreams: []string{shield.Addr()}})
	for i := range 3 {
		res, b := get(t, e.Addr(), "/video/manifest.mpd")
		if b != "manifest" || res.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%d: %q %v", i, b, res.Header)
		}
		if v := res.Header.Get("CDN-Cache-Control"); v != "" {
			t.Errorf("%d: CDN-Cache-Control forwarded to the client: %q", i, v)
		}
		if i > 0 && !strings.Contains(status(res), "edge1; hit") {
			t.Errorf("%d: Cache-Status %q, want an edge hit", i, status(res))
		}
	}
	if o.total() != 1 {
		t.Errorf("origin fetches %d, want 1", o.total())
	}
}

// TestRangesFromWholeObject: a range request for a cold object fetches
// the whole object once (no Range upstream) and answers the range from
// it; later ranges are hits.
func TestRangesFromWholeObject(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 100000) // 1 MB
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("ETag", `"v1"`)
		w.Write(body)
	})
	e := startEdge(t, edge.Config{Name: "edge1", Upstreams: []string{o.srv.Listener.Addr().String()}})
	for i, rg := range []struct {
		h     string
		start int
		end   int
	}{{"bytes=0-9", 0, 9}, {"bytes=500000-500019", 500000, 500019}, {"bytes=-5", len(body) - 5, len(body) - 1}} {
		res, b := get(t, e.Addr(), "/video/big.mp4", "Range", rg.h)
		if res.StatusCode != http.StatusPartialContent || b != string(body[rg.start:rg.end+1]) {
			t.Errorf("%s: %d %q", rg.h, res.StatusCode, b)
		}
		if want := fmt.Sprintf("bytes %d-%d/%d", rg.start, rg.end, len(body)); res.Header.Get("Content-Range") != want {
			t.Errorf("%s: Content-Range %q, want %q", rg.h, res.Header.Get("Content-Range"), want)
		}
		if i > 0 && !strings.Contains(status(res), "hit") {
			t.Errorf("%s: not a hit", rg.h)
		}
	}
	if o.total() != 1 || o.lastFor("/video/big.mp4").Get("Range") != "" {
		t.Errorf("origin fetches %d (last Range %q), want 1 whole fetch", o.total(), o.lastFor("/video/big.mp4").Get("Range"))
	}
}

// TestStaleIfErrorAtEdge: when the origin fails, a stored response
// within its stale-if-error window is served (RFC 5861).
func TestStaleIfErrorAtEdge(t *testing.T) {
	var fail atomic.Bool
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Cache-Control", "max-age=1, stale-if-error=600")
		io.WriteString(w, "v1")
	})
	e := startEdge(t, edge.Config{Name: "edge1", Upstreams: []string{o.srv.Listener.Addr().String()}})
	get(t, e.Addr(), "/x")
	fail.Store(true)
	// wait out max-age=1 (a real clock: the edge runs on a real socket)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		res, b := get(t, e.Addr(), "/x")
		if o.n("/x") >= 2 {
			if res.StatusCode != 200 || b != "v1" {
				t.Fatalf("origin failing: %d %q, want the stale copy", res.StatusCode, b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never revalidated")
		}
	}
}

// TestHealthReport: the control listener reports health and load (open
// client connections over capacity) for the router.
func TestHealthReport(t *testing.T) {
	o := newOrigin(t, segment)
	e := startEdge(t, edge.Config{Name: "edge1", Capacity: 4, Upstreams: []string{o.srv.Listener.Addr().String()}})
	report := func() edge.Report {
		res, err := http.Get("http://" + e.ControlAddr() + "/cdn/health")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var r edge.Report
		if err := json.NewDecoder(res.Body).Decode(&r); err != nil || res.StatusCode != 200 {
			t.Fatalf("report: %d %v", res.StatusCode, err)
		}
		return r
	}
	get(t, e.Addr(), "/s")
	get(t, e.Addr(), "/s")
	http.DefaultClient.CloseIdleConnections()
	var conns []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", e.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	var r edge.Report
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if r = report(); r.InFlight == 2 || time.Now().After(deadline) {
			break
		}
	}
	if !r.Healthy || r.Name != "edge1" || r.InFlight != 2 || r.Load != 0.5 || r.Requests != 2 || r.Hits != 1 || r.UpstreamFetches != 1 || r.BytesCache == 0 || r.BytesUpstream == 0 {
		t.Errorf("report %+v", r)
	}
}
