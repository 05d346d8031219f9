// Package webexp holds the Web's lab experiments: page-load (non-persistent,
// persistent, pipelined and HTTP/2 page loads across RTTs against the
// chapter's formulas), caching (the chapter's institutional cache on a
// 1.54 Mbit/s access link) and quic-vs-tcp (HTTP/1.1, HTTP/2 and HTTP/3
// page loads under loss). internal/app registers them in the lab's
// experiment registry.
package webexp

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/applayer/applayer/internal/plot"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/lab/experiment"
	"github.com/applayer/applayer/lab/link"
	"github.com/applayer/applayer/web/client"
)

// PageLoad is the page-load experiment.
func PageLoad() experiment.Experiment {
	return experiment.Experiment{
		Name:    "page-load",
		Summary: "page of 10 objects: non-persistent (2 RTT + L/R each) vs persistent vs pipelined vs HTTP/2, across RTTs, against the formulas",
		Run:     runPageLoad,
	}
}

// pageSetup is one page-load configuration.
type pageSetup struct {
	Objects int     // referenced objects besides the base file
	Size    int     // bytes of each object
	Rate    float64 // the server's access link, bits/s each way
	RTTs    []time.Duration
	Repeat  int // loads per mode and RTT; the median is reported
}

func pageSetupFor(quick bool) pageSetup {
	if quick {
		return pageSetup{Objects: 10, Size: 10000, Rate: 2e6, RTTs: []time.Duration{20 * time.Millisecond, 60 * time.Millisecond}, Repeat: 3}
	}
	return pageSetup{Objects: 10, Size: 10000, Rate: 2e6, RTTs: []time.Duration{20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond, 200 * time.Millisecond}, Repeat: 3}
}

// pageModes are the modes measured, with the chapter's formula for each:
// the page's base file and n objects over a link of round trip rtt, with
// tx the transmission time of every response (and request) on the link.
var pageModes = []struct {
	mode, label string
	formula     func(n int, rtt, tx time.Duration) time.Duration
}{
	{client.ModeNonPersistent, "non-persistent", func(n int, rtt, tx time.Duration) time.Duration {
		return time.Duration(n+1)*2*rtt + tx // a handshake and a request per object
	}},
	{client.ModePersistent, "persistent", func(n int, rtt, tx time.Duration) time.Duration {
		return 2*rtt + time.Duration(n)*rtt + tx // one handshake, a round trip per object
	}},
	{client.ModePipelined, "pipelined", func(n int, rtt, tx time.Duration) time.Duration {
		return 3*rtt + tx // the base file, then every object in one round trip
	}},
	{client.ModeH2, "HTTP/2", func(n int, rtt, tx time.Duration) time.Duration {
		return 3*rtt + tx // as pipelined, multiplexed on one connection
	}},
}

// writePage writes index.html referencing n objects of size bytes (random,
// so nothing compresses them) into dir.
func writePage(dir string, n, size int) error {
	var b strings.Builder
	b.WriteString("<!doctype html>\n<html><head><title>page-load</title></head><body>\n")
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("obj%02d.bin", i)
		fmt.Fprintf(&b, "<img src=\"/%s\">\n", name)
		data := make([]byte, size)
		rand.Read(data)
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	b.WriteString("</body></html>\n")
	return os.WriteFile(filepath.Join(dir, "index.html"), []byte(b.String()), 0o644)
}

func runPageLoad(ctx context.Context, env experiment.Env) (*experiment.Result, error) {
	s := pageSetupFor(env.Quick)
	site, err := os.MkdirTemp("", "applayer-page-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(site)
	if err := writePage(site, s.Objects, s.Size); err != nil {
		return nil, err
	}
	fmt.Fprintf(env.Stdout, "page-load: a base file and %d objects of %d bytes on gaia.cs.umass.edu, whose access link has rate R = %s/s each way and one-way delay RTT/2; the client is outside the lab (unshaped).\n",
		s.Objects, s.Size, link.FormatRate(s.Rate))
	fmt.Fprintf(env.Stdout, "Formulas (tx = bytes on the link x 8 / R, measured on the link): non-persistent (n+1) x 2 RTT + tx; persistent 2 RTT + n RTT + tx; pipelined and HTTP/2 3 RTT + tx.\n\n")
	// measure loads the page Repeat times in each mode over a link of
	// round trip rtt and gives the medians of the time taken and of the
	// formula's.
	measure := func(rtt time.Duration, each func(label string, total, want time.Duration)) error {
		siteCfg, _ := json.Marshal(map[string]any{"sites": []map[string]any{{"root": site}}})
		topo := &lab.Topology{
			Hosts: []lab.Host{{Name: "gaia.cs.umass.edu", Link: link.Config{Delay: rtt / 2, Up: s.Rate, Down: s.Rate}.String(),
				Services: []lab.ServiceSpec{{Kind: "http-server", Config: siteCfg}}}},
		}
		r, stop, err := experiment.StartLab(ctx, env, topo)
		if err != nil {
			return err
		}
		defer stop()
		h, _ := r.Plan.Lookup("gaia.cs.umass.edu")
		l := r.Link("gaia.cs.umass.edu")
		base := fmt.Sprintf("http://%s:%d/", h.Addr, r.Plan.Port(80))
		for _, m := range pageModes {
			var totals, wants []time.Duration
			for rep := 0; rep < s.Repeat; rep++ {
				total, want, err := loadOnce(ctx, base, m.mode, s, rtt, l, m.formula)
				if err != nil {
					return fmt.Errorf("page-load: %s at RTT %s: %w", m.label, rtt, err)
				}
				totals, wants = append(totals, total), append(wants, want)
			}
			slices.Sort(totals)
			slices.Sort(wants)
			each(m.label, totals[len(totals)/2], wants[len(wants)/2])
		}
		return nil
	}
	// The client's and the server's own time (parsing, the loopback
	// sockets, the link's timers) per load, measured over a link of 2 ms
	// round trip beyond what the formula gives for it, and added to the
	// formula: what is left to compare is what the RTTs cost.
	own := map[string]time.Duration{}
	if err := measure(2*time.Millisecond, func(label string, total, want time.Duration) { own[label] = max(0, total-want) }); err != nil {
		return nil, err
	}
	fmt.Fprintf(env.Stdout, "Own time per page load (measured at RTT 2ms beyond its formula; added to each formula):")
	for _, m := range pageModes {
		fmt.Fprintf(env.Stdout, " %s %.1f ms;", m.label, own[m.label].Seconds()*1000)
	}
	fmt.Fprintf(env.Stdout, "\nEach time is the median of %d loads.\n\n", s.Repeat)
	res := &experiment.Result{}
	measured := map[string][]float64{}
	formula := map[string][]float64{}
	var xs []float64
	for _, rtt := range s.RTTs {
		xs = append(xs, float64(rtt.Milliseconds()))
		if err := measure(rtt, func(label string, total, want time.Duration) {
			want += own[label]
			res.Rows = append(res.Rows, experiment.Row{
				Case:     fmt.Sprintf("%s, RTT %s", label, rtt),
				Measured: total.Seconds(), Formula: want.Seconds(), Unit: "s",
				Tolerance: 0.10, Slack: 0.050,
			})
			measured[label] = append(measured[label], total.Seconds())
			formula[label] = append(formula[label], want.Seconds())
		}); err != nil {
			return nil, err
		}
	}
	if err := experiment.WriteTable(env.Stdout, res.Rows); err != nil {
		return nil, err
	}
	chart := plot.Chart{
		Title:  fmt.Sprintf("Page load: base file + %d objects of %d kB, R = %s/s", s.Objects, s.Size/1000, link.FormatRate(s.Rate)),
		XLabel: "RTT (ms)", YLabel: "page load time (s)",
	}
	for _, m := range pageModes {
		chart.Series = append(chart.Series,
			plot.Series{Name: m.label + ", measured", X: xs, Y: measured[m.label], Points: true},
			plot.Series{Name: m.label + ", formula", X: xs, Y: formula[m.label], Dashed: true})
	}
	res.Plots = []string{env.Path("page-load.png"), env.Path("page-load.svg")}
	if err := chart.Save(res.Plots...); err != nil {
		return nil, err
	}
	return res, nil
}

// loadOnce loads the page once in mode and returns the time it took and
// the formula's, with tx from the bytes the link carried.
func loadOnce(ctx context.Context, base, mode string, s pageSetup, rtt time.Duration, l *link.Link,
	formula func(n int, rtt, tx time.Duration) time.Duration) (time.Duration, time.Duration, error) {
	up0, down0 := l.Up.Sent(), l.Down.Sent()
	pr, err := client.LoadPage(ctx, base, client.PageOptions{Mode: mode})
	if err != nil {
		return 0, 0, err
	}
	for _, o := range pr.Objects {
		if o.Err != nil || o.Status != 200 {
			return 0, 0, fmt.Errorf("%s: status %d, %v", o.URL, o.Status, o.Err)
		}
	}
	if len(pr.Objects) != s.Objects+1 {
		return 0, 0, fmt.Errorf("%d objects fetched, want %d", len(pr.Objects), s.Objects+1)
	}
	bytes := (l.Up.Sent() - up0) + (l.Down.Sent() - down0)
	tx := time.Duration(float64(bytes) * 8 / s.Rate * float64(time.Second))
	return pr.Total, formula(s.Objects, rtt, tx), nil
}
