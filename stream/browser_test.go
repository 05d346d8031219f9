package stream

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/applayer/applayer/internal/testkit/browser"
)

// playerPage is a page playing MPD with dash.js, collecting its errors.
const playerPage = `<!doctype html><html><body>
<video id="v" muted autoplay playsinline width="640" height="360"></video>
<script src="/dash.mediaplayer.min.js"></script>
<script>
window.errs = [];
const p = dashjs.MediaPlayer().create();
p.on(dashjs.MediaPlayer.events.ERROR, e => window.errs.push(JSON.stringify(e.error || e)));
p.initialize(document.getElementById("v"), %q, true);
window.player = p;
</script></body></html>`

// TestDashJSPlaysOurOrigin: dash.js in headless Chromium, on a page of
// another origin (so CORS is exercised), plays our packaged MPD from our
// origin without an error: video.currentTime advances past 2 s and a
// screenshot is taken.
func TestDashJSPlaysOurOrigin(t *testing.T) {
	dir, _ := tinyVideo(t)
	_, addr, _ := startOrigin(t, dir, false)
	js, err := os.ReadFile(filepath.Join("testdata", "dashjs", "dash.mediaplayer.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, playerPage, "http://"+addr+"/manifest.mpd")
		case "/dash.mediaplayer.min.js":
			w.Header().Set("Content-Type", "text/javascript")
			w.Write(js)
		default:
			http.NotFound(w, r)
		}
	}))
	defer page.Close()
	ctx := browser.New(t, browser.Timeout(90*time.Second))
	if err := chromedp.Do(ctx, chromedp.Navigate(page.URL)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	var cur float64
	for {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.getElementById("v").currentTime`))
		if err != nil {
			t.Fatal(err)
		}
		cur = v
		errs, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.errs`))
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
		time.Sleep(200 * time.Millisecond)
	}
	shot := filepath.Join(t.TempDir(), "dashjs.png")
	browser.Screenshot(t, ctx, shot)
	png, _ := os.ReadFile(shot)
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot is not a PNG")
	}
	t.Logf("dash.js played to %.2f s", cur)
}
