package client

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/applayer/applayer/internal/trace"
	// Named so: the package's tests declare a type lab.
	labpkg "github.com/applayer/applayer/lab"
)

// LabScenarios are the Web's scenarios of the chapter, played by this
// client against the lab's servers: gaia.cs.umass.edu's page with ten
// images, the cookie shop, the campus web cache and head-of-line blocking
// (HTTP/2 against HTTP/1.1 on a lossy link).
func LabScenarios() []labpkg.Scenario {
	return []labpkg.Scenario{
		{
			Name:    "http-nonpersistent",
			Summary: "gaia.cs.umass.edu's page and the 12 objects it references (10 images) over non-persistent HTTP/1.1: one TCP connection opened and closed per object",
			Figure:  "non-persistent connections (2 RTT per object)",
			Run:     func(ctx context.Context, env labpkg.ScenarioEnv) error { return runPage(ctx, env, ModeNonPersistent) },
			Hosts:   []string{"gaia.cs.umass.edu"},
			Keep:    KeepHTTP,
		},
		{
			Name:    "http-persistent",
			Summary: "the same page over one persistent HTTP/1.1 connection: 13 requests and responses on one connection",
			Figure:  "persistent connections",
			Run:     func(ctx context.Context, env labpkg.ScenarioEnv) error { return runPage(ctx, env, ModePersistent) },
			Hosts:   []string{"gaia.cs.umass.edu"},
			Keep:    KeepHTTP,
		},
		{
			Name:    "conditional-get",
			Summary: "a client with a local cache fetches gaia's page, then asks again with If-Modified-Since / If-None-Match and gets 304 Not Modified",
			Figure:  "the conditional GET",
			Run:     runConditional,
			Hosts:   []string{"gaia.cs.umass.edu"},
			Keep:    KeepHTTP,
		},
		{
			Name:    "cookies",
			Summary: "shop.amazon.com sets a session cookie, the cart is kept in its database under that id, and the cookie on the next visit brings the cart back",
			Figure:  "keeping user state with cookies",
			Run:     runCookies,
			Hosts:   []string{"shop.amazon.com"},
			Keep:    KeepHTTP,
		},
		{
			Name:    "web-cache",
			Summary: "a client fetches gaia's page through the campus cache cache.nyu.edu twice: a miss (the cache asks gaia) then a hit (gaia is not contacted)",
			Figure:  "web caching (the institutional cache)",
			Run:     runWebCache,
			Hosts:   []string{"cache.nyu.edu", "gaia.cs.umass.edu"},
			Keep:    KeepHTTP,
		},
		holScenario(),
	}
}

// KeepHTTP keeps a scenario's HTTP messages, TCP connections, TLS
// handshakes and the web cache's decisions (not the client's DNS lookup).
func KeepHTTP(e trace.Event) bool {
	return strings.HasPrefix(e.Proto, "http/") || e.Proto == "tcp" || e.Proto == "tls" || e.Proto == "quic"
}

// scenarioOptions sets o for the scenario's lab: names resolved by the
// lab's resolver, connections from the scenario's client address, the
// lab's port offset.
func scenarioOptions(env labpkg.ScenarioEnv, o Options) Options {
	if _, addr, ok := env.Plan.ServiceAddr("dns-resolver", 53); ok {
		o.Resolver = addr.String()
	}
	o.PortOffset = env.Plan.PortOffset
	o.Dialer = env.Dialer
	o.Timeout = 30 * time.Second
	return o
}

func scenarioClient(env labpkg.ScenarioEnv, o Options) (*Client, error) {
	return New(scenarioOptions(env, o))
}

const gaiaPage = "http://gaia.cs.umass.edu/"

func runPage(ctx context.Context, env labpkg.ScenarioEnv, mode string) error {
	pr, err := LoadPage(ctx, gaiaPage, PageOptions{Mode: mode, Options: scenarioOptions(env, Options{})})
	if err != nil {
		return fmt.Errorf("%s: %w", mode, err)
	}
	fmt.Fprintf(env.Out, "%s: %d objects over %d connection(s) in %s\n", mode, len(pr.Objects), pr.Conns, pr.Total.Round(time.Millisecond))
	return nil
}

func runConditional(ctx context.Context, env labpkg.ScenarioEnv) error {
	dir, err := os.MkdirTemp("", "applayer-scenario-cache-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cache, err := OpenCache(dir)
	if err != nil {
		return err
	}
	c, err := scenarioClient(env, Options{Proto: ProtoH1, Cache: cache, NoCompression: true})
	if err != nil {
		return err
	}
	defer c.Close()
	for i := range 2 {
		r, err := c.Get(ctx, gaiaPage)
		if err != nil {
			return fmt.Errorf("conditional-get: fetch %d: %w", i+1, err)
		}
		fmt.Fprintf(env.Out, "fetch %d: %s, %d bytes of body (from the local cache: %v)\n", i+1, r.Response.Status, len(r.Body), r.FromCache)
	}
	return nil
}

var shopItem = regexp.MustCompile(`name="item" value="([^"]+)"`)

func runCookies(ctx context.Context, env labpkg.ScenarioEnv) error {
	jar := NewJar()
	c, err := scenarioClient(env, Options{Proto: ProtoH1, Jar: jar, NoCompression: true})
	if err != nil {
		return err
	}
	defer c.Close()
	const shop = "http://shop.amazon.com"
	r, err := c.Get(ctx, shop+"/")
	if err != nil {
		return fmt.Errorf("cookies: first visit: %w", err)
	}
	m := shopItem.FindSubmatch(r.Body)
	if m == nil {
		return fmt.Errorf("cookies: the shop's catalogue lists no item")
	}
	item := string(m[1])
	fmt.Fprintf(env.Out, "first visit: %s; Set-Cookie: %s\n", r.Response.Status, r.Response.Header.Get("Set-Cookie"))
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, shop+"/cart/add", strings.NewReader(url.Values{"item": {item}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if r, err = c.Do(ctx, req); err != nil {
		return fmt.Errorf("cookies: add to cart: %w", err)
	}
	fmt.Fprintf(env.Out, "add %s to the cart: %s (the cart is stored in the shop's database under the cookie's id)\n", item, r.Response.Status)
	if r, err = c.Get(ctx, shop+"/api/cart"); err != nil {
		return fmt.Errorf("cookies: next visit: %w", err)
	}
	fmt.Fprintf(env.Out, "next visit, with the cookie: %s %s\n", r.Response.Status, strings.TrimSpace(string(r.Body)))
	return nil
}

func runWebCache(ctx context.Context, env labpkg.ScenarioEnv) error {
	h, ok := env.Plan.Lookup("cache.nyu.edu")
	if !ok {
		h, _, ok = env.Plan.ServiceAddr("web-cache", 3128)
	}
	if !ok {
		return fmt.Errorf("web-cache: the topology has no web-cache")
	}
	// An empty cache for the page: the first request must miss.
	if err := env.Admin(ctx, "POST", "/hosts/"+h.Name+"/cache/purge?url="+url.QueryEscape(gaiaPage)); err != nil {
		return fmt.Errorf("web-cache: purging %s: %w", h.Name, err)
	}
	proxy := "http://" + netip.AddrPortFrom(h.Addr, 3128).String()
	c, err := scenarioClient(env, Options{Proto: ProtoH1, Proxy: proxy, NoCompression: true, NoKeepAlive: true})
	if err != nil {
		return err
	}
	defer c.Close()
	for i := range 2 {
		r, err := c.Get(ctx, gaiaPage)
		if err != nil {
			return fmt.Errorf("web-cache: fetch %d: %w", i+1, err)
		}
		fmt.Fprintf(env.Out, "fetch %d through %s: %s, Cache-Status: %s\n", i+1, h.Name, r.Response.Status, r.Response.Header.Get("Cache-Status"))
	}
	return nil
}
