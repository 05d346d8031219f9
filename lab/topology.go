// Package lab is the mini-Internet: it reads a topology (hosts, each with its
// own loopback address, and the services on each), plans addresses and
// ports, builds every service through the kinds it is given, starts them in
// one service.Group and reports where each one listens.
//
// Ports: every service has its kind's standard port (53 for DNS, 80 for
// HTTP, 12000 for the socket examples) unless the topology names another.
// When the process may bind privileged ports (root, or CAP_NET_BIND_SERVICE)
// the lab uses them as they are; otherwise it adds one offset, DefaultPortOffset
// (10000), to every port of the lab, so DNS is on 10053 and HTTP on 10080.
// lab.port_offset in the topology forces a given offset.
package lab

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/lab/link"
)

// DefaultBlock is the loopback block lab hosts get their addresses from.
const DefaultBlock = "127.1.0.0/16"

// DefaultPortOffset is added to every port when privileged ports cannot be bound.
const DefaultPortOffset = 10000

// DefaultAdmin is the lab's admin listener (metrics, health).
const DefaultAdmin = "127.0.0.1:9900"

//go:embed default.yaml
var defaultTopology []byte

// DefaultTopology returns the embedded default topology.
func DefaultTopology() (*Topology, error) {
	var t Topology
	if err := config.Decode(defaultTopology, "yaml", &t); err != nil {
		return nil, fmt.Errorf("lab: default topology: %w", err)
	}
	return &t, nil
}

// LoadTopology reads a YAML or JSON topology file.
func LoadTopology(path string) (*Topology, error) {
	var t Topology
	if err := config.Load(path, &t); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	return &t, nil
}

// Topology is the lab's configuration: where addresses come from and which
// hosts run which services.
type Topology struct {
	Lab   Settings `json:"lab"`
	Hosts []Host   `json:"hosts"`
	// Links are links between two named hosts (besides their access
	// links), e.g. a slow path from the resolver to the root.
	Links []PairLink `json:"links,omitempty"`
}

// Settings are lab-wide options.
type Settings struct {
	// Block is the loopback prefix hosts get addresses from. Default 127.1.0.0/16.
	Block string `json:"block,omitempty"`
	// PortOffset, when set, is added to every port. When unset the lab uses
	// 0 if it may bind privileged ports, DefaultPortOffset otherwise.
	PortOffset *int `json:"port_offset,omitempty"`
	// Admin is the admin listener's address (/metrics, /healthz, /readyz).
	// Default 127.0.0.1:9900; "off" disables it. It must be a loopback
	// address unless AdminAllowRemote.
	Admin string `json:"admin,omitempty"`
	// RemoteBlock permits a Block that is not loopback: a lab split over
	// several machines (lab up --hosts), each owning the addresses of the
	// hosts it runs. Its services then listen on those addresses, reachable
	// from the network (docs/lab.md).
	RemoteBlock bool `json:"remote_block,omitempty"`
	// AdminAllowRemote permits a non-loopback Admin address (its
	// endpoints, purge and flush included, are unauthenticated).
	AdminAllowRemote bool `json:"admin_allow_remote,omitempty"`
	// StateDir keeps the lab's state between runs: DNSSEC keys, trust
	// anchors, caches, databases. Default: applayer-lab-<uid> in the system's
	// temporary directory.
	StateDir string `json:"state_dir,omitempty"`
	// Seed makes the links' losses repeatable (default 1).
	Seed uint64 `json:"seed,omitempty"`
}

// Host is one machine of the mini-Internet.
type Host struct {
	// Name is the host's DNS name, e.g. gaia.cs.umass.edu.
	Name string `json:"name"`
	// Addr is the host's address inside Block; default: the next free one.
	Addr string `json:"addr,omitempty"`
	// Services run on the host.
	Services []ServiceSpec `json:"services"`
	// Link is the host's access link, in lab/link's form:
	// "delay=1s,rate=1.54Mbit,loss=1%,queue=64KB" (rate for both
	// directions, or up= and down=). Empty: no link, nothing shaped.
	Link string `json:"link,omitempty"`
}

// PairLink is a link between two hosts, crossed by their traffic to each
// other on top of their access links.
type PairLink struct {
	// Between names the two hosts.
	Between []string `json:"between"`
	// Link is the link, as Host.Link; up is from the first host to the
	// second.
	Link string `json:"link"`
}

// ServiceSpec is one service on a host.
type ServiceSpec struct {
	// Kind names what to run (see Kinds); e.g. "udp-upper".
	Kind string `json:"kind"`
	// Port overrides the kind's standard port (before any lab offset).
	Port int `json:"port,omitempty"`
	// Config is the kind's own settings.
	Config json.RawMessage `json:"config,omitempty"`
}

var hostName = regexp.MustCompile(`^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)

// Validate checks the topology against the kinds it will be built with and
// returns every problem, each naming its field.
func (t *Topology) Validate(kinds *Kinds) error {
	var errs []error
	block, err := t.block()
	if err != nil {
		errs = append(errs, config.Errorf("lab.block", "%v", err))
	}
	if t.Lab.PortOffset != nil && (*t.Lab.PortOffset < 0 || *t.Lab.PortOffset > 60000) {
		errs = append(errs, config.Errorf("lab.port_offset", "%d is out of range 0-60000", *t.Lab.PortOffset))
	}
	if a := t.Lab.Admin; a != "" && a != "off" {
		if _, err := netip.ParseAddrPort(a); err != nil {
			errs = append(errs, config.Errorf("lab.admin", "%q is not ip:port", a))
		} else if ap := netip.MustParseAddrPort(a); !ap.Addr().IsLoopback() && !t.Lab.AdminAllowRemote {
			errs = append(errs, config.Errorf("lab.admin", "%q is not a loopback address (set admin_allow_remote to allow it)", a))
		}
	}
	if len(t.Hosts) == 0 {
		errs = append(errs, config.Errorf("hosts", "no hosts"))
	}
	names := map[string]int{}
	addrs := map[netip.Addr]int{}
	for i, h := range t.Hosts {
		field := fmt.Sprintf("hosts[%d]", i)
		if h.Name == "" {
			errs = append(errs, config.Errorf(field+".name", "missing"))
		} else if !hostName.MatchString(h.Name) {
			errs = append(errs, config.Errorf(field+".name", "%q is not a valid host name", h.Name))
		} else if j, dup := names[h.Name]; dup {
			errs = append(errs, config.Errorf(field+".name", "%q is already used by hosts[%d]", h.Name, j))
		} else {
			names[h.Name] = i
		}
		if h.Addr != "" {
			a, err := netip.ParseAddr(h.Addr)
			switch {
			case err != nil:
				errs = append(errs, config.Errorf(field+".addr", "%q is not an IP address", h.Addr))
			case block.IsValid() && !block.Contains(a):
				errs = append(errs, config.Errorf(field+".addr", "%s is outside the lab block %s", a, block))
			default:
				if j, dup := addrs[a]; dup {
					errs = append(errs, config.Errorf(field+".addr", "%s is already used by hosts[%d]", a, j))
				}
				addrs[a] = i
			}
		}
		ports := map[string]int{}
		for k, s := range h.Services {
			sf := fmt.Sprintf("%s.services[%d]", field, k)
			kind, ok := kinds.Get(s.Kind)
			if !ok {
				errs = append(errs, config.Errorf(sf+".kind", "unknown kind %q (known: %s)", s.Kind, kinds.NameList()))
				continue
			}
			port := s.Port
			if port == 0 {
				port = kind.Port
			}
			if port < 0 || port > 65535 {
				errs = append(errs, config.Errorf(sf+".port", "%d is out of range 1-65535", s.Port))
			}
			for _, nw := range kind.networks() {
				key := fmt.Sprintf("%s/%d", nw, port)
				if j, dup := ports[key]; dup {
					errs = append(errs, config.Errorf(sf+".port", "%s port %d is already used by services[%d]", nw, port, j))
				}
				ports[key] = k
			}
			if kind.Check != nil {
				if err := kind.Check(s.Config); err != nil {
					errs = append(errs, config.Prefix(sf+".config", err))
				}
			}
		}
		if h.Link != "" {
			if _, err := link.Parse(h.Link); err != nil {
				errs = append(errs, config.Errorf(field+".link", "%v", err))
			}
		}
	}
	for i, l := range t.Links {
		field := fmt.Sprintf("links[%d]", i)
		if len(l.Between) != 2 || l.Between[0] == l.Between[1] {
			errs = append(errs, config.Errorf(field+".between", "want two different host names, got %q", l.Between))
		} else {
			for _, n := range l.Between {
				if _, ok := names[n]; !ok {
					errs = append(errs, config.Errorf(field+".between", "no host named %q", n))
				}
			}
		}
		if _, err := link.Parse(l.Link); err != nil {
			errs = append(errs, config.Errorf(field+".link", "%v", err))
		}
	}
	return errors.Join(errs...)
}

func (t *Topology) block() (netip.Prefix, error) {
	b := t.Lab.Block
	if b == "" {
		b = DefaultBlock
	}
	p, err := netip.ParsePrefix(b)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a prefix like 127.1.0.0/16", b)
	}
	if !p.Addr().IsLoopback() && !t.Lab.RemoteBlock {
		return netip.Prefix{}, fmt.Errorf("%s is not a loopback block (use part of 127.0.0.0/8, or set remote_block to split a lab over machines)", p)
	}
	if p.Addr().Is4() && p.Bits() > 30 {
		return netip.Prefix{}, fmt.Errorf("%s is too small for a lab", p)
	}
	return p.Masked(), nil
}

// DefaultTopologyYAML returns the embedded default topology file.
func DefaultTopologyYAML() []byte { return append([]byte(nil), defaultTopology...) }
