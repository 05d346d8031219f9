package app

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/cdn/edge"
	"github.com/applayer/applayer/cdn/router"
	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/stream/player"
	"github.com/applayer/applayer/web/client"
)

// TestCDNLabScenario is the chapter's NetCinema / KingCDN walk-through in
// the default lab: a client at umass.edu asks its local DNS server
// (resolver.umass.edu) for video.netcinema.com; netcinema's DNS hands it
// to KingCDN's (the CNAME), whose router answers with the umass edge; the
// client plays the video (stream/player, as applayer stream play) through
// it while it warms (misses through the shield to the DASH origin), and a
// second viewer plays it from the warm edge with no segment fetched
// upstream. Then the umass edge stops: once the router's health checks
// see it down, the next resolution goes to the next-nearest healthy
// cluster (nyu). Every DNS and HTTP step is on the trace bus.
func TestCDNLabScenario(t *testing.T) {
	testkit.Peer(t, "ffmpeg") // the lab's DASH origin packages its video with it
	topo, err := lab.DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	ctx := testkit.Context(t, 240*time.Second)
	b := 100 + rand.IntN(150)
	offset := 34000 + rand.IntN(20)*10
	topo.Lab = lab.Settings{Block: fmt.Sprintf("127.%d.0.0/16", b), PortOffset: &offset, Admin: "127.0.0.1:0", StateDir: t.TempDir()}
	kinds := labKinds()
	plan, err := lab.NewPlan(topo, kinds, nil)
	if err != nil {
		t.Fatal(err)
	}
	bus := trace.NewBus(nil)
	var mu sync.Mutex
	var events []trace.Event
	defer bus.Subscribe(trace.SinkFunc(func(e trace.Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}))()
	reg := obs.NewRegistry()
	r, err := lab.Build(plan, kinds, service.Deps{Logger: testkit.Logger(t), Metrics: reg, Trace: bus}, reg)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, r)
	admin := "http://" + r.Admin.Addrs()[0].String()
	addr := func(host string) string { return hostAddr(t, plan, host) }
	resolver := net.JoinHostPort(addr("resolver.umass.edu"), strconv.Itoa(plan.Port(53)))

	resolve := func() string {
		t.Helper()
		q := new(dns.Msg)
		q.SetQuestion("video.netcinema.com.", dns.TypeA)
		m, _, err := (&dns.Client{Timeout: 5 * time.Second}).ExchangeContext(ctx, q, resolver)
		if err != nil {
			t.Fatalf("resolver.umass.edu: %v", err)
		}
		var cname, a string
		for _, rr := range m.Answer {
			switch v := rr.(type) {
			case *dns.CNAME:
				cname = v.Target
			case *dns.A:
				a = v.A.String()
			}
		}
		if cname != "video.kingcdn.com." || a == "" {
			t.Fatalf("video.netcinema.com: CNAME %q A %q\n%s", cname, a, m)
		}
		return a
	}
	fetch := func(edgeAddr, path string) (string, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+net.JoinHostPort(edgeAddr, strconv.Itoa(plan.Port(80)))+path, nil)
		req.Host = "video.netcinema.com"
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 || len(body) == 0 {
			t.Fatalf("GET %s at %s: %d", path, edgeAddr, res.StatusCode)
		}
		vs := res.Header.Values("Cache-Status")
		return string(body), strings.Join(vs, ", ")
	}

	// 1. The umass client is sent to the umass cluster.
	if got := resolve(); got != addr("cdn.umass.edu") {
		t.Fatalf("video.netcinema.com from umass.edu: %s, want cdn.umass.edu (%s)", got, addr("cdn.umass.edu"))
	}
	// 2. It plays the video through the edge while the edge warms; a
	// second viewer then plays it from the warm edge.
	umassEdge := func() *edge.Server {
		for _, e := range r.Entries {
			if e.Host == "cdn.umass.edu" {
				return e.Service.(*edge.Server)
			}
		}
		t.Fatal("no cdn.umass.edu in the lab")
		return nil
	}()
	play := func() *player.Report {
		t.Helper()
		c, err := client.New(client.Options{Resolver: resolver, PortOffset: plan.PortOffset})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		f := &player.HTTPFetcher{Client: c}
		const mpd = "http://video.netcinema.com/manifest.mpd"
		// the origin packages the video when the lab starts: 503 with
		// Retry-After until then, which the player waits out
		data, err := player.FetchManifest(ctx, f, player.RealClock{}, mpd, 200*time.Second)
		if err != nil {
			t.Fatalf("manifest through the CDN: %v", err)
		}
		base, _ := url.Parse(mpd)
		pres, err := player.Load(data, base)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := pres.Play(ctx, player.Options{Fetcher: f, MaxBuffer: 60 * time.Second, Startup: 2 * time.Second, Trace: bus, Host: "client.umass.edu"})
		if err != nil {
			t.Fatalf("play through the CDN: %v", err)
		}
		if len(rep.Segments) < 6 || rep.Bytes == 0 {
			t.Fatalf("played %d segments, %d bytes", len(rep.Segments), rep.Bytes)
		}
		return rep
	}
	play()
	cold := umassEdge.Cache().Stats()
	if cold.OriginRequests == 0 {
		t.Fatal("the edge fetched nothing upstream while warming")
	}
	rep := play()
	warm := umassEdge.Cache().Stats()
	// only the manifest (short max-age) may go upstream again
	if up := warm.OriginRequests - cold.OriginRequests; up > 2 || warm.Hits-cold.Hits < int64(len(rep.Segments)) {
		t.Errorf("second viewer: %d upstream fetches, %d hits for %d segments; want the segments from the warm edge", up, warm.Hits-cold.Hits, len(rep.Segments))
	}
	body, _ := fetch(addr("cdn.umass.edu"), "/manifest.mpd")

	// 3. The umass edge stops; the router's checks see it.
	if err := umassEdge.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	statusURL := admin + "/hosts/dns.kingcdn.com/cdn/status"
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var st router.Status
		if err := cdnStatusJSON(statusURL, &st); err != nil {
			t.Fatal(err)
		}
		if !st.Clusters[0].Edges[0].Up {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the router never saw cdn.umass.edu down: %+v", st.Clusters[0])
		}
	}
	// The resolver keeps the old answer for its TTL: flush it, as a
	// client would wait out the short TTL.
	if res, err := http.Post(admin+"/hosts/resolver.umass.edu/dns/resolver/flush", "", nil); err != nil || res.StatusCode != 200 {
		t.Fatalf("flush: %v", err)
	} else {
		res.Body.Close()
	}
	// 4. The next resolution goes to the next-nearest healthy cluster.
	if got := resolve(); got != addr("cdn.nyu.edu") {
		t.Fatalf("after the umass edge stopped: %s, want cdn.nyu.edu (%s)", got, addr("cdn.nyu.edu"))
	}
	if b3, _ := fetch(addr("cdn.nyu.edu"), "/manifest.mpd"); b3 != body {
		t.Error("the nyu edge serves another manifest")
	}
	var final router.Status
	if err := cdnStatusJSON(statusURL, &final); err != nil {
		t.Fatal(err)
	}
	if d := final.Recent[0]; d.Cluster != "nyu" || d.Reason != router.ReasonFallback || len(d.Skipped) != 1 || d.Skipped[0] != "umass: down" || d.Network != "umass.edu" {
		t.Errorf("the router's decision: %+v", d)
	}

	// 5. Traced: the resolver's queries to netcinema's and KingCDN's
	// DNS, the routing decisions, the HTTP requests at the edge and the
	// shield's fetch from the origin.
	mu.Lock()
	defer mu.Unlock()
	seen := map[string]bool{}
	for _, e := range events {
		switch {
		case e.Host == "dns.netcinema.com" && strings.HasPrefix(e.Proto, "dns/"):
			seen["netcinema dns"] = true
		case e.Host == "dns.kingcdn.com" && e.Proto == "cdn/route" && strings.Contains(e.Summary, "-> umass/cdn.umass.edu"):
			seen["route umass"] = true
		case e.Host == "dns.kingcdn.com" && e.Proto == "cdn/route" && strings.Contains(e.Summary, "skip umass (down)"):
			seen["route nyu"] = true
		case e.Host == "cdn.umass.edu" && strings.HasPrefix(strings.ToLower(e.Proto), "http") && strings.HasPrefix(e.Summary, "GET /"):
			seen["edge GET"] = true
		case e.Host == "shield.kingcdn.com" && strings.HasPrefix(strings.ToLower(e.Proto), "http") && strings.HasPrefix(e.Summary, "GET http://video.netcinema.com/") && strings.Contains(e.Summary, ".m4s"):
			seen["shield to origin"] = true
		}
	}
	for _, k := range []string{"netcinema dns", "route umass", "route nyu", "edge GET", "shield to origin"} {
		if !seen[k] {
			t.Errorf("no trace event for %s", k)
		}
	}
	if t.Failed() {
		for _, e := range events {
			t.Logf("%s %s %s->%s %s", e.Host, e.Proto, e.From, e.To, e.Summary)
		}
	}
}

func cdnStatusJSON(url string, v any) error {
	res, err := http.Get(url)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		return fmt.Errorf("%s: %s", url, res.Status)
	}
	return json.NewDecoder(res.Body).Decode(v)
}
