package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/internal/transport"
	"github.com/applayer/applayer/lab/link"
)

// SetLink applies a --link override, "HOST:delay=1s,rate=1.54Mbit,loss=1%",
// to the topology: the named host's access link becomes the given one (an
// empty link after the colon removes it).
func (t *Topology) SetLink(arg string) error {
	name, spec, ok := strings.Cut(arg, ":")
	if !ok || name == "" {
		return fmt.Errorf("lab: --link %q: want HOST:delay=1s,rate=1.54Mbit,loss=1%%", arg)
	}
	if _, err := link.Parse(spec); err != nil {
		return fmt.Errorf("lab: --link %s: %w", name, err)
	}
	for i := range t.Hosts {
		if strings.EqualFold(t.Hosts[i].Name, strings.TrimSuffix(name, ".")) {
			t.Hosts[i].Link = spec
			return nil
		}
	}
	return fmt.Errorf("lab: --link: no host named %q in the topology", name)
}

// links are a running lab's links, shared by every connection of the lab.
type links struct {
	bus    *trace.Bus
	byAddr map[netip.Addr]*link.Link // access links by host address
	byName map[string]*link.Link
	pairs  map[[2]netip.Addr]link.Path // from, to -> the pair link's pipe
	all    map[string]*link.Link       // every link by name, for metrics
}

// newLinks builds the plan's links; nil when the topology has none, so
// that nothing is wrapped at all.
func newLinks(p *Plan, bus *trace.Bus) *links {
	t := p.Topology
	seed := t.Lab.Seed
	if seed == 0 {
		seed = 1
	}
	ls := &links{bus: bus, byAddr: map[netip.Addr]*link.Link{}, byName: map[string]*link.Link{}, pairs: map[[2]netip.Addr]link.Path{}, all: map[string]*link.Link{}}
	for i, h := range t.Hosts {
		if h.Link == "" {
			continue
		}
		cfg, _ := link.Parse(h.Link) // validated
		if cfg.IsZero() {
			continue
		}
		l := link.New(h.Name, cfg, seed+uint64(i)*1000)
		ls.byAddr[p.Hosts[i].Addr] = l
		ls.byName[p.Hosts[i].Name] = l
		ls.all[p.Hosts[i].Name] = l
	}
	for i, pl := range t.Links {
		cfg, _ := link.Parse(pl.Link)
		a, _ := p.Lookup(pl.Between[0])
		b, _ := p.Lookup(pl.Between[1])
		l := link.New(a.Name+" - "+b.Name, cfg, seed+uint64(len(t.Hosts)+i)*1000)
		ls.pairs[[2]netip.Addr{a.Addr, b.Addr}] = link.Path{l.Up}
		ls.pairs[[2]netip.Addr{b.Addr, a.Addr}] = link.Path{l.Down}
		ls.all[a.Name+" - "+b.Name] = l
	}
	if len(ls.byAddr) == 0 && len(ls.pairs) == 0 {
		return nil
	}
	return ls
}

// Link returns the named host's access link in a running lab (nil when it
// has none), for its counters.
func (r *Running) Link(host string) *link.Link {
	if r.links == nil {
		return nil
	}
	return r.links.byName[host]
}

// listenerWrap shapes the listeners of the host at addr with its access
// link; nil when it has none.
func (ls *links) listenerWrap(addr netip.Addr, bus *trace.Bus) transport.ListenerWrap {
	l := ls.byAddr[addr]
	if l == nil {
		return nil
	}
	return func(ln net.Listener) net.Listener {
		return &link.Listener{Listener: ln, Out: link.Path{l.Up}, In: link.Path{l.Down}, Bus: bus}
	}
}

// dialer shapes the connections the host at addr dials: its own access
// link, the pair link to the destination if there is one and, for
// datagrams to a lab host, the destination's access link too (servers' UDP
// sockets are read in batches straight from the kernel and are not
// wrapped, so the sender's side applies that link).
func (ls *links) dialer(addr netip.Addr, next service.Dialer, bus *trace.Bus) service.Dialer {
	own := ls.byAddr[addr]
	return &link.Dialer{Next: next, Bus: bus, Route: func(network string, dst net.Addr) (out, in link.Path) {
		var to netip.Addr
		switch a := dst.(type) {
		case *net.TCPAddr:
			to = a.AddrPort().Addr().Unmap()
		case *net.UDPAddr:
			to = a.AddrPort().Addr().Unmap()
		}
		dl := ls.byAddr[to]
		if !strings.HasPrefix(network, "udp") {
			dl = nil
		}
		// Out: the host's uplink, the pair link, the destination's
		// downlink; in: the way back, in the order crossed.
		if own != nil {
			out = append(out, own.Up)
		}
		out = append(out, ls.pairs[[2]netip.Addr{addr, to}]...)
		if dl != nil {
			out = append(out, dl.Down)
			in = append(in, dl.Up)
		}
		in = append(in, ls.pairs[[2]netip.Addr{to, addr}]...)
		if own != nil {
			in = append(in, own.Down)
		}
		return out, in
	}}
}

// linkedService starts a service with its host's listeners shaped
// (transport.WithListenerWrap).
type linkedService struct {
	service.Service
	wrap transport.ListenerWrap
}

func (s linkedService) Start(ctx context.Context) error {
	return s.Service.Start(transport.WithListenerWrap(ctx, s.wrap))
}

// linkCollector exports every link's counters:
// applayer_lab_link_{bytes,packets,dropped,retransmitted}_total with the
// link's name ("gaia.cs.umass.edu", or "a - b" for a pair link) and
// direction ("up": from the host or from a to b; "down").
type linkCollector struct {
	links                           map[string]*link.Link
	bytes, packets, dropped, resent *prometheus.Desc
}

func newLinkCollector(ls *links) *linkCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("applayer_lab_link_"+name, help, []string{"link", "direction"}, nil)
	}
	return &linkCollector{links: ls.all,
		bytes:   d("bytes_total", "Bytes the link carried (datagrams, stream chunks)."),
		packets: d("packets_total", "Datagrams and stream chunks the link carried."),
		dropped: d("dropped_total", "Datagrams the link dropped (loss or a full queue)."),
		resent:  d("retransmitted_total", "Stream segments the link lost and delivered one retransmission timeout late."),
	}
}

func (c *linkCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.bytes
	ch <- c.packets
	ch <- c.dropped
	ch <- c.resent
}

func (c *linkCollector) Collect(ch chan<- prometheus.Metric) {
	for name, l := range c.links {
		for dir, p := range map[string]*link.Pipe{"up": l.Up, "down": l.Down} {
			ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(p.Sent()), name, dir)
			ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(p.Packets()), name, dir)
			ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(p.Dropped()), name, dir)
			ch <- prometheus.MustNewConstMetric(c.resent, prometheus.CounterValue, float64(p.Retransmitted()), name, dir)
		}
	}
}

// describe writes the lab's links for the table.
func (ls *links) describe(w io.Writer, t *Topology) {
	fmt.Fprintf(w, "\nLinks (shaped in user space; docs/lab.md, Links):\n")
	for _, h := range t.Hosts {
		if h.Link != "" {
			fmt.Fprintf(w, "  %-28s %s\n", h.Name, h.Link)
		}
	}
	for _, l := range t.Links {
		fmt.Fprintf(w, "  %-28s %s\n", l.Between[0]+" - "+l.Between[1], l.Link)
	}
}
