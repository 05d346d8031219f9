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
}

func pageSetupFor(quick bool) pageSetup {
	if quick {
		return pageSetup{Objects: 10, Size: 10000, Rate: 2e6, RTTs: []time.Duration{40 * time.Millisecond, 100 * time.Millisecond}}
	}
	return pageSetup{Objects: 10, Size: 10000, Rate: 2e6, RTTs: []time.Duration{20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond, 200 * time.Millisecond}}
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
	res := &experiment.Result{}
	measured := map[string][]float64{}
	formula := map[string][]float64{}
	var xs []float64
	for _, rtt := range s.RTTs {
		xs = append(xs, float64(rtt.Milliseconds()))
		siteCfg, _ := json.Marshal(map[string]any{"sites": []map[string]any{{"root": site}}})
		topo := &lab.Topology{
			Hosts: []lab.Host{{Name: "gaia.cs.umass.edu", Link: link.Config{Delay: rtt / 2, Up: s.Rate, Down: s.Rate}.String(),
				Services: []lab.ServiceSpec{{Kind: "http-server", Config: siteCfg}}}},
		}
		r, stop, err := experiment.StartLab(ctx, env, topo)
		if err != nil {
			return nil, err
		}
		h, _ := r.Plan.Lookup("gaia.cs.umass.edu")
		l := r.Link("gaia.cs.umass.edu")
		base := fmt.Sprintf("http://%s:%d/", h.Addr, r.Plan.Port(80))
		for _, m := range pageModes {
			up0, down0 := l.Up.Sent(), l.Down.Sent()
			pr, err := client.LoadPage(ctx, base, client.PageOptions{Mode: m.mode})
			if err != nil {
				stop()
				return nil, fmt.Errorf("page-load: %s at RTT %s: %w", m.label, rtt, err)
			}
			for _, o := range pr.Objects {
				if o.Err != nil || o.Status != 200 {
					stop()
					return nil, fmt.Errorf("page-load: %s at RTT %s: %s: status %d, %v", m.label, rtt, o.URL, o.Status, o.Err)
				}
			}
			if len(pr.Objects) != s.Objects+1 {
				stop()
				return nil, fmt.Errorf("page-load: %s: %d objects fetched, want %d", m.label, len(pr.Objects), s.Objects+1)
			}
			bytes := (l.Up.Sent() - up0) + (l.Down.Sent() - down0)
			tx := time.Duration(float64(bytes) * 8 / s.Rate * float64(time.Second))
			want := m.formula(s.Objects, rtt, tx)
			res.Rows = append(res.Rows, experiment.Row{
				Case:     fmt.Sprintf("%s, RTT %s", m.label, rtt),
				Measured: pr.Total.Seconds(), Formula: want.Seconds(), Unit: "s",
				Tolerance: 0.10, Slack: 0.020,
			})
			measured[m.label] = append(measured[m.label], pr.Total.Seconds())
			formula[m.label] = append(formula[m.label], want.Seconds())
		}
		stop()
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
