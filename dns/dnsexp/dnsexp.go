// Package dnsexp holds DNS's lab experiment: dns-caching, the resolution
// latency and the queries to each level of the hierarchy with a cold and a
// warm local DNS server. internal/app registers it in the lab's registry.
package dnsexp

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/plot"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/lab/experiment"
	"github.com/applayer/applayer/lab/link"
)

// Caching is the dns-caching experiment.
func Caching() experiment.Experiment {
	return experiment.Experiment{
		Name:    "dns-caching",
		Summary: "resolution latency and queries to the root, TLD and authoritative servers with a cold vs a warm local DNS server, delays per level",
		Run:     run,
	}
}

// level is one server of the chapter's hierarchy and its one-way delay
// from the local DNS server (at scale 1).
type level struct {
	host, zone string
	delay      time.Duration
}

var levels = []level{
	{"a.root-servers.net", ".", 60 * time.Millisecond},
	{"a.edu-servers.net", "edu", 40 * time.Millisecond},
	{"dns.umass.edu", "umass.edu", 25 * time.Millisecond},
	{"gaia.cs.umass.edu", "cs.umass.edu", 15 * time.Millisecond},
}

const resolverName = "resolver.nyu.edu"

// query is one resolution asked of the local DNS server.
type query struct {
	label, name string
	warm        bool // asked after the cold query, cache kept
}

var queries = []query{
	{"cold: gaia.cs.umass.edu", "gaia.cs.umass.edu.", false},
	{"warm: gaia.cs.umass.edu again", "gaia.cs.umass.edu.", true},
	{"warm: dns.umass.edu (umass.edu cached)", "dns.umass.edu.", true},
}

func run(ctx context.Context, env experiment.Env) (*experiment.Result, error) {
	scales := []float64{0.5, 1, 2}
	repeat := 5
	if env.Quick {
		scales = []float64{1}
	}
	fmt.Fprintf(env.Stdout, "dns-caching: %s (the local DNS server, a recursive resolver) resolves names for a client on its LAN. Each server of the hierarchy is\n", resolverName)
	fmt.Fprintf(env.Stdout, "behind a link with its own one-way delay d (at scale 1:")
	for _, l := range levels {
		fmt.Fprintf(env.Stdout, " %s %s", l.zone, l.delay)
	}
	fmt.Fprintf(env.Stdout, "). Formula: latency = sum over the queries the resolver sent of 2 d of the server asked\n")
	fmt.Fprintf(env.Stdout, "(queries counted on each server's link); a warm cache answers at once and asks the root nothing. Each latency is the least of %d runs, each on a fresh lab (a loaded machine only adds time).\n", repeat)
	// The resolver's own work (parsing, cache, the walk's logic) is
	// measured on a lab whose links have no delay, and added to the
	// formula: what is left to compare is what the links cost.
	baseRuns := make([][]time.Duration, len(queries))
	for rep := 0; rep < repeat; rep++ {
		if err := runOnce(ctx, env, 1e-6, func(i int, lat, _ time.Duration, _ []int64) { baseRuns[i] = append(baseRuns[i], lat) }); err != nil {
			return nil, err
		}
	}
	base := make([]time.Duration, len(queries))
	for i := range base {
		base[i] = slices.Min(baseRuns[i])
	}
	fmt.Fprintf(env.Stdout, "The resolver's own time, measured with no delay on the links and added to each formula:")
	for i, q := range queries {
		fmt.Fprintf(env.Stdout, " %s %.1f ms;", q.label, base[i].Seconds()*1000)
	}
	fmt.Fprintf(env.Stdout, "\n\n")
	res := &experiment.Result{}
	var xs []float64
	meas := make([][]float64, len(queries))
	form := make([][]float64, len(queries))
	for _, sc := range scales {
		xs = append(xs, 2*float64(levels[0].delay.Milliseconds())*sc)
		sum := make([]struct {
			lat, want []time.Duration
			perLevel  []int64
		}, len(queries))
		for i := range sum {
			sum[i].perLevel = make([]int64, len(levels))
		}
		for rep := 0; rep < repeat; rep++ {
			if err := runOnce(ctx, env, sc, func(i int, lat, want time.Duration, perLevel []int64) {
				sum[i].lat = append(sum[i].lat, lat)
				sum[i].want = append(sum[i].want, want)
				for j, n := range perLevel {
					sum[i].perLevel[j] += n
				}
			}); err != nil {
				return nil, err
			}
		}
		for i, q := range queries {
			// The least of the runs: the formula's part is the same in each
			// (the same queries), so the least time is the least noise.
			lat := slices.Min(sum[i].lat)
			want := slices.Min(sum[i].want) + base[i]
			var counts string
			for j, l := range levels {
				counts += fmt.Sprintf(" %s:%g", l.zone, float64(sum[i].perLevel[j])/float64(repeat))
			}
			res.Rows = append(res.Rows, experiment.Row{
				Case:     fmt.Sprintf("%s, root RTT %gms (queries%s)", q.label, xs[len(xs)-1], counts),
				Measured: lat.Seconds() * 1000, Formula: want.Seconds() * 1000, Unit: "ms",
				Tolerance: 0.10, Slack: 10,
			})
			root := float64(sum[i].perLevel[0]) / float64(repeat)
			rootWant := 1.0
			if q.warm {
				rootWant = 0
			}
			res.Rows = append(res.Rows, experiment.Row{
				Case:     fmt.Sprintf("%s, root RTT %gms: queries to the root", q.label, xs[len(xs)-1]),
				Measured: root, Formula: rootWant, Unit: "queries", Tolerance: 0.01, Slack: 0.01,
			})
			meas[i] = append(meas[i], lat.Seconds()*1000)
			form[i] = append(form[i], want.Seconds()*1000)
		}
	}
	if err := experiment.WriteTable(env.Stdout, res.Rows); err != nil {
		return nil, err
	}
	chart := plot.Chart{Title: "DNS resolution latency, cold vs warm local DNS server", XLabel: "root RTT (ms; other levels scaled alike)", YLabel: "resolution latency (ms)"}
	for i, q := range queries {
		chart.Series = append(chart.Series,
			plot.Series{Name: q.label + ", measured", X: xs, Y: meas[i], Points: true},
			plot.Series{Name: q.label + ", formula", X: xs, Y: form[i], Dashed: true})
	}
	res.Plots = []string{env.Path("dns-caching.png"), env.Path("dns-caching.svg")}
	if err := chart.Save(res.Plots...); err != nil {
		return nil, err
	}
	return res, nil
}

// runOnce starts a fresh lab (a cold resolver) with the levels' delays
// times scale and asks each query in turn, reporting its latency, the
// formula's and the queries each level received.
func runOnce(ctx context.Context, env experiment.Env, scale float64, each func(i int, lat, want time.Duration, perLevel []int64)) error {
	topo := &lab.Topology{}
	for _, l := range levels {
		zc, _ := json.Marshal(map[string]any{"zones": []map[string]any{{"origin": l.zone}}})
		topo.Hosts = append(topo.Hosts, lab.Host{Name: l.host,
			Link:     link.Config{Delay: time.Duration(float64(l.delay) * scale)}.String(),
			Services: []lab.ServiceSpec{{Kind: "dns-authority", Config: zc}}})
	}
	topo.Hosts = append(topo.Hosts, lab.Host{Name: resolverName, Services: []lab.ServiceSpec{{Kind: "dns-resolver"}}})
	r, stop, err := experiment.StartLab(ctx, env, topo)
	if err != nil {
		return err
	}
	defer stop()
	res, _ := r.Plan.Lookup(resolverName)
	addr := net.JoinHostPort(res.Addr.String(), strconv.Itoa(r.Plan.Port(53)))
	c := &dns.Client{Net: "udp", Timeout: 10 * time.Second}
	for i, q := range queries {
		before := make([]int64, len(levels))
		for j, l := range levels {
			before[j] = r.Link(l.host).Down.Packets()
		}
		m := new(dns.Msg)
		m.SetQuestion(q.name, dns.TypeA)
		m.RecursionDesired = true
		start := time.Now()
		resp, _, err := c.ExchangeContext(ctx, m, addr)
		lat := time.Since(start)
		if err != nil {
			return fmt.Errorf("dns-caching: %s: %w", q.label, err)
		}
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) == 0 {
			return fmt.Errorf("dns-caching: %s: %s with %d answers", q.label, dns.RcodeToString[resp.Rcode], len(resp.Answer))
		}
		var want time.Duration
		per := make([]int64, len(levels))
		for j, l := range levels {
			lk := r.Link(l.host)
			per[j] = lk.Down.Packets() - before[j]
			want += time.Duration(per[j]) * 2 * lk.Down.Delay()
		}
		each(i, lat, want, per)
	}
	return nil
}
