package edge_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/applayer/applayer/cdn/edge"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/internal/testkit/browser"
	"github.com/applayer/applayer/stream"
	dashorigin "github.com/applayer/applayer/stream/origin"
	"github.com/applayer/applayer/stream/packager"
	"github.com/applayer/applayer/web/server"
)

// dashPage plays an MPD with dash.js, collecting its errors.
const dashPage = `<!doctype html><html><body>
<video id="v" muted autoplay playsinline width="320" height="180"></video>
<script src="/dash.mediaplayer.min.js"></script>
<script>
window.errs = [];
const p = dashjs.MediaPlayer().create();
p.on(dashjs.MediaPlayer.events.ERROR, e => window.errs.push(JSON.stringify(e.error || e)));
p.initialize(document.getElementById("v"), %q, true);
</script></body></html>`

// TestDashJSThroughCDN: dash.js in headless Chromium plays a video from
// our DASH origin through an edge and its shield (the page on another
// origin, so the origin's CORS headers must pass through both caches):
// the video plays past 2 s without a dash.js error, every object the
// player asked for came through the edge, and the origin sent each object
// once at most.
func TestDashJSThroughCDN(t *testing.T) {
	testkit.Peer(t, "ffmpeg")
	js, err := os.ReadFile(filepath.Join("..", "..", "stream", "testdata", "dashjs", "dash.mediaplayer.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	src := filepath.Join(dir, "src.mp4")
	if err := (packager.Synthetic{Duration: 6 * time.Second, Width: 320, Height: 180}).Make(ctx, "", src); err != nil {
		t.Fatal(err)
	}
	ladder, _ := packager.ParseLadder("144:150k,180:300k")
	if _, err := packager.Package(ctx, packager.Options{Input: src, OutDir: filepath.Join(dir, "video"), Ladder: ladder, Preset: "ultrafast"}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	sent := map[string]int{} // origin responses by path
	count := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			sent[r.URL.Path]++
			mu.Unlock()
			h.ServeHTTP(w, r)
		})
	}
	o, err := stream.NewServer(server.Config{Addr: "127.0.0.1:0"}, dashorigin.Config{Dir: filepath.Join(dir, "video")}, service.Deps{Logger: testkit.Logger(t)}, count)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, o)
	shield := startEdge(t, edge.Config{Name: "shield", Shield: true, Upstreams: []string{o.Addrs()[0].String()}})
	e := startEdge(t, edge.Config{Name: "edge1", Upstreams: []string{shield.Addr()}})

	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, dashPage, "http://"+e.Addr()+"/manifest.mpd")
		case "/dash.mediaplayer.min.js":
			w.Header().Set("Content-Type", "text/javascript")
			w.Write(js)
		default:
			http.NotFound(w, r)
		}
	}))
	defer page.Close()
	bctx := browser.New(t, browser.Timeout(90*time.Second))
	if err := chromedp.Do(bctx, chromedp.Navigate(page.URL)); err != nil {
		t.Fatal(err)
	}
	var cur float64
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		v, err := chromedp.Run(bctx, chromedp.Evaluate[float64](`document.getElementById("v").currentTime`))
		if err != nil {
			t.Fatal(err)
		}
		cur = v
		errs, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`window.errs`))
		if err != nil {
			t.Fatal(err)
		}
		if len(errs) > 0 {
			t.Fatalf("dash.js errors: %s", strings.Join(errs, "; "))
		}
		if cur > 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("video.currentTime still %.2f after 60 s", cur)
		}
	}
	st := e.Cache().Stats()
	if st.Requests < 3 || st.OriginRequests == 0 {
		t.Errorf("edge stats %+v: the player's requests did not come through the edge", st)
	}
	mu.Lock()
	defer mu.Unlock()
	for path, n := range sent {
		if n > 1 && path != "/" {
			t.Errorf("the origin sent %s %d times", path, n)
		}
	}
	t.Logf("dash.js played to %.2f s through the edge: %d requests, %d hits, %d upstream", cur, st.Requests, st.Hits, st.OriginRequests)
}
