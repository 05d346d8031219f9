package router

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/dnsserver"
	"github.com/applayer/applayer/internal/trace"
)

// Reasons for a decision.
const (
	ReasonNearest  = "nearest"  // the nearest cluster took the client
	ReasonFallback = "fallback" // nearer clusters were down or overloaded
	ReasonOrigin   = "origin"   // no cluster could: the origin, last resort
	ReasonNone     = "none"     // no cluster and no origin: SERVFAIL
)

// Why a cluster was skipped.
const (
	SkipDown       = "down"
	SkipOverloaded = "overloaded"
)

const maxSkips = 8

type skip struct {
	c   *cluster
	why string
}

// decision is one routing choice; it is kept in the recent ring by value
// (no allocation per query).
type decision struct {
	at      time.Time
	client  netip.Prefix
	fromECS bool
	net     *network
	cluster *cluster
	edge    *edgeState
	addr    netip.Addr
	reason  string
	scope   uint8
	nskip   int
	skips   [maxSkips]skip
	nameLen int
	name    [255]byte
}

// decide chooses the answer for a client (ECS or the resolver) and a
// content name (lower-cased wire form): the address to answer (invalid:
// none) and the ECS scope prefix length.
func (s *Server) decide(req *dnsserver.Request, e ecs, name []byte) (netip.Addr, uint8) {
	d := s.recent.slot()
	d.at = req.Now
	if e.present && e.source > 0 {
		d.client = netip.PrefixFrom(e.addr, int(e.source))
		d.fromECS = true
	} else {
		a := req.From.Addr().Unmap()
		d.client = netip.PrefixFrom(a, a.BitLen())
	}
	d.nameLen = copy(d.name[:], name)
	ranked := s.t.def
	if np := s.t.lookup(d.client.Addr()); np != nil {
		d.net = np.net
		ranked = np.net.ranked
		d.scope = uint8(np.bits)
	} else if d.fromECS {
		d.scope = e.source
	}
	h := hashBytes(name)
	for i, r := range ranked {
		c := r.c
		up := false
		k := pick(h, c.edges, func(x *edgeState) bool {
			if !x.up.Load() {
				return false
			}
			up = true
			return x.loadValue() <= c.maxLoad
		})
		if k < 0 {
			why := SkipDown
			if up {
				why = SkipOverloaded
			}
			if d.nskip < maxSkips {
				d.skips[d.nskip] = skip{c: c, why: why}
				d.nskip++
			}
			s.m.skip(c, why)
			continue
		}
		d.cluster, d.edge, d.addr = c, c.edges[k], c.edges[k].addr
		d.reason = ReasonNearest
		if i > 0 {
			d.reason = ReasonFallback
		}
		d.edge.answered.Add(1)
		break
	}
	if d.edge == nil {
		if len(s.t.origin) > 0 {
			d.addr = s.t.origin[h%uint64(len(s.t.origin))]
			d.reason = ReasonOrigin
		} else {
			d.addr = netip.Addr{}
			d.reason = ReasonNone
		}
	}
	s.m.decided(d)
	if s.deps.Trace.Enabled() {
		sum := d.String()
		if len(sum) > trace.MaxSummary {
			sum = sum[:trace.MaxSummary]
		}
		from := req.Local
		if from == "" {
			from = s.srv.Local()
		}
		s.deps.Trace.Publish(trace.Event{From: from, To: req.From.String(), Proto: "cdn/route", Summary: sum, Time: req.Now})
	}
	addr, scope := d.addr, d.scope
	s.recent.commit()
	return addr, scope
}

// Name returns the content name asked for.
func (d *decision) Name() string {
	if d.nameLen == 0 {
		return "."
	}
	var b strings.Builder
	off := 0
	for off < d.nameLen && d.name[off] != 0 {
		l := int(d.name[off])
		if off+1+l > d.nameLen {
			break
		}
		b.Write(d.name[off+1 : off+1+l])
		b.WriteByte('.')
		off += 1 + l
	}
	return b.String()
}

// String is the decision in one line, for traces and logs:
// "video.kingcdn.com. client 127.1.1.0/24 (ecs) net umass.edu -> umass/edge1 127.1.3.1 nearest".
func (d *decision) String() string {
	var b strings.Builder
	src := "resolver"
	if d.fromECS {
		src = "ecs"
	}
	fmt.Fprintf(&b, "%s client %s (%s)", d.Name(), d.client, src)
	if d.net != nil {
		fmt.Fprintf(&b, " net %s", d.net.name)
	}
	for _, sk := range d.skips[:d.nskip] {
		fmt.Fprintf(&b, " skip %s (%s)", sk.c.name, sk.why)
	}
	switch {
	case d.edge != nil:
		fmt.Fprintf(&b, " -> %s/%s %s %s", d.cluster.name, d.edge.name, d.addr, d.reason)
	case d.addr.IsValid():
		fmt.Fprintf(&b, " -> origin %s", d.addr)
	default:
		b.WriteString(" -> no cluster, no origin: SERVFAIL")
	}
	return b.String()
}

// Decision is one routing decision as the status endpoint shows it.
type Decision struct {
	Time    time.Time `json:"time"`
	Name    string    `json:"name"`
	Client  string    `json:"client"`
	Source  string    `json:"source"` // "ecs" or "resolver"
	Network string    `json:"network,omitempty"`
	Skipped []string  `json:"skipped,omitempty"` // "nyu: down"
	Cluster string    `json:"cluster,omitempty"`
	Edge    string    `json:"edge,omitempty"`
	Addr    string    `json:"addr,omitempty"`
	Reason  string    `json:"reason"`
}

func (d *decision) export() Decision {
	o := Decision{Time: d.at, Name: d.Name(), Client: d.client.String(), Source: "resolver", Reason: d.reason}
	if d.fromECS {
		o.Source = "ecs"
	}
	if d.net != nil {
		o.Network = d.net.name
	}
	for _, sk := range d.skips[:d.nskip] {
		o.Skipped = append(o.Skipped, sk.c.name+": "+sk.why)
	}
	if d.edge != nil {
		o.Cluster, o.Edge = d.cluster.name, d.edge.name
	}
	if d.addr.IsValid() {
		o.Addr = d.addr.String()
	}
	return o
}

// recentRing keeps the last decisions. slot locks it and returns the
// next slot, cleared; commit unlocks. One decision is made at a time per
// router, which is cheap beside a DNS answer.
type recentRing struct {
	mu   sync.Mutex
	ring []decision
	next int
	n    int
}

func (r *recentRing) init(n int) { r.ring = make([]decision, n) }

func (r *recentRing) slot() *decision {
	r.mu.Lock()
	d := &r.ring[r.next]
	d.nskip, d.nameLen, d.net, d.cluster, d.edge, d.scope = 0, 0, nil, nil, nil, 0
	return d
}

func (r *recentRing) commit() {
	r.next = (r.next + 1) % len(r.ring)
	r.n = min(r.n+1, len(r.ring))
	r.mu.Unlock()
}

// list returns the decisions kept, newest first.
func (r *recentRing) list() []Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Decision, 0, r.n)
	for i := 1; i <= r.n; i++ {
		out = append(out, r.ring[(r.next-i+len(r.ring))%len(r.ring)].export())
	}
	return out
}

// question is a helper for tests and status: a content name's wire form.
func wireName(name string) []byte {
	b := make([]byte, 256)
	n, err := dns.PackDomainName(dns.Fqdn(strings.ToLower(name)), b, 0, nil, false)
	if err != nil {
		return nil
	}
	return b[:n]
}
