// Package browser starts headless Chromium (Debian's chromium package) for
// tests that must check a page in a real browser, driven with chromedp.
//
// chromedp from v0.21 has a generic action API: chromedp.Run(ctx, action)
// returns the action's value (text, _ := chromedp.Run(ctx,
// chromedp.Text(chromedp.ID("out")))), chromedp.Do(ctx, steps...) runs
// actions that return nothing, and selectors are typed (chromedp.ID,
// chromedp.CSS). See the module's docs/MIGRATION.md for the old names.
//
// The browser is the test's own process, with a fresh profile in a temporary
// directory and every background service switched off: it reaches only the
// addresses the test gives it (IP literals, localhost, and host names mapped
// with Resolve), never the Internet.
package browser

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/applayer/applayer/internal/testkit"
)

// Option changes how New starts the browser.
type Option func(*config)

type config struct {
	timeout time.Duration
	hosts   []string // "MAP name addr" host-resolver rules
	width   int
	height  int
	flags   map[string]any
}

// Timeout bounds everything done with the returned context (default 2
// minutes).
func Timeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// Resolve makes the browser resolve host (a name, or a pattern such as
// *.example.com) to addr, an IP address, without DNS. Every other name but
// localhost and loopback addresses fails to resolve.
func Resolve(host, addr string) Option {
	return func(c *config) { c.hosts = append(c.hosts, fmt.Sprintf("MAP %s %s", host, addr)) }
}

// WindowSize sets the viewport (default 1280 x 800, a laptop screen).
func WindowSize(w, h int) Option { return func(c *config) { c.width, c.height = w, h } }

// Flag adds a Chromium command-line flag (value true for a bare switch).
func Flag(name string, value any) Option {
	return func(c *config) { c.flags[name] = value }
}

// New starts headless Chromium for the length of the test and returns a
// chromedp context for it (pass it to chromedp.Run). When chromium is not
// installed the test is skipped, or fails naming the package under
// APPLAYER_REQUIRE_PEERS.
func New(t testing.TB, opts ...Option) context.Context {
	t.Helper()
	exe := testkit.Peer(t, "chromium")
	cfg := config{timeout: 2 * time.Minute, width: 1280, height: 800, flags: map[string]any{}}
	for _, o := range opts {
		o(&cfg)
	}
	// Loopback literals are excluded by pattern: the MAP * rule applies to
	// IP literals too.
	rules := append(append([]string(nil), cfg.hosts...), "MAP * ~NOTFOUND", "EXCLUDE localhost", "EXCLUDE 127.*", "EXCLUDE [::1]")
	allocOpts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(cfg.width, cfg.height),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // root, and containers without user namespaces
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("safebrowsing-disable-auto-update", true),
		chromedp.Flag("host-resolver-rules", strings.Join(rules, ", ")),
		chromedp.Flag("mute-audio", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
	}
	for name, v := range cfg.flags {
		allocOpts = append(allocOpts, chromedp.Flag(name, v))
	}
	ctx, cancelTimeout := context.WithTimeout(context.Background(), cfg.timeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, allocOpts...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancelTimeout()
	})
	// Start the browser now, so a failure to start names the cause here
	// rather than in the test's first action.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("browser: start %s: %v", exe, err)
	}
	return bctx
}

// Screenshot saves a PNG of the whole page to path (for test artifacts and
// the documentation's pictures).
func Screenshot(t testing.TB, ctx context.Context, path string) {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("browser: screenshot: %v", err)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatalf("browser: screenshot: %v", err)
	}
}
