package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/lab"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// TestLabCampusCache builds a two-host lab with the real wiring (an
// http-server and the campus web-cache), fetches a page object through the
// cache twice and checks that the second answer is a hit and that the
// origin served one request.
func TestLabCampusCache(t *testing.T) {
	// The object is ten days old, so the cache's heuristic freshness (10% of
	// its age) keeps it fresh for a day: no revalidation on the second GET.
	root := t.TempDir()
	obj := filepath.Join(root, "images", "img01.png")
	if err := os.MkdirAll(filepath.Dir(obj), 0o755); err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("png!", 1000)
	if err := os.WriteFile(obj, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-240 * time.Hour)
	if err := os.Chtimes(obj, old, old); err != nil {
		t.Fatal(err)
	}
	site, _ := json.Marshal(map[string]any{"sites": []map[string]any{{"hosts": []string{"gaia.cs.umass.edu"}, "root": root}}})

	topo := &lab.Topology{
		Hosts: []lab.Host{
			{Name: "gaia.cs.umass.edu", Services: []lab.ServiceSpec{{Kind: "http-server", Config: site}}},
			{Name: "cache.nyu.edu", Services: []lab.ServiceSpec{{Kind: "web-cache"}}},
		},
	}
	ctx := testkit.Context(t, 30*time.Second)
	plan, r, reg := startRandomLab(t, ctx, topo, 40000, "127.0.0.1:0")

	cache, _ := plan.Lookup("cache.nyu.edu")
	proxyURL := &url.URL{Scheme: "http", Host: fmt.Sprintf("%s:%d", cache.Addr, plan.Port(3128))}
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var statuses []string
	for i := range 2 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://gaia.cs.umass.edu/images/img01.png", nil)
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %d through the cache: %v", i+1, err)
		}
		got, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || res.StatusCode != 200 || string(got) != body {
			t.Fatalf("GET %d: %d, %d bytes, %v", i+1, res.StatusCode, len(got), err)
		}
		statuses = append(statuses, res.Header.Get("Cache-Status"))
	}
	if !strings.Contains(statuses[0], "fwd=uri-miss") || !strings.Contains(statuses[1], "; hit") {
		t.Fatalf("Cache-Status %q, want a miss then a hit", statuses)
	}
	if n := counterSum(t, reg, "applayer_web_cache_origin_requests_total", "cache.nyu.edu"); n != 1 {
		t.Fatalf("the cache made %v origin requests, want 1", n)
	}
	// The web server counts a request after its response is sent: wait
	// for the count to arrive, then check there is exactly one.
	deadline := time.Now().Add(10 * time.Second)
	n := counterSum(t, reg, "applayer_http_server_requests_total", "gaia.cs.umass.edu")
	for n == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		n = counterSum(t, reg, "applayer_http_server_requests_total", "gaia.cs.umass.edu")
	}
	if n != 1 {
		t.Fatalf("origin served %v requests, want 1", n)
	}

	// `applayer http proxy --stats` reads the campus cache's statistics
	// from the lab's admin listener.
	var stats strings.Builder
	admin := r.Admin.Addrs()[0].String() + "/hosts/cache.nyu.edu"
	if err := printProxyStats(context.Background(), &stats, admin); err != nil {
		t.Fatalf("stats through the lab admin: %v", err)
	}
	if !strings.Contains(stats.String(), "hit") {
		t.Fatalf("stats output lacks the hit figures:\n%s", stats.String())
	}
	t.Logf("stats:\n%s", stats.String())
}

// counterSum adds up a counter's series for one lab host, read from the
// registry's /metrics exposition.
func counterSum(t *testing.T, reg *prometheus.Registry, name, host string) float64 {
	t.Helper()
	w := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	var sum float64
	for _, line := range strings.Split(w.Body.String(), "\n") {
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, `host="`+host+`"`) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}
