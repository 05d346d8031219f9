package stream

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/applayer/applayer/internal/testkit/browser"
	"github.com/applayer/applayer/stream/dashjstest"
)

// TestDashJSPlaysOurOrigin: dash.js in headless Chromium, on a page of
// another origin (so CORS is exercised), plays our packaged MPD from our
// origin without an error: video.currentTime advances past 2 s and a
// screenshot is taken.
func TestDashJSPlaysOurOrigin(t *testing.T) {
	dir, _ := tinyVideo(t)
	_, addr, _ := startOrigin(t, dir, false)
	ctx, cur := dashjstest.Play(t, "http://"+addr+"/manifest.mpd", 2)
	shot := filepath.Join(t.TempDir(), "dashjs.png")
	browser.Screenshot(t, ctx, shot)
	png, _ := os.ReadFile(shot)
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot is not a PNG")
	}
	t.Logf("dash.js played to %.2f s", cur)
}
