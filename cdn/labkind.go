// Package cdn holds the CDN's lab kinds: the request router (cdn-router,
// package cdn/router) and the edges and shields (cdn-edge, package
// cdn/edge), configured by lab host names rather than addresses.
package cdn

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/applayer/applayer/cdn/edge"
	"github.com/applayer/applayer/cdn/router"
	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/web/cache"
)

// LabRouter is the lab config of kind cdn-router: the network map by lab
// host names.
type LabRouter struct {
	// Domain is the CDN's zone (kingcdn.com); the kind delegates it to
	// its host in the parent zone (an NS record through Records).
	Domain string `json:"domain"`
	// TTL, CheckInterval, Fall: as in router.Config.
	TTL           config.Duration `json:"ttl,omitempty"`
	CheckInterval config.Duration `json:"check_interval,omitempty"`
	Fall          int             `json:"fall,omitempty"`
	// Clusters name their edges by host (each runs a cdn-edge).
	Clusters []LabCluster `json:"clusters"`
	// Networks are client networks: every lab host in one of Domains
	// (the resolvers and clients of a campus), plus any Prefixes.
	Networks []LabNetwork `json:"networks,omitempty"`
	// Default: distances for a client in no network.
	Default map[string]int `json:"default,omitempty"`
	// Origin are the hosts answered when no cluster can serve.
	Origin []string `json:"origin,omitempty"`
	// Shields are shield hosts (cdn-edge with shield: true): purged too.
	Shields []string `json:"shields,omitempty"`
}

// LabCluster is a cluster of edge hosts.
type LabCluster struct {
	Name    string   `json:"name"`
	MaxLoad float64  `json:"max_load,omitempty"`
	Edges   []string `json:"edges"`
}

// LabNetwork is a client network by domain.
type LabNetwork struct {
	Name      string         `json:"name"`
	Domains   []string       `json:"domains,omitempty"`
	Prefixes  []string       `json:"prefixes,omitempty"`
	Distances map[string]int `json:"distances"`
}

// LabEdge is the lab config of kind cdn-edge.
type LabEdge struct {
	// Upstream is the host misses go to (its port 80): the shield, or the
	// origin.
	Upstream string `json:"upstream"`
	// Shield, Capacity, Prefetch, Cache: as in edge.Config.
	Shield   bool         `json:"shield,omitempty"`
	Capacity int          `json:"capacity,omitempty"`
	Prefetch []string     `json:"prefetch,omitempty"`
	Cache    cache.Config `json:"cache,omitempty"`
}

// controlAddr is an edge host's control listener in the lab.
func controlAddr(p *lab.Plan, h lab.PlannedHost) string {
	return netip.AddrPortFrom(h.Addr, uint16(p.Port(edge.DefaultControlPort))).String()
}

func lookup(p *lab.Plan, field, name string) (lab.PlannedHost, error) {
	h, ok := p.Lookup(name)
	if !ok {
		return h, config.Errorf(field, "no lab host %q", name)
	}
	return h, nil
}

// routerMap turns a LabRouter into a network map with the plan's
// addresses.
func routerMap(c *LabRouter, p *lab.Plan) (*router.Map, error) {
	m := &router.Map{Default: c.Default}
	for i, cl := range c.Clusters {
		rc := router.Cluster{Name: cl.Name, MaxLoad: cl.MaxLoad}
		for j, e := range cl.Edges {
			h, err := lookup(p, fmt.Sprintf("clusters[%d].edges[%d]", i, j), e)
			if err != nil {
				return nil, err
			}
			rc.Edges = append(rc.Edges, router.Edge{Name: h.Name, Addr: h.Addr.String(), Control: controlAddr(p, h)})
		}
		m.Clusters = append(m.Clusters, rc)
	}
	for i, n := range c.Networks {
		rn := router.Network{Name: n.Name, Prefixes: append([]string(nil), n.Prefixes...), Distances: n.Distances}
		for _, d := range n.Domains {
			d = strings.ToLower(strings.TrimSuffix(d, "."))
			for _, h := range p.Hosts {
				if h.Name == d || strings.HasSuffix(h.Name, "."+d) {
					rn.Prefixes = append(rn.Prefixes, netip.PrefixFrom(h.Addr, h.Addr.BitLen()).String())
				}
			}
		}
		if len(rn.Prefixes) == 0 {
			return nil, config.Errorf(fmt.Sprintf("networks[%d]", i), "no lab host in %v and no prefixes", n.Domains)
		}
		m.Networks = append(m.Networks, rn)
	}
	for i, o := range c.Origin {
		h, err := lookup(p, fmt.Sprintf("origin[%d]", i), o)
		if err != nil {
			return nil, err
		}
		m.Origin = append(m.Origin, h.Addr.String())
	}
	for i, s := range c.Shields {
		h, err := lookup(p, fmt.Sprintf("shields[%d]", i), s)
		if err != nil {
			return nil, err
		}
		m.Shields = append(m.Shields, router.Shield{Name: h.Name, Control: controlAddr(p, h)})
	}
	return m, m.Validate()
}

// LabKinds are the CDN's lab kinds.
func LabKinds() []lab.Kind {
	return []lab.Kind{{
		Name: "cdn-router", Summary: "the CDN's request router: authoritative DNS choosing an edge per client (ECS, network map, health)", Port: 53, Network: "udp+tcp",
		Check: func(raw json.RawMessage) error {
			var c LabRouter
			if err := lab.DecodeConfig(raw, &c); err != nil {
				return err
			}
			if c.Domain == "" {
				return config.Errorf("domain", "missing")
			}
			if len(c.Clusters) == 0 {
				return config.Errorf("clusters", "at least one cluster is needed")
			}
			return nil
		},
		Records: func(env lab.Env) ([]string, error) {
			var c LabRouter
			if err := lab.DecodeConfig(env.Spec.Config, &c); err != nil {
				return nil, err
			}
			// The parent zone delegates the CDN's domain to the router;
			// the router host's own address is the glue.
			return []string{fmt.Sprintf("%s. NS %s.", strings.TrimSuffix(c.Domain, "."), env.Host.Name)}, nil
		},
		Build: func(env lab.Env) (service.Service, error) {
			var c LabRouter
			if err := lab.DecodeConfig(env.Spec.Config, &c); err != nil {
				return nil, err
			}
			m, err := routerMap(&c, env.Plan)
			if err != nil {
				return nil, err
			}
			d := env.Deps.Defaults()
			d.Dialer = env.Plan.Dialer(d.Dialer)
			r, err := router.New(router.Config{Addr: env.Listen.String(), Domain: c.Domain, NS: []string{env.Host.Name},
				TTL: c.TTL, CheckInterval: c.CheckInterval, Fall: c.Fall, Map: m}, d)
			if err != nil {
				return nil, err
			}
			// applayer cdn status --admin 127.0.0.1:9900/hosts/<router host>
			if env.Admin != nil {
				env.Admin.Handle("/cdn/", r.Handler())
			}
			return r, nil
		},
	}, {
		Name: "cdn-edge", Summary: "a CDN edge or shield: the web cache in reverse mode, control on port 8081", Port: 80, Network: "tcp",
		Check: func(raw json.RawMessage) error {
			var c LabEdge
			if err := lab.DecodeConfig(raw, &c); err != nil {
				return err
			}
			if c.Upstream == "" {
				return config.Errorf("upstream", "missing (the shield's or the origin's host)")
			}
			return nil
		},
		Build: func(env lab.Env) (service.Service, error) {
			var c LabEdge
			if err := lab.DecodeConfig(env.Spec.Config, &c); err != nil {
				return nil, err
			}
			up, err := lookup(env.Plan, "upstream", c.Upstream)
			if err != nil {
				return nil, err
			}
			d := env.Deps.Defaults()
			d.Dialer = env.Plan.Dialer(d.Dialer)
			e, err := edge.New(edge.Config{Name: env.Host.Name, Addr: env.Listen.String(), Control: controlAddr(env.Plan, env.Host),
				Upstreams: []string{netip.AddrPortFrom(up.Addr, uint16(env.Plan.Port(80))).String()},
				Shield:    c.Shield, Capacity: c.Capacity, Prefetch: c.Prefetch, Cache: c.Cache}, d)
			if err != nil {
				return nil, err
			}
			if env.Admin != nil {
				env.Admin.Handle("/cdn/", e.Handler())
				env.Admin.Handle("/cache/", e.Cache().AdminHandler())
			}
			return e, nil
		},
	}}
}
