package webexp

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/applayer/applayer/internal/plot"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/lab/experiment"
	"github.com/applayer/applayer/lab/link"
	"github.com/applayer/applayer/web/client"
	"github.com/applayer/applayer/web/labca"
	"github.com/applayer/applayer/web/server"
)

// QUICvsTCP is the quic-vs-tcp experiment: the seed's claim that QUIC
// "outshines TCP under poor network conditions".
func QUICvsTCP() experiment.Experiment {
	return experiment.Experiment{
		Name:    "quic-vs-tcp",
		Summary: "the demo page over HTTP/1.1 (6 connections), HTTP/2 (one TCP connection) and HTTP/3 (QUIC) across loss and RTT; handshakes 2 RTT vs 1 RTT",
		Run:     runQUICvsTCP,
	}
}

// quicSetup is one quic-vs-tcp configuration.
type quicSetup struct {
	Losses []float64
	RTTs   []time.Duration
	Loads  int // page loads per protocol and cell (means are reported)
	Images int // images on the demo page
}

func quicSetupFor(quick bool) quicSetup {
	if quick {
		return quicSetup{Losses: []float64{0, 0.05}, RTTs: []time.Duration{40 * time.Millisecond}, Loads: 8, Images: 10}
	}
	return quicSetup{Losses: []float64{0, 0.01, 0.02, 0.05},
		RTTs:  []time.Duration{20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond},
		Loads: 10, Images: 10}
}

// quicProtos are the protocols compared, with the page-load time the
// chapter's reasoning predicts on a loss-free link of round trip rtt
// (transmission times are negligible: the link has no rate limit).
var quicProtos = []struct {
	mode, label string
	formula     func(rtt time.Duration) time.Duration // 0: not checked
}{
	// TCP + TLS + base file, then 12 objects on 6 connections, 5 of
	// them new: reported, not checked (it depends on how the transport
	// hands idle connections to waiting requests).
	{client.ModePersistentParallel, "HTTP/1.1 x6", nil},
	// TCP 1 RTT + TLS 1 RTT + base file 1 RTT + all objects 1 RTT.
	{client.ModeH2, "HTTP/2", func(rtt time.Duration) time.Duration { return 4 * rtt }},
	// QUIC+TLS 1 RTT + base file 1 RTT + all objects 1 RTT.
	{client.ModeH3, "HTTP/3", func(rtt time.Duration) time.Duration { return 3 * rtt }},
}

// quicCell is what one (loss, RTT) cell measured: mean page-load time per
// protocol label, and the handshake times.
type quicCell struct {
	loss   float64
	rtt    time.Duration
	mean   map[string]time.Duration
	tcpHS  time.Duration // TCP + TLS handshake (mean)
	quicHS time.Duration // QUIC handshake (mean)
}

func runQUICvsTCP(ctx context.Context, env experiment.Env) (*experiment.Result, error) {
	s := quicSetupFor(env.Quick)
	fmt.Fprintf(env.Stdout, "quic-vs-tcp: gaia.cs.umass.edu's demo page (base file, style sheet, script, %d images) over HTTPS, its access link with the given RTT and loss (no rate limit).\n", s.Images)
	fmt.Fprintf(env.Stdout, "A lost TCP segment waits one retransmission timeout (200 ms + RTT) and stalls its connection's later bytes (head-of-line blocking); a lost QUIC datagram is recovered by quic-go's loss detection and stalls only its stream.\n")
	fmt.Fprintf(env.Stdout, "Each cell: %d loads per protocol, interleaved; means reported. Formulas on a loss-free link: HTTP/2 4 RTT, HTTP/3 3 RTT; handshakes TCP+TLS 2 RTT, QUIC 1 RTT.\n\n", s.Loads)
	site, err := os.MkdirTemp("", "applayer-quic-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(site)
	if err := server.WriteDemoSite(site, s.Images); err != nil {
		return nil, err
	}
	res := &experiment.Result{}
	var cells []quicCell
	for _, rtt := range s.RTTs {
		for _, loss := range s.Losses {
			c, err := quicCellRun(ctx, env, s, site, loss, rtt)
			if err != nil {
				return nil, err
			}
			cells = append(cells, c)
		}
	}
	for _, c := range cells {
		for _, p := range quicProtos {
			row := experiment.Row{Case: fmt.Sprintf("%s, loss %g%%, RTT %s", p.label, c.loss*100, c.rtt), Measured: c.mean[p.label].Seconds(), Unit: "s", NoFormula: true}
			if p.formula != nil && c.loss == 0 {
				row.Formula, row.Tolerance, row.Slack, row.NoFormula = p.formula(c.rtt).Seconds(), 0.15, 0.040, false
			}
			res.Rows = append(res.Rows, row)
		}
		if c.loss == 0 {
			res.Rows = append(res.Rows,
				experiment.Row{Case: fmt.Sprintf("handshake TCP+TLS, RTT %s", c.rtt), Measured: c.tcpHS.Seconds(), Formula: (2 * c.rtt).Seconds(), Unit: "s", Tolerance: 0.15, Slack: 0.040},
				experiment.Row{Case: fmt.Sprintf("handshake QUIC, RTT %s", c.rtt), Measured: c.quicHS.Seconds(), Formula: c.rtt.Seconds(), Unit: "s", Tolerance: 0.15, Slack: 0.040})
		}
		if c.loss >= 0.05 {
			beats := 0.0
			if c.mean["HTTP/3"] < c.mean["HTTP/2"] {
				beats = 1
			}
			res.Rows = append(res.Rows, experiment.Row{Case: fmt.Sprintf("HTTP/3 faster than HTTP/2 (1 = yes), loss %g%%, RTT %s", c.loss*100, c.rtt),
				Measured: beats, Formula: 1, Unit: "", Tolerance: 1e-9})
		}
	}
	if err := experiment.WriteTable(env.Stdout, res.Rows); err != nil {
		return nil, err
	}
	plots, err := quicPlots(env, s, cells)
	if err != nil {
		return nil, err
	}
	res.Plots = plots
	return res, nil
}

// quicCellRun starts a lab whose gaia.cs.umass.edu has a link of rtt and
// loss, and loads the page s.Loads times with each protocol.
func quicCellRun(ctx context.Context, env experiment.Env, s quicSetup, site string, loss float64, rtt time.Duration) (quicCell, error) {
	const name = "gaia.cs.umass.edu"
	block := netip.AddrFrom4([4]byte{127, byte(100 + rand.IntN(100)), byte(rand.IntN(256)), 0})
	addr := block.Next().Next().Next().Next().Next().Next().Next().Next().Next().Next() // .10
	// The site answers to the name and to the address, so the lab CA's
	// certificate covers the address the client uses (no DNS needed).
	siteCfg, _ := json.Marshal(map[string]any{"tls": true, "sites": []map[string]any{{"hosts": []string{name, addr.String()}, "root": site}}})
	lc := link.Config{Delay: rtt / 2, Loss: loss}
	topo := &lab.Topology{
		Hosts: []lab.Host{{Name: name, Addr: addr.String(), Link: lc.String(),
			Services: []lab.ServiceSpec{{Kind: "http-server", Config: siteCfg}}}},
	}
	topo.Lab.Block = block.String() + "/24"
	r, stop, err := experiment.StartLab(ctx, env, topo)
	if err != nil {
		return quicCell{}, err
	}
	defer stop()
	l := r.Link(name)
	// QUIC's datagrams are shaped at the client (the server's UDP socket is
	// not wrapped): out through the host's downlink, back through its uplink.
	qd := &link.Dialer{Next: &net.Dialer{}, Route: func(network string, dst net.Addr) (out, in link.Path) {
		if ua, ok := dst.(*net.UDPAddr); ok && ua.AddrPort().Addr().Unmap() == addr {
			return link.Path{l.Down}, link.Path{l.Up}
		}
		return nil, nil
	}}
	opts := client.Options{CAFile: filepath.Join(r.Plan.StateDir, "web", "ca", labca.CertFileName), QUICDialer: qd, Timeout: 30 * time.Second}
	base := fmt.Sprintf("https://%s/", net.JoinHostPort(addr.String(), fmt.Sprint(r.Plan.Port(443))))
	c := quicCell{loss: loss, rtt: rtt, mean: map[string]time.Duration{}}
	sum := map[string]time.Duration{}
	for range s.Loads {
		for _, p := range quicProtos {
			pr, err := client.LoadPage(ctx, base, client.PageOptions{Mode: p.mode, Options: opts})
			if err != nil {
				return c, fmt.Errorf("quic-vs-tcp: %s at loss %g, RTT %s: %w", p.label, loss, rtt, err)
			}
			for _, o := range pr.Objects {
				if o.Err != nil || o.Status != 200 {
					return c, fmt.Errorf("quic-vs-tcp: %s at loss %g, RTT %s: %s: status %d, %v", p.label, loss, rtt, o.URL, o.Status, o.Err)
				}
			}
			if len(pr.Objects) != s.Images+3 {
				return c, fmt.Errorf("quic-vs-tcp: %s: %d objects, want %d", p.label, len(pr.Objects), s.Images+3)
			}
			sum[p.label] += pr.Total
		}
		// One fresh connection each way for the handshake times.
		for _, proto := range []string{client.ProtoH2, client.ProtoH3} {
			o := opts
			o.Proto = proto
			hc, err := client.New(o)
			if err != nil {
				return c, err
			}
			res, err := hc.Get(ctx, base)
			hc.Close()
			if err != nil {
				return c, fmt.Errorf("quic-vs-tcp: handshake over %s: %w", proto, err)
			}
			hs := res.Timing.Connect + res.Timing.TLS
			if proto == client.ProtoH3 {
				c.quicHS += hs
			} else {
				c.tcpHS += hs
			}
		}
	}
	for k, v := range sum {
		c.mean[k] = v / time.Duration(s.Loads)
	}
	c.tcpHS /= time.Duration(s.Loads)
	c.quicHS /= time.Duration(s.Loads)
	return c, nil
}

// quicPlots writes page-load time against loss, one series per protocol
// and RTT, and the handshake times against RTT.
func quicPlots(env experiment.Env, s quicSetup, cells []quicCell) ([]string, error) {
	pl := plot.Chart{Title: "Page load of the demo page under loss: HTTP/1.1 x6, HTTP/2, HTTP/3", XLabel: "loss (%)", YLabel: "mean page load time (s)"}
	for _, rtt := range s.RTTs {
		for _, p := range quicProtos {
			sr := plot.Series{Name: fmt.Sprintf("%s, RTT %s", p.label, rtt), Points: true, Dashed: p.mode == client.ModePersistentParallel}
			for _, c := range cells {
				if c.rtt == rtt {
					sr.X = append(sr.X, c.loss*100)
					sr.Y = append(sr.Y, c.mean[p.label].Seconds())
				}
			}
			pl.Series = append(pl.Series, sr)
		}
	}
	hs := plot.Chart{Title: "Handshake before the first request: TCP+TLS (2 RTT) vs QUIC (1 RTT)", XLabel: "RTT (ms)", YLabel: "handshake time (s)"}
	tcp := plot.Series{Name: "TCP + TLS 1.3, measured", Points: true}
	quic := plot.Series{Name: "QUIC, measured", Points: true}
	tcpF := plot.Series{Name: "2 RTT", Dashed: true}
	quicF := plot.Series{Name: "1 RTT", Dashed: true}
	for _, c := range cells {
		if c.loss != 0 {
			continue
		}
		x := float64(c.rtt.Milliseconds())
		tcp.X, tcp.Y = append(tcp.X, x), append(tcp.Y, c.tcpHS.Seconds())
		quic.X, quic.Y = append(quic.X, x), append(quic.Y, c.quicHS.Seconds())
		tcpF.X, tcpF.Y = append(tcpF.X, x), append(tcpF.Y, 2*c.rtt.Seconds())
		quicF.X, quicF.Y = append(quicF.X, x), append(quicF.Y, c.rtt.Seconds())
	}
	hs.Series = []plot.Series{tcp, tcpF, quic, quicF}
	paths := []string{env.Path("quic-vs-tcp.png"), env.Path("quic-vs-tcp.svg")}
	if err := pl.Save(paths...); err != nil {
		return nil, err
	}
	hp := []string{env.Path("quic-vs-tcp-handshake.png"), env.Path("quic-vs-tcp-handshake.svg")}
	if err := hs.Save(hp...); err != nil {
		return nil, err
	}
	return slices.Concat(paths, hp), nil
}
