package webexp

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/applayer/applayer/internal/plot"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/lab/experiment"
	"github.com/applayer/applayer/web/client"
)

// TrackingCookies is the tracking-cookies experiment: a tracker embedded
// in two sites follows one browser across them with a third-party cookie,
// unless the jar blocks or partitions third-party cookies.
func TrackingCookies() experiment.Experiment {
	return experiment.Experiment{
		Name:    "tracking-cookies",
		Summary: "a tracker.com pixel on gaia.cs.umass.edu and shop.amazon.com links one user's visits via a third-party cookie; blocking and partitioned jars stop it",
		Run:     runTracking,
	}
}

// trackerHit is one request the tracker logged.
type trackerHit struct {
	ID   string // the tracker's cookie (new when the browser sent none)
	New  bool
	Site string // the page the pixel was on (from Referer)
}

// tracker is tracker.com: it answers /pixel.gif with a 1x1 GIF, gives every
// browser without its cookie a new ID and logs which site each ID was on.
type tracker struct {
	mu  sync.Mutex
	log []trackerHit
}

// pixel is a transparent 1x1 GIF.
var pixel = []byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

func (t *tracker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/pixel.gif" {
		http.NotFound(w, r)
		return
	}
	h := trackerHit{}
	if c, err := r.Cookie("tid"); err == nil && len(c.Value) <= 64 {
		h.ID = c.Value
	} else {
		b := make([]byte, 8)
		crand.Read(b)
		h.ID, h.New = hex.EncodeToString(b), true
		// SameSite=None: the cookie is meant to be sent on cross-site requests.
		http.SetCookie(w, &http.Cookie{Name: "tid", Value: h.ID, Path: "/", MaxAge: 365 * 24 * 3600, SameSite: http.SameSiteNoneMode})
	}
	if ref, err := url.Parse(r.Referer()); err == nil {
		h.Site = ref.Hostname()
	}
	t.mu.Lock()
	t.log = append(t.log, h)
	t.mu.Unlock()
	w.Header().Set("Content-Type", "image/gif")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(pixel)
}

// hits returns a copy of the log.
func (t *tracker) hits() []trackerHit {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]trackerHit(nil), t.log...)
}

// linkedSites is the most distinct sites one tracker ID was seen on.
func linkedSites(hits []trackerHit) int {
	sites := map[string]map[string]bool{}
	best := 0
	for _, h := range hits {
		if sites[h.ID] == nil {
			sites[h.ID] = map[string]bool{}
		}
		sites[h.ID][h.Site] = true
		best = max(best, len(sites[h.ID]))
	}
	return best
}

const (
	gaiaHost    = "gaia.cs.umass.edu"
	shopHost    = "shop.amazon.com"
	trackerHost = "tracker.com"
)

func runTracking(ctx context.Context, env experiment.Env) (*experiment.Result, error) {
	visits := []string{gaiaHost, shopHost, gaiaHost, shopHost}
	if env.Quick {
		visits = visits[:2]
	}
	fmt.Fprintf(env.Stdout, "tracking-cookies: %s and %s each embed <img src=\"http://%s/pixel.gif\">; the tracker gives a browser without its cookie a new ID (Set-Cookie: tid=...; SameSite=None) and logs the page (Referer) of every hit.\n", gaiaHost, shopHost, trackerHost)
	fmt.Fprintf(env.Stdout, "One browser visits %v with each cookie policy: allow (the old default), block (no third-party cookies) and partition (a jar per top-level site).\n\n", visits)
	dir, err := os.MkdirTemp("", "applayer-tracking-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	block := netip.AddrFrom4([4]byte{127, byte(100 + rand.IntN(100)), byte(rand.IntN(256)), 0})
	addr := func(n byte) netip.Addr { a := block.As4(); a[3] = n; return netip.AddrFrom4(a) }
	hosts := map[string]string{gaiaHost: addr(10).String(), shopHost: addr(11).String(), trackerHost: addr(12).String()}
	var specs []lab.Host
	for _, h := range []string{gaiaHost, shopHost} {
		root := filepath.Join(dir, h)
		page := fmt.Sprintf("<!doctype html>\n<html><head><title>%s</title></head><body>\n<h1>%s</h1>\n<p>A page with an ad from %s.</p>\n<img src=\"http://%s/pixel.gif\" width=\"1\" height=\"1\" alt=\"\">\n</body></html>\n", h, h, trackerHost, trackerHost)
		if err := os.MkdirAll(root, 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(root, "index.html"), []byte(page), 0o644); err != nil {
			return nil, err
		}
		cfg, _ := json.Marshal(map[string]any{"sites": []map[string]any{{"hosts": []string{h}, "root": root}}})
		specs = append(specs, lab.Host{Name: h, Addr: hosts[h], Services: []lab.ServiceSpec{{Kind: "http-server", Config: cfg}}})
	}
	topo := &lab.Topology{Hosts: specs}
	topo.Lab.Block = block.String() + "/24"
	r, stop, err := experiment.StartLab(ctx, env, topo)
	if err != nil {
		return nil, err
	}
	defer stop()
	port := r.Plan.Port(80)
	offset := port - 80

	res := &experiment.Result{}
	chart := plot.Chart{Title: "Third-party tracking: sites the tracker links to one ID", XLabel: "visit", YLabel: "most sites seen under one tracker ID"}
	for i, policy := range []string{client.ThirdPartyAllow, client.ThirdPartyBlock, client.ThirdPartyPartition} {
		tr := &tracker{}
		ln, err := net.Listen("tcp", net.JoinHostPort(hosts[trackerHost], fmt.Sprint(port)))
		if err != nil {
			return nil, fmt.Errorf("tracking-cookies: tracker: %w", err)
		}
		hs := &http.Server{Handler: tr, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
		go hs.Serve(ln)
		jar, err := client.NewSiteJar(policy)
		if err != nil {
			hs.Close()
			return nil, err
		}
		sr := plot.Series{Name: "jar: " + policy, Points: true, Dashed: i > 0}
		for n, site := range visits {
			if err := visit(ctx, jar, site, hosts, offset); err != nil {
				hs.Close()
				return nil, fmt.Errorf("tracking-cookies: %s jar: %w", policy, err)
			}
			sr.X = append(sr.X, float64(n+1))
			sr.Y = append(sr.Y, float64(linkedSites(tr.hits())))
		}
		hs.Close()
		chart.Series = append(chart.Series, sr)
		hits := tr.hits()
		fmt.Fprintf(env.Stdout, "jar %s: tracker log:\n", policy)
		for _, h := range hits {
			fmt.Fprintf(env.Stdout, "  tid=%s new=%v on %s\n", h.ID, h.New, h.Site)
		}
		var jb bytes.Buffer
		for _, top := range []string{client.Site(gaiaHost), client.Site(shopHost)} {
			jb.Reset()
			jar.Jar(top).Write(&jb)
			fmt.Fprintf(env.Stdout, "  jar as seen from %s:\n%s", top, indent(jb.String()))
			if policy != client.ThirdPartyPartition {
				break // one jar
			}
		}
		linked := 0.0
		if linkedSites(hits) >= 2 {
			linked = 1
		}
		want := 0.0
		if policy == client.ThirdPartyAllow {
			want = 1
		}
		res.Rows = append(res.Rows,
			experiment.Row{Case: fmt.Sprintf("jar %s: tracker links the sites (1 = yes)", policy), Measured: linked, Formula: want, Tolerance: 1e-9},
			experiment.Row{Case: fmt.Sprintf("jar %s: tracker hits", policy), Measured: float64(len(hits)), Formula: float64(len(visits)), Tolerance: 1e-9})
	}
	fmt.Fprintln(env.Stdout)
	if err := experiment.WriteTable(env.Stdout, res.Rows); err != nil {
		return nil, err
	}
	zero := 0.0
	chart.YMin = &zero
	res.Plots = []string{env.Path("tracking-cookies.png"), env.Path("tracking-cookies.svg")}
	return res, chart.Save(res.Plots...)
}

// visit loads http://site/ the way a browser does: the page, then every
// object it references with the page as Referer, through jar as seen from
// the page's site.
func visit(ctx context.Context, jar *client.SiteJar, site string, hosts map[string]string, offset int) error {
	page := &url.URL{Scheme: "http", Host: site, Path: "/"}
	c, err := client.New(client.Options{Jar: jar.For(page), Hosts: hosts, PortOffset: offset, Timeout: 10 * time.Second})
	if err != nil {
		return err
	}
	defer c.Close()
	r, err := c.Get(ctx, page.String())
	if err != nil {
		return err
	}
	for _, ref := range client.ExtractRefs(page, r.Body) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ref.String(), nil)
		if err != nil {
			return err
		}
		req.Header.Set("Referer", page.String())
		or, err := c.Do(ctx, req)
		if err != nil {
			return err
		}
		if or.Response.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: status %d", ref, or.Response.StatusCode)
		}
	}
	return nil
}

func indent(s string) string {
	var b bytes.Buffer
	for _, l := range bytes.Split(bytes.TrimRight([]byte(s), "\n"), []byte("\n")) {
		b.WriteString("    ")
		b.Write(l)
		b.WriteByte('\n')
	}
	return b.String()
}
