package browser_test

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/applayer/applayer/internal/testkit/browser"
)

const page = `<!doctype html><title>t</title>
<button id="b" onclick="document.getElementById('out').textContent = 'clicked ' + location.host">go</button>
<p id="out">waiting</p>
<img id="far" src="http://example.com/x.png" onerror="document.getElementById('img').textContent = 'blocked'">
<p id="img">pending</p>`

// TestClickAndScreenshot drives a real page: a click runs its script, a
// name mapped with Resolve reaches the test's server, a name that is not
// mapped does not resolve, and the screenshot is a PNG.
func TestClickAndScreenshot(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(page))
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	ctx := browser.New(t, browser.Resolve("www.lab.test", "127.0.0.1"))
	err := chromedp.Do(ctx,
		chromedp.Navigate("http://www.lab.test:"+port+"/"),
		chromedp.Click(chromedp.ID("b")),
		chromedp.Poll[chromedp.Void](`document.getElementById('img').textContent !== 'pending'`),
	)
	if err != nil {
		t.Fatal(err)
	}
	out, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("out")))
	if err != nil {
		t.Fatal(err)
	}
	img, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("img")))
	if err != nil {
		t.Fatal(err)
	}
	if want := "clicked www.lab.test:" + port; out != want {
		t.Errorf("after the click #out = %q, want %q", out, want)
	}
	if img != "blocked" {
		t.Errorf("an image from an unmapped name: #img = %q, want blocked (the browser must not reach the Internet)", img)
	}
	// A loopback address literal is reached as it is.
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"), chromedp.Click(chromedp.ID("b"))); err != nil {
		t.Fatalf("navigating to %s: %v", srv.URL, err)
	}
	if out, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("out"))); out != "clicked "+strings.TrimPrefix(srv.URL, "http://") {
		t.Errorf("at %s, #out = %q", srv.URL, out)
	}
	path := filepath.Join(t.TempDir(), "shot.png")
	browser.Screenshot(t, ctx, path)
	b, err := os.ReadFile(path)
	if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) || len(b) < 1000 {
		t.Fatalf("screenshot: err %v, %d bytes, want a PNG", err, len(b))
	}
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("server at %s, want loopback", srv.URL)
	}
}
