package router

import (
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"

	"github.com/applayer/applayer/internal/config"
)

// Map is the network map: the CDN's edge clusters, and for each client
// network how far each cluster is. Geography is a distance table, not a
// database: the operator (or the lab) writes down which clusters are
// near which networks.
//
//	clusters:
//	  - name: umass
//	    max_load: 0.8
//	    edges:
//	      - {name: edge1.umass, addr: 127.1.3.1, control: "127.1.3.1:8081"}
//	networks:
//	  - name: umass.edu
//	    prefixes: [127.1.1.0/24]
//	    distances: {umass: 1, nyu: 4, crepes: 60}
//	default: {nyu: 10, umass: 12, crepes: 50}
//	origin: [127.1.0.9]
type Map struct {
	// Clusters are the edge clusters.
	Clusters []Cluster `json:"clusters"`
	// Networks map client networks to cluster distances.
	Networks []Network `json:"networks,omitempty"`
	// Default are the distances for a client in no network. Empty: every
	// cluster at distance 0, in the order listed.
	Default map[string]int `json:"default,omitempty"`
	// Origin are the addresses answered when no cluster can take a
	// client (all down or overloaded): the last resort.
	Origin []string `json:"origin,omitempty"`
	// Shields are the shield caches the edges fetch through: never
	// answered to clients, but purges reach them too.
	Shields []Shield `json:"shields,omitempty"`
}

// Shield is a mid-tier cache (an edge in shield mode).
type Shield struct {
	Name    string `json:"name"`
	Control string `json:"control"`
}

// Cluster is one site of edges.
type Cluster struct {
	Name string `json:"name"`
	// MaxLoad is the load (0..1, an edge's in-flight requests over its
	// capacity) above which an edge takes no new clients. Default 0.9.
	MaxLoad float64 `json:"max_load,omitempty"`
	Edges   []Edge  `json:"edges"`
}

// Edge is one cache server of a cluster.
type Edge struct {
	Name string `json:"name"`
	// Addr is the address answered for the edge (A or AAAA).
	Addr string `json:"addr"`
	// Control is the edge's control listener (host:port) where the
	// router reads /cdn/health. Empty: the edge is never checked and
	// always counts as healthy and idle.
	Control string `json:"control,omitempty"`
}

// Network is a set of client prefixes at the same distances.
type Network struct {
	Name      string         `json:"name"`
	Prefixes  []string       `json:"prefixes"`
	Distances map[string]int `json:"distances"`
}

// Limits on a map, so a hostile or broken file cannot make the router
// slow.
const (
	maxClusters = 256
	maxEdges    = 64 // per cluster
	maxNetworks = 4096
	maxPrefixes = 65536 // in all
)

// ParseMap reads a network map (YAML or JSON) and validates it.
func ParseMap(b []byte) (*Map, error) {
	var m Map
	if err := config.Decode(b, "yaml", &m); err != nil {
		return nil, fmt.Errorf("router: network map: %w", err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("router: network map: %w", err)
	}
	return &m, nil
}

// LoadMap reads a network map file.
func LoadMap(path string) (*Map, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	m, err := ParseMap(b)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return m, nil
}

// Validate checks the map: names unique, addresses and prefixes valid,
// distances naming known clusters.
func (m *Map) Validate() error {
	if len(m.Clusters) == 0 {
		return config.Errorf("clusters", "at least one cluster is needed")
	}
	if len(m.Clusters) > maxClusters {
		return config.Errorf("clusters", "more than %d clusters", maxClusters)
	}
	names := map[string]bool{}
	for i, c := range m.Clusters {
		f := fmt.Sprintf("clusters[%d]", i)
		if c.Name == "" {
			return config.Errorf(f+".name", "missing")
		}
		if names[c.Name] {
			return config.Errorf(f+".name", "%q listed twice", c.Name)
		}
		names[c.Name] = true
		if c.MaxLoad < 0 || c.MaxLoad > 1e6 {
			return config.Errorf(f+".max_load", "%v is out of range", c.MaxLoad)
		}
		if len(c.Edges) == 0 {
			return config.Errorf(f+".edges", "at least one edge is needed")
		}
		if len(c.Edges) > maxEdges {
			return config.Errorf(f+".edges", "more than %d edges", maxEdges)
		}
		enames := map[string]bool{}
		for j, e := range c.Edges {
			ef := fmt.Sprintf("%s.edges[%d]", f, j)
			if e.Name == "" {
				return config.Errorf(ef+".name", "missing")
			}
			if enames[e.Name] {
				return config.Errorf(ef+".name", "%q listed twice", e.Name)
			}
			enames[e.Name] = true
			if _, err := netip.ParseAddr(e.Addr); err != nil {
				return config.Errorf(ef+".addr", "%v", err)
			}
			if e.Control != "" {
				if _, err := netip.ParseAddrPort(e.Control); err != nil {
					return config.Errorf(ef+".control", "%v (want ip:port)", err)
				}
			}
		}
	}
	if len(m.Networks) > maxNetworks {
		return config.Errorf("networks", "more than %d networks", maxNetworks)
	}
	total := 0
	for i, n := range m.Networks {
		f := fmt.Sprintf("networks[%d]", i)
		if len(n.Prefixes) == 0 {
			return config.Errorf(f+".prefixes", "at least one prefix is needed")
		}
		total += len(n.Prefixes)
		if total > maxPrefixes {
			return config.Errorf(f+".prefixes", "more than %d prefixes in all", maxPrefixes)
		}
		for j, p := range n.Prefixes {
			if _, err := netip.ParsePrefix(p); err != nil {
				return config.Errorf(fmt.Sprintf("%s.prefixes[%d]", f, j), "%v", err)
			}
		}
		if err := checkDistances(f+".distances", n.Distances, names); err != nil {
			return err
		}
	}
	if err := checkDistances("default", m.Default, names); err != nil {
		return err
	}
	for i, sh := range m.Shields {
		if _, err := netip.ParseAddrPort(sh.Control); err != nil {
			return config.Errorf(fmt.Sprintf("shields[%d].control", i), "%v (want ip:port)", err)
		}
	}
	for i, o := range m.Origin {
		if _, err := netip.ParseAddr(o); err != nil {
			return config.Errorf(fmt.Sprintf("origin[%d]", i), "%v", err)
		}
	}
	return nil
}

func checkDistances(field string, d map[string]int, clusters map[string]bool) error {
	for name, v := range d {
		if !clusters[name] {
			return config.Errorf(field+"."+name, "no such cluster")
		}
		if v < 0 {
			return config.Errorf(field+"."+name, "distance %d is negative", v)
		}
	}
	return nil
}

// table is a compiled map: prefixes sorted longest first, each network's
// clusters in order of distance.
type table struct {
	clusters []*cluster
	byLen    []prefixLen // longest first
	def      []ranked    // for clients in no network
	origin   []netip.Addr
}

type cluster struct {
	idx     int
	name    string
	maxLoad float64
	edges   []*edgeState
}

type ranked struct {
	c    *cluster
	dist int
}

// prefixLen holds the prefixes of one length, by their masked form.
type prefixLen struct {
	bits int
	m    map[netip.Prefix]*netPrefix
}

type netPrefix struct {
	p    netip.Prefix
	net  *network
	bits int
}

type network struct {
	name   string
	ranked []ranked
}

func compile(m *Map) *table {
	t := &table{}
	byName := map[string]*cluster{}
	for _, c := range m.Clusters {
		cl := &cluster{idx: len(t.clusters), name: c.Name, maxLoad: c.MaxLoad}
		if cl.maxLoad == 0 {
			cl.maxLoad = 0.9
		}
		for _, e := range c.Edges {
			a := netip.MustParseAddr(e.Addr).Unmap()
			es := &edgeState{name: e.Name, cluster: c.Name, addr: a, control: e.Control, hash: hashString(e.Name)}
			es.up.Store(true)
			cl.edges = append(cl.edges, es)
		}
		t.clusters = append(t.clusters, cl)
		byName[c.Name] = cl
	}
	rank := func(d map[string]int) []ranked {
		var out []ranked
		if len(d) == 0 {
			for _, c := range t.clusters {
				out = append(out, ranked{c: c})
			}
			return out
		}
		for name, v := range d {
			out = append(out, ranked{c: byName[name], dist: v})
		}
		sort.SliceStable(out, func(i, j int) bool {
			if out[i].dist != out[j].dist {
				return out[i].dist < out[j].dist
			}
			return out[i].c.name < out[j].c.name
		})
		return out
	}
	for _, n := range m.Networks {
		nw := &network{name: n.Name, ranked: rank(n.Distances)}
		if nw.name == "" {
			nw.name = strings.Join(n.Prefixes, ",")
		}
		for _, p := range n.Prefixes {
			pp := netip.MustParsePrefix(p).Masked()
			if pp.Addr().Is4In6() {
				pp = netip.PrefixFrom(pp.Addr().Unmap(), pp.Bits()-96)
			}
			t.add(&netPrefix{p: pp, net: nw, bits: pp.Bits()})
		}
	}
	sort.Slice(t.byLen, func(i, j int) bool { return t.byLen[i].bits > t.byLen[j].bits })
	t.def = rank(m.Default)
	for _, o := range m.Origin {
		t.origin = append(t.origin, netip.MustParseAddr(o).Unmap())
	}
	return t
}

// add files p under its length; the first network listing a prefix
// keeps it.
func (t *table) add(p *netPrefix) {
	for i := range t.byLen {
		if t.byLen[i].bits == p.bits {
			if _, dup := t.byLen[i].m[p.p]; !dup {
				t.byLen[i].m[p.p] = p
			}
			return
		}
	}
	t.byLen = append(t.byLen, prefixLen{bits: p.bits, m: map[netip.Prefix]*netPrefix{p.p: p}})
}

// lookup finds the network of a client address: the longest matching
// prefix (nil: none). One map probe per distinct prefix length.
func (t *table) lookup(a netip.Addr) *netPrefix {
	a = a.Unmap()
	for i := range t.byLen {
		if t.byLen[i].bits > a.BitLen() {
			continue
		}
		k, err := a.Prefix(t.byLen[i].bits)
		if err != nil {
			continue
		}
		if p, ok := t.byLen[i].m[k]; ok {
			return p
		}
	}
	return nil
}
