package dnsexp

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/plot"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/lab/experiment"
	"github.com/applayer/applayer/lab/link"
)

// DDoS is the dns-ddos experiment: "caching lets local DNS servers bypass
// the root", with and without serve-stale.
func DDoS() experiment.Experiment {
	return experiment.Experiment{
		Name:    "dns-ddos",
		Summary: "an attacker floods the root and edu servers with random names: warm local DNS servers keep answering known names (once their TTLs run out, only with serve-stale), cold ones fail",
		Run:     runDDoS,
	}
}

// ddosSetup is one dns-ddos configuration.
type ddosSetup struct {
	Duration time.Duration // of the attack, during which clients query
	Every    time.Duration // one client query per resolver this often
	Flood    int           // attack queries per second, to each flooded server
	Link     link.Config   // the root's and the TLD's access links
	Timeout  time.Duration // a client's wait for one answer
	// TTL caps every TTL the resolvers cache (their max_ttl): time is
	// scaled so that the warm caches run out during the attack.
	TTL time.Duration
	// Resolve is how long a resolver tries before it gives up (its
	// resolve_timeout), then answers stale or SERVFAIL.
	Resolve time.Duration
}

func ddosSetupFor(quick bool) ddosSetup {
	s := ddosSetup{Duration: 12 * time.Second, Every: 250 * time.Millisecond, Flood: 3000,
		Link:    link.Config{Delay: 10 * time.Millisecond, Down: 2e3, Queue: 100},
		Timeout: 3 * time.Second, TTL: 5 * time.Second, Resolve: time.Second}
	if quick {
		s.Duration, s.TTL = 6*time.Second, 4*time.Second
	}
	return s
}

// ddosSample is one client query during the attack.
type ddosSample struct {
	at       time.Duration // since the attack started
	latency  time.Duration
	answered bool
}

var ddosNames = []string{"gaia.cs.umass.edu.", "dns.umass.edu."}

// ddosResolver is one of the experiment's local DNS servers.
type ddosResolver struct {
	host  string
	warm  bool // resolved ddosNames before the attack; else emptied before each query
	stale bool // serve-stale on (RFC 8767)
}

var ddosResolvers = []ddosResolver{
	{"warm.nyu.edu", true, true},
	{"warm-nostale.nyu.edu", true, false},
	{"cold.nyu.edu", false, true},
	{"cold-nostale.nyu.edu", false, false},
}

func (d ddosResolver) label() string {
	l := "cold"
	if d.warm {
		l = "warm"
	}
	if d.stale {
		return l + ", serve-stale"
	}
	return l + ", no serve-stale"
}

func runDDoS(ctx context.Context, env experiment.Env) (*experiment.Result, error) {
	s := ddosSetupFor(env.Quick)
	fmt.Fprintf(env.Stdout, "dns-ddos: an attacker sends %d queries/s for random names under edu. to each of a.root-servers.net and a.edu-servers.net, whose access links are %s.\n", s.Flood, s.Link)
	fmt.Fprintf(env.Stdout, "Four local DNS servers: warm.nyu.edu and warm-nostale.nyu.edu resolved %v just before the attack; cold.nyu.edu and cold-nostale.nyu.edu have their caches emptied before each query.\n", ddosNames)
	fmt.Fprintf(env.Stdout, "The -nostale ones have serve-stale (RFC 8767) off. A client asks each, every %s for %s, one of those names (timeout %s).\n", s.Every, s.Duration, s.Timeout)
	fmt.Fprintf(env.Stdout, "Time is scaled: every TTL the resolvers cache is capped at %s (their max_ttl; real delegations live for hours or days), so the warm caches run out during the attack;\n", s.TTL)
	fmt.Fprintf(env.Stdout, "a resolver gives up a resolution after %s (resolve_timeout), then answers what it has stale, or SERVFAIL.\n", s.Resolve)
	fmt.Fprintf(env.Stdout, "Claim: a warm resolver answers from its cache without asking the root or TLD; a cold one must get through the flooded links and fails;\nonce the TTLs run out, serve-stale keeps the warm one answering (late by the resolve timeout) and without it the warm one fails too.\n\n")
	topo := &lab.Topology{}
	for _, l := range levels {
		zc, _ := json.Marshal(map[string]any{"zones": []map[string]any{{"origin": l.zone}}})
		lc := link.Config{Delay: 10 * time.Millisecond}
		if l.zone == "." || l.zone == "edu" {
			lc = s.Link
		}
		topo.Hosts = append(topo.Hosts, lab.Host{Name: l.host, Link: lc.String(),
			Services: []lab.ServiceSpec{{Kind: "dns-authority", Config: zc}}})
	}
	for _, rs := range ddosResolvers {
		stale := "1h"
		if !rs.stale {
			stale = "-1s"
		}
		// No prefetch: a warm cache is not refreshed before it runs out
		// (the refresh would only fail under the flood, or race it).
		rc, _ := json.Marshal(map[string]any{"resolve_timeout": s.Resolve.String(), "max_ttl": s.TTL.String(), "serve_stale": stale, "no_prefetch": true})
		topo.Hosts = append(topo.Hosts, lab.Host{Name: rs.host, Services: []lab.ServiceSpec{{Kind: "dns-resolver", Config: rc}}})
	}
	r, stop, err := experiment.StartLab(ctx, env, topo)
	if err != nil {
		return nil, err
	}
	defer stop()
	addrOf := func(host string, port int) string {
		h, _ := r.Plan.Lookup(host)
		return net.JoinHostPort(h.Addr.String(), strconv.Itoa(port))
	}
	flushers := map[string]interface{ Flush(string) int }{}
	for _, e := range r.Entries {
		if f, ok := e.Service.(interface{ Flush(string) int }); ok {
			flushers[e.Host] = f
		}
	}
	c := &dns.Client{Net: "udp", Timeout: s.Timeout}
	ask := func(ctx context.Context, resolver, name string) (time.Duration, bool) {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		m.RecursionDesired = true
		start := time.Now()
		resp, _, err := c.ExchangeContext(ctx, m, addrOf(resolver, r.Plan.Port(53)))
		return time.Since(start), err == nil && resp.Rcode == dns.RcodeSuccess && len(resp.Answer) > 0
	}
	for _, rs := range ddosResolvers {
		if _, ok := flushers[rs.host]; !rs.warm && !ok {
			return nil, fmt.Errorf("dns-ddos: %s's resolver cannot be emptied", rs.host)
		}
	}

	// The attack: random names to the root and the TLD, each datagram
	// crossing the target's access link (shaped at the sender, as the lab
	// shapes every datagram to a lab host). Its sockets are opened first,
	// so that the warm caches' TTLs start running just before it.
	var conns []net.Conn
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	for _, target := range []string{levels[0].host, levels[1].host} {
		dl := r.Link(target)
		d := &link.Dialer{Next: &net.Dialer{}, Route: func(string, net.Addr) (out, in link.Path) {
			return link.Path{dl.Down}, link.Path{dl.Up}
		}}
		// Many senders: a sender waits while its datagram is on the link
		// (as a socket's send buffer), so together they keep the queue full.
		for range floodSenders {
			conn, err := d.DialContext(ctx, "udp", addrOf(target, r.Plan.Port(53)))
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("dns-ddos: attacker: %w", err)
			}
			conns = append(conns, conn)
		}
	}
	// The warm caches keep what they learn now for s.TTL: from no
	// earlier than warming to no later than warmed (plus s.TTL).
	warming := time.Now()
	for _, rs := range ddosResolvers {
		if !rs.warm {
			continue
		}
		for _, n := range ddosNames {
			if _, ok := ask(ctx, rs.host, n); !ok {
				closeAll()
				return nil, fmt.Errorf("dns-ddos: warming %s with %s failed before the attack", rs.host, n)
			}
		}
	}
	warmed := time.Now()
	actx, cancel := context.WithCancel(ctx)
	var sent, dropped atomic.Int64
	var wg sync.WaitGroup
	for _, conn := range conns {
		wg.Go(func() {
			defer conn.Close()
			flood(actx, conn, s.Flood/floodSenders, &sent)
		})
	}
	// Let the flood fill the links' queues before the clients ask.
	select {
	case <-ctx.Done():
		cancel()
		wg.Wait()
		return nil, ctx.Err()
	case <-time.After(time.Second):
	}
	var before [2]int64
	for i, l := range levels[:2] {
		before[i] = r.Link(l.host).Down.Packets()
	}
	start := time.Now()
	// When the warm caches run out, on the clients' clock: no earlier
	// than lasts, no later than expiry. A query asked within a margin of
	// that is counted neither before nor after.
	lasts, expiry := warming.Add(s.TTL).Sub(start), warmed.Add(s.TTL).Sub(start)
	const margin = 500 * time.Millisecond
	samples := map[string][]ddosSample{}
	var mu sync.Mutex
	var cw sync.WaitGroup
	for i := 0; time.Since(start) < s.Duration; i++ {
		for _, rs := range ddosResolvers {
			name := ddosNames[i%len(ddosNames)]
			at := time.Since(start)
			cw.Go(func() {
				if !rs.warm {
					flushers[rs.host].Flush(".")
				}
				lat, ok := ask(ctx, rs.host, name)
				mu.Lock()
				samples[rs.host] = append(samples[rs.host], ddosSample{at: at, latency: lat, answered: ok})
				mu.Unlock()
			})
		}
		select {
		case <-ctx.Done():
			cancel()
			cw.Wait()
			wg.Wait()
			return nil, ctx.Err()
		case <-time.After(s.Every):
		}
	}
	cw.Wait()
	cancel()
	wg.Wait()
	for _, ss := range samples {
		slices.SortFunc(ss, func(a, b ddosSample) int { return cmp.Compare(a.at, b.at) })
	}
	var through int64
	for i, l := range levels[:2] {
		dropped.Add(r.Link(l.host).Down.Dropped())
		through += r.Link(l.host).Down.Packets() - before[i]
	}
	fmt.Fprintf(env.Stdout, "during the clients' queries %d datagrams crossed the two links (attack and resolvers together)\n", through)
	fmt.Fprintf(env.Stdout, "attack: %d queries sent, %d datagrams dropped at the root's and TLD's links\n", sent.Load(), dropped.Load())
	fmt.Fprintf(env.Stdout, "the warm caches ran out %.1fs into the clients' queries (%s after warming)\n\n", expiry.Seconds(), s.TTL)

	// frac is the fraction of rs's samples asked in [from, to) answered,
	// and how many there were.
	frac := func(host string, from, to time.Duration) (float64, int) {
		ok, n := 0, 0
		for _, sm := range samples[host] {
			if sm.at >= from && sm.at < to {
				n++
				if sm.answered {
					ok++
				}
			}
		}
		return float64(ok) / float64(max(n, 1)), n
	}
	const never = time.Duration(1 << 62)
	for _, rs := range ddosResolvers {
		all, n := frac(rs.host, 0, never)
		var lat time.Duration
		ok := 0
		for _, sm := range samples[rs.host] {
			if sm.answered {
				ok++
				lat += sm.latency
			}
		}
		mean := 0.0
		if ok > 0 {
			mean = (lat / time.Duration(ok)).Seconds() * 1000
		}
		fmt.Fprintf(env.Stdout, "%s (%s): %d of %d answered (%.0f%%), mean latency of the answered %.1f ms", rs.host, rs.label(), ok, n, all*100, mean)
		if rs.warm {
			b, nb := frac(rs.host, 0, lasts-margin)
			a, na := frac(rs.host, expiry+margin, never)
			fmt.Fprintf(env.Stdout, "; before its TTLs ran out %.0f%% of %d, after %.0f%% of %d", b*100, nb, a*100, na)
		}
		fmt.Fprintln(env.Stdout)
	}

	// Checked: the flood holds the links (at least 90% of the attack's
	// datagrams dropped); the warm resolvers answer (at least 90%) while
	// their TTLs last, and after, with serve-stale; without it, and cold,
	// a resolver answers at most 20% (it needs a referral each from the
	// root and the TLD to slip through the flood within its resolve
	// timeout: rare, and a loaded machine, whose stalls let the link's
	// queue drain, makes it less rare, not more).
	row := func(c string, m, f, tol, slack float64) experiment.Row {
		return experiment.Row{Case: c, Measured: m, Formula: f, Tolerance: tol, Slack: slack}
	}
	res := &experiment.Result{}
	res.Rows = append(res.Rows, row("attack: fraction of its datagrams dropped at the root's and TLD's links", float64(dropped.Load())/float64(max(sent.Load(), 1)), 1, 0.10, 0))
	for _, rs := range ddosResolvers {
		switch {
		case rs.warm && rs.stale:
			b, _ := frac(rs.host, 0, lasts-margin)
			a, _ := frac(rs.host, expiry+margin, never)
			res.Rows = append(res.Rows,
				row(rs.label()+": fraction answered while its TTLs last", b, 1, 0.10, 0),
				row(rs.label()+": fraction answered after its TTLs ran out", a, 1, 0.10, 0))
		case rs.warm:
			b, _ := frac(rs.host, 0, lasts-margin)
			a, _ := frac(rs.host, expiry+margin, never)
			res.Rows = append(res.Rows,
				row(rs.label()+": fraction answered while its TTLs last", b, 1, 0.10, 0),
				row(rs.label()+": fraction answered after its TTLs ran out", a, 0, 0.10, 0.2))
		default:
			a, _ := frac(rs.host, 0, never)
			res.Rows = append(res.Rows, row(rs.label()+": fraction answered during the attack", a, 0, 0.10, 0.2))
		}
	}
	fmt.Fprintln(env.Stdout)
	if err := experiment.WriteTable(env.Stdout, res.Rows); err != nil {
		return nil, err
	}
	return res, ddosPlots(env, s, expiry, samples, res)
}

// floodSenders is how many sockets the attacker floods each target from.
const floodSenders = 120

// flood sends perSecond queries a second for random names under edu. on
// conn until ctx ends.
func flood(ctx context.Context, conn net.Conn, perSecond int, sent *atomic.Int64) {
	t := time.NewTicker(time.Second / time.Duration(max(perSecond, 1)))
	defer t.Stop()
	m := new(dns.Msg)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.SetQuestion(fmt.Sprintf("%03x.edu.", rand.IntN(4096)), dns.TypeA) // short: 25-byte datagrams
		b, err := m.Pack()
		if err != nil {
			return
		}
		if _, err := conn.Write(b); err != nil && ctx.Err() == nil {
			return
		}
		sent.Add(1)
	}
}

// ddosPlots writes the fraction answered per second and the latency of
// each answered query over time, for every resolver, with the moment the
// warm caches ran out.
func ddosPlots(env experiment.Env, s ddosSetup, expiry time.Duration, samples map[string][]ddosSample, res *experiment.Result) error {
	one := 1.05
	zero := 0.0
	ans := plot.Chart{Title: fmt.Sprintf("Under a DDoS on the root and TLD: answered queries per second (TTLs capped at %s)", s.TTL), XLabel: "time since the clients started asking (s)", YLabel: "fraction answered", YMin: &zero, YMax: &one}
	lat := plot.Chart{Title: "Under a DDoS on the root and TLD: latency of answered queries", XLabel: "time since the clients started asking (s)", YLabel: "latency (ms)", YMin: &zero}
	maxLat := 0.0
	for _, rs := range ddosResolvers {
		secs := int(s.Duration/time.Second) + 1
		okN, all := make([]float64, secs), make([]float64, secs)
		ls := plot.Series{Name: rs.host + " (" + rs.label() + ")", Points: true}
		for _, sm := range samples[rs.host] {
			b := min(int(sm.at/time.Second), secs-1)
			all[b]++
			if sm.answered {
				okN[b]++
				ls.X = append(ls.X, sm.at.Seconds())
				ls.Y = append(ls.Y, sm.latency.Seconds()*1000)
				maxLat = max(maxLat, sm.latency.Seconds()*1000)
			}
		}
		as := plot.Series{Name: rs.host + " (" + rs.label() + ")", Points: true}
		for b := range secs {
			if all[b] > 0 {
				as.X = append(as.X, float64(b)+0.5)
				as.Y = append(as.Y, okN[b]/all[b])
			}
		}
		ans.Series = append(ans.Series, as)
		if len(ls.X) > 0 {
			lat.Series = append(lat.Series, ls)
		}
	}
	if e := expiry.Seconds(); e > 0 {
		ans.Series = append(ans.Series, plot.Series{Name: "warm caches' TTLs run out", X: []float64{e, e}, Y: []float64{0, 1}, Dashed: true})
		lat.Series = append(lat.Series, plot.Series{Name: "warm caches' TTLs run out", X: []float64{e, e}, Y: []float64{0, max(maxLat, 1)}, Dashed: true})
	}
	res.Plots = []string{env.Path("dns-ddos.png"), env.Path("dns-ddos.svg"), env.Path("dns-ddos-latency.png"), env.Path("dns-ddos-latency.svg")}
	if err := ans.Save(res.Plots[:2]...); err != nil {
		return err
	}
	return lat.Save(res.Plots[2:]...)
}
