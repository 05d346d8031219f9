package resolver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/lab"
)

// Hazards switch off defences of the resolver against forged replies, for
// the lab's dns-poisoning lesson (Kaminsky's attack) only. They cannot be
// set from a config file or the command line (Config.Hazards is not
// serialised): a lab experiment passes them in-process, and New and
// NewEngine refuse them unless the resolver runs inside a lab on loopback
// (Lab set, the lab's block a loopback prefix, the listen address, every
// root hint and every forwarder in that block). 0x20 (Config.No0x20) and
// DNSSEC validation (Config.TrustAnchorFile) are ordinary settings and
// are not here.
type Hazards struct {
	// Lab is the plan of the lab the resolver runs in: the mark that it
	// is one.
	Lab *lab.Plan
	// SequentialIDs makes query IDs count up by one from a random start
	// (as resolvers did before random IDs), so whoever sees one query's
	// ID knows the next.
	SequentialIDs bool
	// FixedPort, when not 0, sends every upstream UDP query from this
	// port of the listen address (as resolvers did before 2008) instead
	// of a random one. Those queries take turns on the port.
	FixedPort uint16
	// DialFrom opens the fixed-port sockets (the lab's links and
	// SO_REUSEADDR); nil binds a plain net.Dialer to the port.
	DialFrom func(ctx context.Context, local netip.AddrPort, address string) (net.Conn, error)
	// NoBailiwick turns the bailiwick and credibility checks off: every
	// NS and A/AAAA record of a reply's authority and additional
	// sections is cached whatever its owner and replaces what was
	// cached (the "additional records can be anything" of the chapter),
	// instead of only what lies in the asked server's zone, learnt from
	// referrals, never over better-ranked data (RFC 2181 section 5.4.1).
	NoBailiwick bool
}

// weakens reports whether h switches any defence off.
func (h *Hazards) weakens() bool {
	return h != nil && (h.SequentialIDs || h.FixedPort != 0 || h.NoBailiwick)
}

// hazardErrors refuses hazards outside a loopback lab.
func (c Config) hazardErrors() []error {
	h := c.Hazards
	if !h.weakens() {
		return nil
	}
	if h.Lab == nil || !h.Lab.Block.IsValid() {
		return []error{config.Errorf("hazards", "weakened defences run only inside a lab")}
	}
	block := h.Lab.Block
	if !loopbackBlock(block) {
		return []error{config.Errorf("hazards", "the lab's block %s is not loopback: weakened defences run only in a lab on loopback", block)}
	}
	var errs []error
	in := func(field string, a netip.Addr) {
		if !a.IsLoopback() || !block.Contains(a.Unmap()) {
			errs = append(errs, config.Errorf(field, "%s is outside the lab's loopback block %s: weakened defences run only inside it", a, block))
		}
	}
	if ap, err := netip.ParseAddrPort(c.Listen); err != nil {
		errs = append(errs, config.Errorf("listen", "weakened defences need the listen address in the lab's block %s, not %q", block, c.Listen))
	} else {
		in("listen", ap.Addr())
	}
	for i, s := range c.RootHints {
		if ap, err := parseServer(s, 53); err == nil {
			in(fmt.Sprintf("root_hints[%d]", i), ap.Addr())
		}
	}
	for i, s := range c.Forwarders {
		if ap, err := parseServer(s, 53); err == nil {
			in(fmt.Sprintf("forwarders[%d]", i), ap.Addr())
		}
	}
	if c.RootHintsFile != "" && len(c.RootHints) == 0 {
		errs = append(errs, config.Errorf("root_hints_file", "weakened defences need root_hints in the lab's block"))
	}
	return errs
}

// loopbackBlock reports whether every address of p is a loopback one.
func loopbackBlock(p netip.Prefix) bool {
	if p.Addr().Is4() {
		return p.Bits() >= 8 && netip.MustParsePrefix("127.0.0.0/8").Contains(p.Addr())
	}
	return p.Bits() == 128 && p.Addr() == netip.IPv6Loopback()
}

// hazardState is an engine's state for its hazards.
type hazardState struct {
	h     *Hazards
	id    atomic.Uint32 // the last sequential ID
	port  sync.Mutex    // held by the query on the fixed port
	local netip.Addr    // the listen address, source of fixed-port queries
}

func (e *Engine) initHazards(cfg Config) {
	if !cfg.Hazards.weakens() {
		return
	}
	e.hz = &hazardState{h: cfg.Hazards}
	e.hz.id.Store(rand.Uint32())
	if ap, err := netip.ParseAddrPort(cfg.Listen); err == nil {
		e.hz.local = ap.Addr()
	}
	e.log.Warn("resolver: lab hazards: defences against forged replies are OFF", "sequential_ids", cfg.Hazards.SequentialIDs,
		"fixed_port", cfg.Hazards.FixedPort, "no_bailiwick", cfg.Hazards.NoBailiwick, "lab_block", cfg.Hazards.Lab.Block)
}

// queryID returns the ID of the next upstream query.
func (e *Engine) queryID() uint16 {
	if e.hz != nil && e.hz.h.SequentialIDs {
		return uint16(e.hz.id.Add(1))
	}
	return uint16(rand.Uint32())
}

// dialUpstreamUDP opens the socket of one UDP query: from a random port
// (the kernel's choice), or with the FixedPort hazard from that port, in
// turn with other queries (release gives the port back).
func (e *Engine) dialUpstreamUDP(ctx context.Context, server netip.AddrPort) (conn net.Conn, release func(), err error) {
	if e.hz == nil || e.hz.h.FixedPort == 0 {
		conn, err = e.deps.Dialer.DialContext(ctx, "udp", server.String())
		return conn, func() {}, err
	}
	e.hz.port.Lock()
	local := netip.AddrPortFrom(e.hz.local, e.hz.h.FixedPort)
	if d := e.hz.h.DialFrom; d != nil {
		conn, err = d(ctx, local, server.String())
	} else {
		nd := net.Dialer{LocalAddr: net.UDPAddrFromAddrPort(local)}
		conn, err = nd.DialContext(ctx, "udp", server.String())
	}
	if err != nil {
		e.hz.port.Unlock()
		return nil, nil, err
	}
	return conn, e.hz.port.Unlock, nil
}

// trustEverything is the NoBailiwick hazard: the NS records of m's
// authority section and the addresses of its additional section are
// cached as they come, over whatever was cached for their names.
func (e *Engine) trustEverything(m *dns.Msg) {
	if e.hz == nil || !e.hz.h.NoBailiwick {
		return
	}
	now := e.deps.Now()
	sets := map[string][]dns.RR{}
	var order []string
	add := func(rr dns.RR) {
		k := string(rrKey(rr.Header().Name, rr.Header().Rrtype))
		if _, ok := sets[k]; !ok {
			order = append(order, k)
		}
		sets[k] = append(sets[k], rr)
	}
	for _, rr := range m.Ns {
		if rr.Header().Rrtype == dns.TypeNS {
			add(rr)
		}
	}
	for _, rr := range m.Extra {
		if t := rr.Header().Rrtype; t == dns.TypeA || t == dns.TypeAAAA {
			add(rr)
		}
	}
	for _, k := range order {
		rrs := sets[k]
		ttl := min(rrsetTTL(rrs), uint32(e.cfg.MaxTTL.D()/time.Second))
		e.rr.put([]byte(k), &rrEntry{rrs: rrs, rank: rankGlue, stored: now.UnixNano(), expires: now.Add(time.Duration(ttl) * time.Second)})
	}
}
