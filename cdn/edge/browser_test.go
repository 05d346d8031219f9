package edge_test

import (
	"context"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/applayer/applayer/cdn/edge"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/stream"
	"github.com/applayer/applayer/stream/dashjstest"
	dashorigin "github.com/applayer/applayer/stream/origin"
	"github.com/applayer/applayer/stream/packager"
	"github.com/applayer/applayer/web/server"
)

// TestDashJSThroughCDN: dash.js in headless Chromium plays a video from
// our DASH origin through an edge and its shield (the page on another
// origin, so the origin's CORS headers must pass through both caches):
// the video plays past 2 s without a dash.js error, every object the
// player asked for came through the edge, and the origin sent each object
// once at most.
func TestDashJSThroughCDN(t *testing.T) {
	testkit.Peer(t, "ffmpeg")
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

	_, cur := dashjstest.Play(t, "http://"+e.Addr()+"/manifest.mpd", 2)
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
