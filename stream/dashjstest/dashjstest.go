// Package dashjstest plays an MPD with dash.js (the copy vendored in
// stream/testdata/dashjs) in headless Chromium, for the tests that check a
// real browser player against our origin and our CDN.
package dashjstest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/applayer/applayer/internal/testkit/browser"
)

// page plays an MPD (%q) with dash.js, collecting dash.js's errors in
// window.errs.
const page = `<!doctype html><html><body>
<video id="v" muted autoplay playsinline width="640" height="360"></video>
<script src="/dash.mediaplayer.min.js"></script>
<script>
window.errs = [];
const p = dashjs.MediaPlayer().create();
p.on(dashjs.MediaPlayer.events.ERROR, e => window.errs.push(JSON.stringify(e.error || e)));
p.initialize(document.getElementById("v"), %q, true);
window.player = p;
</script></body></html>`

// jsPath is the vendored dash.js, found from this file.
func jsPath() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata", "dashjs", "dash.mediaplayer.min.js")
}

// Play serves a page playing mpdURL with dash.js from a server of its own
// (another origin than the MPD's, so CORS is exercised), opens it in
// headless Chromium and waits until the video has played past minTime
// seconds. A dash.js error, or 60 s without getting there, fails t. It
// returns the browser (for screenshots) and the video's currentTime.
func Play(t testing.TB, mpdURL string, minTime float64) (context.Context, float64) {
	t.Helper()
	js, err := os.ReadFile(jsPath())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, page, mpdURL)
		case "/dash.mediaplayer.min.js":
			w.Header().Set("Content-Type", "text/javascript")
			w.Write(js)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	ctx := browser.New(t, browser.Timeout(90*time.Second))
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		cur, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`document.getElementById("v").currentTime`))
		if err != nil {
			t.Fatal(err)
		}
		errs, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.errs`))
		if err != nil {
			t.Fatal(err)
		}
		if len(errs) > 0 {
			t.Fatalf("dash.js errors: %s", strings.Join(errs, "; "))
		}
		if cur > minTime {
			return ctx, cur
		}
		if time.Now().After(deadline) {
			t.Fatalf("video.currentTime still %.2f after 60 s", cur)
		}
	}
}
