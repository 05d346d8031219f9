package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/service"
)

// Engine resolves names: iteration from the root hints (or forwarding),
// the RRset cache, DNSSEC validation and aggressive use of cached denial
// proofs (RFC 8198). It has no listener: the Server answers clients with
// one, and `applayer dig +trace` iterates with one and prints each step.
// An Engine is safe for concurrent use.
type Engine struct {
	cfg  Config
	deps service.Deps
	log  *slog.Logger
	m    *metrics

	roots      []netip.AddrPort
	forwarders []netip.AddrPort
	anchors    []dns.RR

	rr    *rrCache
	infra infra
	hz    *hazardState // lab-only weakened defences; nil: none
}

// init sets e up for cfg (already validated and defaulted) without its
// metrics.
func (e *Engine) init(cfg Config, deps service.Deps, service string) error {
	e.cfg, e.deps = cfg, deps
	e.log = deps.Logger.With("service", service)
	e.infra.m = map[netip.AddrPort]*serverStat{}
	for _, h := range cfg.RootHints {
		ap, _ := parseServer(h, cfg.UpstreamPort)
		e.roots = append(e.roots, ap)
	}
	if len(cfg.RootHints) == 0 && cfg.RootHintsFile != "" {
		addrs, err := ReadRootHints(cfg.RootHintsFile)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			e.roots = append(e.roots, netip.AddrPortFrom(a, uint16(cfg.UpstreamPort)))
		}
	}
	for _, h := range cfg.Forwarders {
		ap, _ := parseServer(h, 53)
		e.forwarders = append(e.forwarders, ap)
	}
	e.rr = newRRCache(cfg.CacheSize, cfg.CacheBytes/2)
	e.rr.s.now = func() int64 { return e.deps.Now().UnixNano() }
	e.initHazards(cfg)
	return nil
}

// NewEngine returns an engine for cfg: the fields about iteration,
// forwarding, caching and validation count (Listen, Allow and the TCP and
// GC settings are the Server's). With cfg.TrustAnchorFile set, the trust
// anchor is read now and answers are validated. Its metrics are
// registered with deps.Metrics.
func NewEngine(cfg Config, deps service.Deps) (*Engine, error) {
	if err := errors.Join(cfg.engineErrors()...); err != nil {
		return nil, fmt.Errorf("resolver: config: %w", err)
	}
	cfg.defaults()
	deps = deps.Defaults()
	e := new(Engine)
	if err := e.init(cfg, deps, "dns-engine"); err != nil {
		return nil, err
	}
	if f := cfg.TrustAnchorFile; f != "" {
		anchors, err := ReadTrustAnchors(f)
		if err != nil {
			return nil, err
		}
		e.anchors = anchors
	}
	m, err := newMetrics(deps.Metrics, e.rr.len, func() (int64, int64, int64) {
		r, n := e.rr.s.bytes()
		return r, n, 0
	})
	if err != nil {
		return nil, err
	}
	e.m = m
	return e, nil
}

// Step is one upstream exchange of a resolution, reported to the observer
// given to Resolve.
type Step struct {
	// Server is the address asked; ServerName its name server name when
	// the engine learnt it from a delegation ("" for root hints and
	// forwarders).
	Server     netip.AddrPort
	ServerName string
	// Name and Type are the question as asked (a minimised name while
	// minimising).
	Name string
	Type uint16
	// Reply is the server's reply as received (0x20 spelling undone). It
	// is valid only during the call: the engine filters it afterwards.
	Reply *dns.Msg
	// Size is the reply's size on the wire, Proto "UDP" or "TCP" (the
	// transport that gave the reply), RTT the exchange's duration.
	Size  int
	Proto string
	RTT   time.Duration
	// Nested marks exchanges made on the side of the resolution: address
	// lookups of glueless name servers and DNSSEC key fetches.
	Nested bool
}

// Resolve answers name/qtype from the cache or by iteration, following
// CNAME and DNAME chains, and returns the reply a client would get (RA
// set; AD when validated secure; SERVFAIL for bogus data). step, when not
// nil, is called for every upstream exchange, in order, from the calling
// goroutine.
func (e *Engine) Resolve(ctx context.Context, name string, qtype uint16, step func(Step)) (*dns.Msg, error) {
	if _, ok := dns.IsDomainName(name); !ok {
		return nil, fmt.Errorf("resolver: %q is not a domain name", name)
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.ResolveTimeout.D())
	defer cancel()
	t := &task{step: step}
	if step != nil {
		t.names = map[netip.AddrPort]string{}
	}
	res, err := e.resolve(ctx, t, dns.Fqdn(name), qtype)
	if err != nil {
		return nil, err
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.Response, m.RecursionAvailable = true, true
	m.Rcode = res.rcode
	if res.sec == secBogus {
		m.Rcode = dns.RcodeServerFailure
		return m, nil
	}
	m.Answer, m.Ns = res.answer, res.ns
	m.AuthenticatedData = res.sec == secSecure
	return m, nil
}

// nameServers records, for a resolution that reports its steps, that
// addrs belong to the name server called name.
func (t *task) nameServers(name string, addrs []netip.AddrPort) {
	if t.names == nil {
		return
	}
	for _, a := range addrs {
		if _, ok := t.names[a]; !ok {
			t.names[a] = name
		}
	}
}
