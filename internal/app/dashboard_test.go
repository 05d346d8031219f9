package app

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/testkit/browser"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/lab"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write the dashboard's screenshots to docs/img (for docs/lab.md)")

// checkDashboard drives the lab's dashboard in headless Chromium: the
// topology lists every host, events on the bus are drawn in order on the
// sequence page (real DNS traffic too), and a flood of 10,000 events/s
// neither blocks the publishers nor the page.
func checkDashboard(t *testing.T, r *lab.Running, bus *trace.Bus) {
	t.Helper()
	admin := "http://" + r.Admin.Addrs()[0].String()
	ctx := browser.New(t)
	shot := func(name string) {
		dir := t.TempDir()
		if *updateScreenshots {
			dir = filepath.Join("..", "..", "docs", "img")
		}
		browser.Screenshot(t, ctx, filepath.Join(dir, name))
	}

	// Topology: every host of the plan, in groups.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(admin+"/"),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.querySelectorAll('#groups .host').length === %d`, len(r.Plan.Hosts))),
	); err != nil {
		t.Fatalf("dashboard topology: %v", err)
	}
	shown, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#groups .host')].map(b => b.dataset.host)`))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, h := range r.Plan.Hosts {
		want = append(want, h.Name)
	}
	slices.Sort(shown)
	slices.Sort(want)
	if !slices.Equal(shown, want) {
		t.Errorf("dashboard lists hosts %v, want %v", shown, want)
	}
	groups, _ := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#groups .group')].map(g => g.dataset.group)`))
	if len(groups) < 3 || groups[0] != "root" || groups[1] != "tld" || !slices.Contains(groups, "umass.edu") {
		t.Errorf("dashboard groups %v: want root, tld, then organisations such as umass.edu", groups)
	}
	shot("dashboard-topology.png")

	// Sequence: published events are drawn in order, with host names.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(admin+"/#sequence"),
		chromedp.Poll[chromedp.Void](`document.getElementById('status').textContent === 'live'`),
	); err != nil {
		t.Fatalf("dashboard sequence: %v", err)
	}
	addr := func(host string, port int) string {
		h, ok := r.Plan.Lookup(host)
		if !ok {
			t.Fatalf("no host %s", host)
		}
		return net.JoinHostPort(h.Addr.String(), strconv.Itoa(port))
	}
	steps := []struct{ from, to, summary string }{
		{"resolver.nyu.edu", "a.root-servers.net", "test 1: A? gaia.cs.umass.edu."},
		{"a.root-servers.net", "resolver.nyu.edu", "test 2: referral to edu"},
		{"resolver.nyu.edu", "a.edu-servers.net", "test 3: A? gaia.cs.umass.edu."},
		{"a.edu-servers.net", "resolver.nyu.edu", "test 4: referral to umass.edu"},
	}
	for _, s := range steps {
		bus.Publish(trace.Event{From: addr(s.from, 5300), To: addr(s.to, 53), Proto: "dns/udp", Summary: s.summary, Bytes: 60})
	}
	if err := chromedp.Do(ctx, chromedp.Poll[chromedp.Void](`[...document.querySelectorAll('#diagram .msg')].filter(g => g.getAttribute('aria-label').includes('test ')).length === 4`)); err != nil {
		t.Fatalf("the published events were not drawn: %v", err)
	}
	labels, _ := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#diagram .msg')].map(g => g.getAttribute('aria-label')).filter(l => l.includes('test '))`))
	for i, s := range steps {
		if i >= len(labels) || !strings.Contains(labels[i], s.from+" to "+s.to) || !strings.Contains(labels[i], s.summary) {
			t.Errorf("message %d drawn as %q, want %s to %s, %q", i+1, labels[i], s.from, s.to, s.summary)
		}
	}
	// Real traffic: a query to the lab's resolver shows up as DNS messages.
	res, _ := r.Plan.Lookup("resolver.nyu.edu")
	q := new(dns.Msg)
	q.SetQuestion("www.amazon.com.", dns.TypeA)
	if _, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(q, net.JoinHostPort(res.Addr.String(), strconv.Itoa(r.Plan.Port(53)))); err != nil {
		t.Errorf("query through resolver.nyu.edu: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Poll[chromedp.Void](`[...document.querySelectorAll('#diagram .msg')].some(g => /www\.amazon\.com/.test(g.getAttribute('aria-label')) && /dns/.test(g.getAttribute('aria-label')))`)); err != nil {
		t.Errorf("the resolver's query for www.amazon.com was not drawn: %v", err)
	}
	shot("dashboard-sequence.png")

	// A flood: 10,000 events/s for 2 s. Publishers must not wait for the
	// browser; the page must keep answering; the drops are counted.
	done := make(chan time.Duration)
	floodStart := time.Now()
	go func() {
		var spent time.Duration
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 200; i++ {
			<-tick.C
			start := time.Now()
			for k := 0; k < 100; k++ {
				bus.Publish(trace.Event{From: addr("resolver.nyu.edu", 5300), To: addr("a.root-servers.net", 53), Proto: "dns/udp", Summary: "flood", Bytes: 40})
			}
			spent += time.Since(start)
		}
		done <- spent
	}()
	var slowest time.Duration
	for flooding := true; flooding; {
		select {
		case spent := <-done:
			t.Logf("dashboard flood: 20,000 events published in %v of publisher time (%.0f ns/event) with the page open", spent, float64(spent.Nanoseconds())/20000)
			flooding = false
		default:
			start := time.Now()
			if _, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`performance.now()`)); err != nil {
				t.Fatalf("the page stopped answering during the flood: %v", err)
			}
			slowest = max(slowest, time.Since(start))
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("dashboard flood: the page answered within %v at worst", slowest)
	if err := chromedp.Do(ctx, chromedp.Poll[chromedp.Void](`Number(document.getElementById('seq-dropped').textContent) > 0`)); err != nil {
		t.Errorf("no drops reported to the page after a 10,000 events/s flood (it is sent at most 2,000/s): %v", err)
	}
	// What keeps the page responsive is that it is sent at most 2,000
	// events/s whatever the bus carries: check that bound (the latency
	// above is logged; on a loaded machine it measures the machine).
	received, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`Number(document.getElementById('seq-received').textContent)`))
	if err != nil {
		t.Fatal(err)
	}
	// The flood lasts 2 s on a quiet machine, longer on a loaded one; the
	// page has been connected since before it (other events included).
	took := time.Since(floodStart)
	t.Logf("dashboard flood: the page received %v events of the 20,000 (flood and drawing took %v)", received, took)
	if limit := 2000*(took.Seconds()+1) + 200; received > limit {
		t.Errorf("the page received %v events in a %v flood; at most 2,000/s should be sent (%v)", received, took, limit)
	}
	if slowest > 30*time.Second {
		t.Errorf("the page took %v to answer during the flood", slowest)
	}

	// The dns-iterative scenario run from the page: its narration shows,
	// and the sequence page draws its messages in the order of the
	// chapter's figure (root, TLD, authoritative).
	if err := chromedp.Do(ctx,
		chromedp.Navigate(admin+"/#sequence"),
		chromedp.Poll[chromedp.Void](`document.getElementById('status').textContent === 'live'`),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('f-proto').value = 'dns'; document.getElementById('seq-filter').requestSubmit()`),
		chromedp.Poll[chromedp.Void](`document.getElementById('status').textContent === 'live' && document.getElementById('seq-count').textContent === '0'`),
		chromedp.Navigate(admin+"/#runs"),
		chromedp.Poll[chromedp.Void](`[...document.querySelectorAll('#run-list .run')].some(r => r.textContent.includes('scenario dns-iterative'))`),
		chromedp.Evaluate[chromedp.Void](`[...document.querySelectorAll('#run-list .run')].find(r => r.textContent.includes('scenario dns-iterative')).querySelector('button').click()`),
		chromedp.Poll[chromedp.Void](`document.querySelector('#run-output pre') && document.querySelector('#run-output pre').innerText.includes('Message sequence')`, chromedp.WithPollingTimeout(time.Minute)),
	); err != nil {
		out, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('run-output').innerText`))
		t.Errorf("running dns-iterative from the page: %v\n%s", err, out)
	} else {
		order := `(() => {
			const labels = [...document.querySelectorAll('#diagram .msg')].map(g => g.getAttribute('aria-label').toLowerCase());
			const at = (re) => labels.findIndex(l => re.test(l));
			return [at(/resolver\.nyu\.edu to a\.root-servers\.net, dns\/udp: query a edu\./),
				at(/resolver\.nyu\.edu to a\.edu-servers\.net, dns\/udp: query a umass\.edu\./),
				at(/resolver\.nyu\.edu to dns\.umass\.edu, dns\/udp: query a cs\.umass\.edu\./),
				at(/resolver\.nyu\.edu to gaia\.cs\.umass\.edu, dns\/udp: query a gaia\.cs\.umass\.edu\./)];
		})()`
		if err := chromedp.Do(ctx, chromedp.Navigate(admin+"/#sequence"),
			chromedp.Poll[chromedp.Void](order+`.every(i => i >= 0)`)); err != nil {
			labels, _ := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#diagram .msg')].map(g => g.getAttribute('aria-label'))`))
			t.Errorf("the dns-iterative messages were not all drawn: %v\n%s", err, strings.Join(labels, "\n"))
		} else if at, _ := chromedp.Run(ctx, chromedp.Evaluate[[]int](order)); !slices.IsSorted(at) {
			t.Errorf("dns-iterative drawn out of order: root, TLD, umass.edu, cs.umass.edu at positions %v", at)
		}
	}

	// Runs from the page: the dns-caching experiment in quick mode shows
	// its table and its plot.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(admin+"/#runs"),
		chromedp.Poll[chromedp.Void](`[...document.querySelectorAll('#run-list .run')].some(r => r.textContent.includes('experiment dns-caching'))`),
		chromedp.Evaluate[chromedp.Void](`[...document.querySelectorAll('#run-list .run')].find(r => r.textContent.includes('experiment dns-caching')).querySelector('button').click()`),
		chromedp.Poll[chromedp.Void](`document.querySelector('#run-output img.plot') && document.querySelector('#run-output img.plot').complete && document.querySelector('#run-output img.plot').naturalWidth > 0`, chromedp.WithPollingTimeout(3*time.Minute)),
	); err != nil {
		out, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('run-output').innerText`))
		t.Errorf("running dns-caching from the page: %v\n%s", err, out)
	} else {
		out, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#run-output pre').innerText`))
		if !strings.Contains(out, "MEASURED") || !strings.Contains(out, "FORMULA") {
			t.Errorf("the dns-caching run's output lacks its table:\n%s", out)
		}
		shot("dashboard-experiment.png")
	}

	// A system's own page: the resolver's cache, found through the views
	// list, with a name just resolved; its TTL counts down.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(admin+"/#views"),
		chromedp.Poll[chromedp.Void](`[...document.querySelectorAll('#view-list a')].some(a => a.textContent === 'DNS cache (resolver.nyu.edu)')`),
	); err != nil {
		t.Fatalf("the views list: %v", err)
	}
	href, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('#view-list a')].find(a => a.textContent === 'DNS cache (resolver.nyu.edu)').getAttribute('href')`))
	if err != nil {
		t.Fatal(err)
	}
	var page string
	for i := 0; i < 20 && !strings.Contains(page, "gaia.cs.umass.edu."); i++ {
		// The page reloads itself every second: retry a read that
		// straddles a reload.
		chromedp.Do(ctx, chromedp.Navigate(admin+href))
		page, _ = chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	}
	// (the dns-iterative scenario flushed the cache and resolved gaia)
	if !strings.Contains(page, "gaia.cs.umass.edu.") {
		t.Errorf("the resolver's cache page lacks gaia.cs.umass.edu.:\n%s", page)
	}
	ttlOf := func() int {
		resp, err := http.Get(admin + href + "?format=json")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var entries []struct {
			Name, Type string
			TTL        int
		}
		if err := json.NewDecoder(resp.Body).Decode(&entries); err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name == "gaia.cs.umass.edu." && e.Type == "A" {
				return e.TTL
			}
		}
		t.Fatalf("gaia.cs.umass.edu. A not in the cache page's JSON: %+v", entries)
		return 0
	}
	first := ttlOf()
	time.Sleep(1100 * time.Millisecond)
	if next := ttlOf(); next >= first {
		t.Errorf("the cached TTL went from %d to %d in a second", first, next)
	}
}
