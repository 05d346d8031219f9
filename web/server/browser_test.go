package server

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/applayer/applayer/internal/testkit/browser"
)

// TestBrowserDemoOverH2: headless Chromium loads the demo page over
// HTTP/2 (TLS, ALPN h2: web/h2) and every object arrives over h2 with 200,
// every image decoded.
func TestBrowserDemoOverH2(t *testing.T) {
	const images = 8
	e := start(t, func(c *Config) {
		dir := t.TempDir()
		if err := WriteDemoSite(dir, images); err != nil {
			t.Fatal(err)
		}
		c.Sites = []Site{{Root: dir}}
	})
	ctx := browser.New(t, browser.Flag("ignore-certificate-errors", true))
	err := chromedp.Do(ctx,
		chromedp.Navigate("https://127.0.0.1:"+port(e.tlsA)+"/"),
		chromedp.Poll[chromedp.Void](`document.readyState === "complete" && Array.from(document.images).every(i => i.complete)`),
	)
	if err != nil {
		t.Fatalf("loading the demo page: %v", err)
	}
	type entry struct {
		Name   string `json:"name"`
		Proto  string `json:"proto"`
		Status int    `json:"status"`
	}
	entries, err := chromedp.Run(ctx, chromedp.Evaluate[[]entry](`performance.getEntriesByType("navigation").
		concat(performance.getEntriesByType("resource")).
		map(e => ({name: e.name, proto: e.nextHopProtocol, status: e.responseStatus}))`))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < images+3 { // the page, its style sheet, script and images
		t.Fatalf("%d objects loaded, want at least %d: %+v", len(entries), images+3, entries)
	}
	for _, en := range entries {
		if strings.HasSuffix(en.Name, "/favicon.ico") {
			continue // the browser's own guess, not the page's: 404 here
		}
		if en.Proto != "h2" || en.Status != 200 {
			t.Errorf("%s: %s %d, want h2 200", en.Name, en.Proto, en.Status)
		}
	}
	decoded, err := chromedp.Run(ctx, chromedp.Evaluate[int](`Array.from(document.images).filter(i => i.naturalWidth > 0).length`))
	if err != nil || decoded != images {
		t.Errorf("%d images decoded (%v), want %d", decoded, err, images)
	}
}
