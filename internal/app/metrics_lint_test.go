package app

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/torrent/metainfo"
	"github.com/applayer/applayer/torrent/swarm"
	"github.com/applayer/applayer/torrent/tracker"
)

// metricSubsystems are the systems' metric subsystems: one per system,
// applayer_<subsystem>_<name>.
var metricSubsystems = []string{"sockets", "dns_authority", "dns_resolver", "http_server", "web_cache", "torrent", "mail", "stream", "cdn_router", "cdn_edge"}

// defaultLabSubsystems are the subsystems of the systems with a kind in the
// default lab, which TestDefaultTopologyRuns requires to be registered. A
// system without a lab kind yet lints its metrics in its own test (as
// TestMailMetricsLint did); add it here with its kind.
var defaultLabSubsystems = []string{"sockets", "dns_authority", "dns_resolver", "http_server", "web_cache", "torrent", "mail", "stream", "cdn_router"}

// exerciseLab sends a recursive query to the lab's resolver and fetches
// gaia's page through the campus cache, so the labelled metric families
// (which appear with their first observation) are exposed for the lint.
func exerciseLab(t *testing.T, plan *lab.Plan) {
	t.Helper()
	res, _ := plan.Lookup("resolver.nyu.edu")
	c := &dns.Client{Timeout: 5 * time.Second}
	q := new(dns.Msg)
	q.SetQuestion("gaia.cs.umass.edu.", dns.TypeA)
	if r, _, err := c.Exchange(q, net.JoinHostPort(res.Addr.String(), strconv.Itoa(plan.Port(53)))); err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		t.Errorf("resolver.nyu.edu: gaia.cs.umass.edu A: %v %v", r, err)
	}
	cache, _ := plan.Lookup("cache.nyu.edu")
	k, _ := labKinds().Get("web-cache")
	pu := &url.URL{Scheme: "http", Host: net.JoinHostPort(cache.Addr.String(), strconv.Itoa(plan.Port(k.Port)))}
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	// The cache resolves gaia through the lab plan, on the lab's HTTP port.
	resp, err := hc.Get("http://gaia.cs.umass.edu/")
	if err != nil {
		t.Errorf("GET gaia through the cache: %v", err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET gaia through the cache: %s", resp.Status)
	}
}

// lintMetrics checks every metric family reg exposes with the Prometheus
// client's promlint and against applayer's naming scheme: namespace
// applayer, the system as subsystem, counters ending in _total, no ratio
// gauges (ratios are left to PromQL). want lists subsystems that must be
// present.
func lintMetrics(t *testing.T, reg prometheus.Gatherer, want ...string) {
	t.Helper()
	problems, err := metricProblems(reg, want...)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

func metricProblems(reg prometheus.Gatherer, want ...string) ([]string, error) {
	var out []string
	mfs, err := reg.Gather()
	if err != nil {
		return nil, fmt.Errorf("gather: %w", err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		return nil, err
	}
	for _, p := range problems {
		out = append(out, fmt.Sprintf("promlint: %s: %s", p.Metric, p.Text))
	}
	found := map[string]int{}
	for _, mf := range mfs {
		name := mf.GetName()
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "promhttp_") {
			continue // the runtime's own collectors
		}
		rest, ok := strings.CutPrefix(name, "applayer_")
		if !ok {
			out = append(out, fmt.Sprintf("%s: not in the applayer namespace", name))
			continue
		}
		sub := ""
		for _, s := range metricSubsystems {
			if strings.HasPrefix(rest, s+"_") && len(s) > len(sub) {
				sub = s
			}
		}
		if sub == "" {
			out = append(out, fmt.Sprintf("%s: subsystem is none of %v", name, metricSubsystems))
		}
		found[sub]++
		for _, bad := range []string{"_ratio", "utilisation", "utilization"} {
			if strings.Contains(name+"_", bad) {
				out = append(out, fmt.Sprintf("%s: a ratio; expose the counters and leave the ratio to PromQL", name))
			}
		}
		for _, rc := range []string{"servfail", "nxdomain", "noerror", "refused_responses", "_hits_", "_misses_", "_2xx", "_4xx", "_5xx"} {
			if strings.Contains(name, rc) {
				out = append(out, fmt.Sprintf("%s: an RCODE or status in the name; make it a label", name))
			}
		}
	}
	for _, s := range want {
		if found[s] == 0 {
			out = append(out, fmt.Sprintf("no metric of subsystem %s registered", s))
		}
	}
	return out, nil
}

// TestLintCatchesBadNames proves lintMetrics fails on names that break the
// scheme: a counter without _total, a name outside the namespace, a ratio
// gauge and an RCODE in a name.
func TestLintCatchesBadNames(t *testing.T) {
	for _, c := range []prometheus.Collector{
		prometheus.NewCounter(prometheus.CounterOpts{Name: "applayer_dns_resolver_answers", Help: "x"}),
		prometheus.NewCounter(prometheus.CounterOpts{Name: "other_things_total", Help: "x"}),
		prometheus.NewGauge(prometheus.GaugeOpts{Name: "applayer_web_cache_hit_ratio", Help: "x"}),
		prometheus.NewCounter(prometheus.CounterOpts{Name: "applayer_dns_resolver_servfail_total", Help: "x"}),
	} {
		reg := prometheus.NewRegistry()
		reg.MustRegister(c)
		p, err := metricProblems(reg)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) == 0 {
			t.Errorf("lint passed %v", c.(prometheus.Metric).Desc())
		}
		t.Log(p)
	}
}

// TestTorrentMetricsLint lints the BitTorrent tracker's and peer's metrics
// after one announce, so the tracker's labelled families are exposed (the
// default lab runs both kinds too, but its peers may not have announced
// when TestDefaultTopologyRuns gathers).
func TestTorrentMetricsLint(t *testing.T) {
	reg := obs.NewRegistry()
	tr, err := tracker.New(tracker.Config{HTTPAddr: "127.0.0.1:0"}, service.Deps{Logger: testkit.Logger(t), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, tr)
	hash := url.QueryEscape(strings.Repeat("\x12", 20))
	resp, err := http.Get("http://" + tr.Addrs()[0].String() + "/announce?info_hash=" + hash + "&peer_id=" + url.QueryEscape("-AL0001-123456789012") + "&port=6881&uploaded=0&downloaded=0&left=10&compact=1&event=started")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("announce: %s", resp.Status)
	}
	// The peer's metrics on the same registry, as `torrent get` has them.
	mag, err := metainfo.ParseMagnet("magnet:?xt=urn:btih:" + strings.Repeat("12", 20))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := swarm.New(swarm.Config{Magnet: mag, Dir: t.TempDir(), Listen: "127.0.0.1:0"}, service.Deps{Logger: testkit.Logger(t), Metrics: reg}); err != nil {
		t.Fatal(err)
	}
	lintMetrics(t, reg, "torrent")
	if p, _ := metricProblems(reg); len(p) > 0 || !strings.Contains(fmt.Sprint(mustGather(t, reg)), "applayer_torrent_peer_pieces_checked_total") {
		t.Errorf("the peer's metrics are not linted: %v", p)
	}
}

func mustGather(t *testing.T, reg prometheus.Gatherer) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	return names
}
