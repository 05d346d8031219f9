package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/internal/transport"
)

// Plan is a topology with every address and port decided.
type Plan struct {
	// Topology is the validated input.
	Topology *Topology
	// Block is the lab's address block.
	Block netip.Prefix
	// PortOffset is added to every standard port.
	PortOffset int
	// Hosts are the planned hosts in topology order.
	Hosts []PlannedHost
	// StateDir is where services keep state between runs (created by
	// Build). Services use a subdirectory named after their system, e.g.
	// StateDir/dns. The signed root's trust anchor is StateDir/dns/root.ds.
	StateDir string
	// Records are the DNS records the kinds' Records hooks contribute,
	// master-file lines with fully qualified owner names, in topology order.
	Records []string
	// only, when set (Select), names the hosts this process runs; the
	// others belong to other processes or machines.
	only map[string]bool
}

// Select makes Build run only the named hosts (lab up --hosts), each at
// the address the plan gives it, so one topology can be split over several
// processes or machines: every process plans the whole topology (the same
// addresses, ports and zones) and runs its share of it.
func (p *Plan) Select(names []string) error {
	only := map[string]bool{}
	var unknown []string
	for _, n := range names {
		h, ok := p.Lookup(strings.TrimSpace(n))
		if !ok {
			unknown = append(unknown, n)
			continue
		}
		only[h.Name] = true
	}
	if len(unknown) > 0 {
		var known []string
		for _, h := range p.Hosts {
			known = append(known, h.Name)
		}
		return fmt.Errorf("lab: --hosts: no host %s in the topology (hosts: %s)", strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	if len(only) == 0 {
		return fmt.Errorf("lab: --hosts: no host named")
	}
	p.only = only
	return nil
}

// Runs reports whether this process runs host (every host unless Select
// chose some).
func (p *Plan) Runs(host string) bool { return p.only == nil || p.only[host] }

// PlannedHost is a host with its address decided.
type PlannedHost struct {
	Name     string
	Addr     netip.Addr
	Services []ServiceSpec
}

// Port returns the port a service with standard port p uses in this lab.
func (p *Plan) Port(standard int) int { return standard + p.PortOffset }

// Lookup returns the planned host with the given name.
func (p *Plan) Lookup(name string) (PlannedHost, bool) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	for _, h := range p.Hosts {
		if strings.EqualFold(h.Name, name) {
			return h, true
		}
	}
	return PlannedHost{}, false
}

// NewPlan validates t and assigns addresses and the port offset. canBind
// reports whether privileged ports may be bound; nil probes the system.
func NewPlan(t *Topology, kinds *Kinds, canBind func(netip.Addr) bool) (*Plan, error) {
	if err := t.Validate(kinds); err != nil {
		return nil, err
	}
	block, _ := t.block()
	p := &Plan{Topology: t, Block: block, StateDir: t.Lab.StateDir}
	if p.StateDir == "" {
		// One per user: a directory another user created (root's lab,
		// say) would not be writable.
		p.StateDir = filepath.Join(os.TempDir(), fmt.Sprintf("applayer-lab-%d", os.Getuid()))
	}
	used := map[netip.Addr]bool{}
	for _, h := range t.Hosts {
		if h.Addr != "" {
			used[netip.MustParseAddr(h.Addr)] = true
		}
	}
	next := block.Addr().Next() // skip the network address
	for _, h := range t.Hosts {
		ph := PlannedHost{Name: h.Name, Services: h.Services}
		if h.Addr != "" {
			ph.Addr = netip.MustParseAddr(h.Addr)
		} else {
			for used[next] {
				next = next.Next()
			}
			if !block.Contains(next) {
				return nil, fmt.Errorf("lab: lab.block %s has no free address left for host %q", block, h.Name)
			}
			ph.Addr = next
			used[next] = true
		}
		p.Hosts = append(p.Hosts, ph)
	}
	switch {
	case t.Lab.PortOffset != nil:
		p.PortOffset = *t.Lab.PortOffset
	default:
		if canBind == nil {
			canBind = CanBindPrivileged
		}
		if !canBind(p.Hosts[0].Addr) {
			p.PortOffset = DefaultPortOffset
		}
	}
	for i, h := range p.Hosts {
		for k, s := range h.Services {
			kind, _ := kinds.Get(s.Kind)
			if port := p.Port(portOf(s, kind)); port > 65535 {
				return nil, fmt.Errorf("lab: hosts[%d].services[%d].port: %d with the lab's port offset %d is beyond 65535", i, k, portOf(s, kind), p.PortOffset)
			}
		}
	}
	for i, h := range p.Hosts {
		for k, s := range h.Services {
			kind, _ := kinds.Get(s.Kind)
			if kind.Records == nil {
				continue
			}
			rrs, err := kind.Records(p.env(h, s, kind))
			if err != nil {
				return nil, fmt.Errorf("lab: hosts[%d].services[%d] (%s on %s): records: %w", i, k, kind.Name, h.Name, err)
			}
			p.Records = append(p.Records, rrs...)
		}
	}
	return p, nil
}

// env is the Env of service s of host h, without Deps and Admin.
func (p *Plan) env(h PlannedHost, s ServiceSpec, kind Kind) Env {
	return Env{Host: h, Spec: s, Listen: netip.AddrPortFrom(h.Addr, uint16(p.Port(portOf(s, kind)))), Plan: p}
}

func portOf(s ServiceSpec, k Kind) int {
	if s.Port != 0 {
		return s.Port
	}
	return k.Port
}

// CanBindPrivileged reports whether this process may bind a port below 1024
// on addr, by trying to.
func CanBindPrivileged(addr netip.Addr) bool {
	ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, 1023).String())
	if err == nil {
		ln.Close()
		return true
	}
	return !errors.Is(err, syscall.EACCES) && !errors.Is(err, syscall.EPERM)
}

// Running is a started lab.
type Running struct {
	Plan  *Plan
	Group *service.Group
	Admin *obs.Admin
	// Entries lists, per service, the host and where it listens.
	Entries []Entry

	claimed  string        // the file recording this lab on its block (claim.go)
	links    *links        // nil when the topology has no links
	stop     chan struct{} // closed by Shutdown: ends the admin's trace streams
	stopOnce sync.Once
}

// Entry is one started service, for the table.
type Entry struct {
	Host    string
	Addr    netip.Addr
	Kind    string
	Summary string
	Service service.Service
}

// Build constructs every service of the plan (not yet started), with the
// admin listener first unless the topology turns it off.
func Build(p *Plan, kinds *Kinds, deps service.Deps, reg *prometheus.Registry) (*Running, error) {
	deps = deps.Defaults()
	if deps.Trace == nil {
		deps.Trace = trace.NewBus(nil) // the admin's /trace stream subscribes to it
	}
	if err := os.MkdirAll(p.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("lab: state dir: %w", err)
	}
	r := &Running{Plan: p, Group: service.NewGroup(deps.Logger), stop: make(chan struct{})}
	if a := p.Topology.Lab.Admin; a != "off" {
		if a == "" {
			a = DefaultAdmin
		}
		admin, err := obs.NewAdmin(obs.AdminConfig{Addr: a, AllowRemote: p.Topology.Lab.AdminAllowRemote}, reg, deps.Logger.With("service", "admin"))
		if err != nil {
			return nil, err
		}
		r.Admin = admin
		admin.Handle("GET /trace", traceHandler(deps.Trace, r.stop))
		r.Group.Add(admin)
	}
	r.links = newLinks(p, deps.Trace)
	if r.links != nil {
		if err := deps.Metrics.Register(newLinkCollector(r.links)); err != nil {
			return nil, fmt.Errorf("lab: link metrics: %w", err)
		}
	}
	for i, h := range p.Hosts {
		if !p.Runs(h.Name) {
			continue
		}
		for k, s := range h.Services {
			kind, _ := kinds.Get(s.Kind)
			d := deps
			d.Logger = deps.Logger.With("host", h.Name, "kind", kind.Name)
			d.Metrics = prometheus.WrapRegistererWith(prometheus.Labels{"host": h.Name}, deps.Metrics)
			d.Dialer = newHostDialer(h.Addr, deps.Dialer)
			d.Trace = deps.Trace.WithHost(h.Name)
			var wrap transport.ListenerWrap
			if r.links != nil {
				d.Dialer = r.links.dialer(h.Addr, d.Dialer, d.Trace)
				wrap = r.links.listenerWrap(h.Addr, d.Trace)
			}
			admin := hostAdmin{prefix: "/hosts/" + h.Name}
			if r.Admin != nil {
				admin.mux = r.Admin
			}
			env := p.env(h, s, kind)
			env.Deps, env.Admin = d, admin
			svc, err := kind.Build(env)
			if err != nil {
				return nil, fmt.Errorf("lab: hosts[%d].services[%d] (%s on %s): %w", i, k, kind.Name, h.Name, err)
			}
			if wrap != nil {
				r.Group.Add(linkedService{Service: svc, wrap: wrap})
			} else {
				r.Group.Add(svc)
			}
			r.Entries = append(r.Entries, Entry{Host: h.Name, Addr: h.Addr, Kind: kind.Name, Summary: kind.Summary, Service: svc})
		}
	}
	return r, nil
}

// Start starts every service in order; on failure the started ones are
// stopped again.
func (r *Running) Start(ctx context.Context) error {
	if err := r.Group.Start(ctx); err != nil {
		return r.explainInUse(err)
	}
	r.writeClaim()
	if r.Admin != nil {
		r.Admin.SetReady(true)
	}
	return nil
}

// Shutdown stops every service at once, each within ctx (see
// service.Group.Shutdown): only real failures are returned.
func (r *Running) Shutdown(ctx context.Context) error {
	if r.Admin != nil {
		r.Admin.SetReady(false)
	}
	r.stopOnce.Do(func() { close(r.stop) })
	defer r.removeClaim()
	return r.Group.Shutdown(ctx)
}

// PrintTable writes the table of hosts, services and addresses.
func (r *Running) PrintTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "HOST\tADDRESS\tSERVICE\tLISTENING ON\n")
	for _, e := range r.Entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Host, e.Addr, e.Kind, listenString(e.Service))
	}
	if r.Admin != nil {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", "(lab)", "-", "admin", listenString(r.Admin)+"  /metrics /healthz /readyz")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.links != nil {
		r.links.describe(w, r.Plan.Topology)
	}
	if _, err := fmt.Fprintf(w, "\nState (keys, trust anchor, lab CA, caches, databases): %s\n", r.Plan.StateDir); err != nil {
		return err
	}
	if r.Plan.PortOffset != 0 {
		why := "privileged ports are not available"
		if r.Plan.Topology.Lab.PortOffset != nil {
			why = "as configured"
		}
		_, err := fmt.Fprintf(w, "\nEvery port is offset by %d, %s (DNS on %d, HTTP on %d).\n",
			r.Plan.PortOffset, why, r.Plan.Port(53), r.Plan.Port(80))
		return err
	}
	return nil
}

func listenString(s service.Service) string {
	a, ok := s.(service.Addresser)
	if !ok {
		return "-"
	}
	var parts []string
	for _, addr := range a.Addrs() {
		parts = append(parts, addr.Network()+" "+addr.String())
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}
