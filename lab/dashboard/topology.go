package dashboard

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/net/publicsuffix"

	"github.com/applayer/applayer/dns/labzone"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/lab/link"
)

// topology is /api/topology: the lab's hosts grouped like the chapter's
// pictures.
type topology struct {
	Block      string     `json:"block"`
	PortOffset int        `json:"port_offset"`
	Groups     []group    `json:"groups"`
	Hosts      []hostView `json:"hosts"`
	// Links are the links between two hosts (access links are on the
	// hosts), as lab/link writes them: delay, rate each way, loss, queue.
	Links []linkView `json:"links,omitempty"`
}

type linkView struct {
	Between []string `json:"between"`
	Link    string   `json:"link"`
}

type group struct {
	Name  string   `json:"name"`
	Title string   `json:"title"`
	Hosts []string `json:"hosts"`
}

type hostView struct {
	Name     string             `json:"name"`
	Addr     string             `json:"addr"`
	Group    string             `json:"group"`
	Zones    []string           `json:"zones,omitempty"`
	Link     string             `json:"link,omitempty"` // its access link`
	Services []serviceView      `json:"services"`
	Metrics  map[string]float64 `json:"metrics,omitempty"`
}

type serviceView struct {
	Kind    string   `json:"kind"`
	Summary string   `json:"summary"`
	Listen  []string `json:"listen"`
	Ready   bool     `json:"ready"`
	entry   int      // index into Running.Entries
}

// Group names of the DNS infrastructure; other groups are named after the
// organisation's domain (umass.edu, crepes.fr) or the lab's private top
// level domain (lab).
const (
	groupRoot = "root"
	groupTLD  = "tld"
)

// buildTopology groups the hosts: the root servers, the top-level-domain
// servers, then one group per organisation (the registrable domain of the
// host's name: gaia.cs.umass.edu and dns.umass.edu are umass.edu's campus
// network) in topology order. Nothing is listed by name: a topology file
// of one's own is grouped the same way.
func buildTopology(r *lab.Running) topology {
	t := topology{Block: r.Plan.Block.String(), PortOffset: r.Plan.PortOffset}
	zones := map[string][]string{}
	for _, h := range labzone.LabHosts(r.Plan) {
		zones[h.Name] = h.Zones
	}
	groups := map[string]*group{}
	var order []string
	add := func(name, title, host string) {
		g, ok := groups[name]
		if !ok {
			g = &group{Name: name, Title: title}
			groups[name] = g
			order = append(order, name)
		}
		g.Hosts = append(g.Hosts, host)
	}
	// The DNS hierarchy's groups come first, as in the chapter's figure.
	add(groupRoot, "Root DNS servers", "")
	add(groupTLD, "Top-level domain (TLD) servers", "")
	access := map[string]string{}
	for _, h := range r.Plan.Topology.Hosts {
		if h.Link != "" {
			access[h.Name] = normaliseLink(h.Link)
		}
	}
	for _, l := range r.Plan.Topology.Links {
		t.Links = append(t.Links, linkView{Between: l.Between, Link: normaliseLink(l.Link)})
	}
	for _, h := range r.Plan.Hosts {
		hv := hostView{Name: h.Name, Addr: h.Addr.String(), Zones: zones[h.Name], Link: access[h.Name], Services: []serviceView{}}
		for i, e := range r.Entries {
			if e.Host == h.Name {
				hv.Services = append(hv.Services, serviceView{Kind: e.Kind, Summary: e.Summary, entry: i})
			}
		}
		hv.Group = groupOf(h.Name, hv.Zones)
		switch hv.Group {
		case groupRoot, groupTLD:
			add(hv.Group, "", h.Name)
		default:
			add(hv.Group, hv.Group, h.Name)
		}
		t.Hosts = append(t.Hosts, hv)
	}
	for _, name := range order {
		g := groups[name]
		var hosts []string
		for _, h := range g.Hosts {
			if h != "" {
				hosts = append(hosts, h)
			}
		}
		if len(hosts) == 0 {
			continue
		}
		g.Hosts = hosts
		t.Groups = append(t.Groups, *g)
	}
	return t
}

// groupOf is the group of a host: root or tld when it serves the root or
// a top-level zone, else its organisation's domain.
func groupOf(name string, zones []string) string {
	for _, z := range zones {
		z = strings.TrimSuffix(z, ".")
		if z == "" {
			return groupRoot
		}
	}
	for _, z := range zones {
		if z = strings.TrimSuffix(z, "."); !strings.Contains(z, ".") {
			return groupTLD
		}
	}
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if suffix, icann := publicsuffix.PublicSuffix(name); !icann {
		// A private top-level domain (the lab's own "lab"): its hosts
		// are one group.
		if suffix == name {
			return name
		}
		if i := strings.LastIndexByte(name, '.'); i >= 0 {
			return name[i+1:]
		}
	}
	if org, err := publicsuffix.EffectiveTLDPlusOne(name); err == nil {
		return org
	}
	return name
}

// keyMetric reports whether a metric family is one the topology shows next
// to its host: counters of the work each system does and of its caches.
func keyMetric(name string) bool {
	for _, s := range []string{"queries_total", "requests_total", "responses_total", "hits_total", "misses_total",
		"announces_total", "messages_total", "deliveries_total", "segments_total", "pieces_total", "bytes_total"} {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// hostMetrics sums the key counters of each host (label host) of the lab's
// registry; the page turns successive readings into rates.
func hostMetrics(g prometheus.Gatherer) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	if g == nil {
		return out
	}
	mfs, err := g.Gather()
	if err != nil && len(mfs) == 0 {
		return out
	}
	for _, mf := range mfs {
		if mf.GetType() != dto.MetricType_COUNTER || !keyMetric(mf.GetName()) {
			continue
		}
		for _, m := range mf.GetMetric() {
			host := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "host" {
					host = l.GetValue()
				}
			}
			if host == "" {
				continue
			}
			if out[host] == nil {
				out[host] = map[string]float64{}
			}
			out[host][mf.GetName()] += m.GetCounter().GetValue()
		}
	}
	return out
}

func listenOf(s service.Service) ([]string, bool) {
	a, ok := s.(service.Addresser)
	if !ok {
		return []string{}, true
	}
	out := []string{}
	for _, addr := range a.Addrs() {
		out = append(out, addr.Network()+" "+addr.String())
	}
	return out, len(out) > 0
}

// normaliseLink writes a link as lab/link does (rates with units, the
// delay, the loss), or as given when it does not parse (the plan refused
// such a topology already).
func normaliseLink(s string) string {
	c, err := link.Parse(s)
	if err != nil {
		return s
	}
	return c.String()
}
