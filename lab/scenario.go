package lab

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
)

// Scenario is one figure of the chapter that the lab can play: Run drives
// the clients (a query to the campus resolver, a page load, a fetch through
// the cache) and the lab's trace of it is narrated as a numbered message
// sequence. Each system declares its scenarios beside its code (e.g.
// dig.LabScenarios in dns/dig/labscenario.go) and the wiring table in
// internal/app lists them, as it lists the kinds.
type Scenario struct {
	// Name is what `applayer lab scenario NAME` takes, e.g. "dns-iterative".
	Name string
	// Summary says in one line what the scenario shows, for --list.
	Summary string
	// Figure names the chapter's figure or section it reproduces.
	Figure string
	// Run drives the clients. Its own notes (the answer, the times) go to
	// env.Out; its clients publish their messages on env.Trace.
	Run func(ctx context.Context, env ScenarioEnv) error
	// Hosts are the lab hosts the scenario involves: the narration shows
	// only messages between them and the client (the rest of the lab keeps
	// working meanwhile: health checks, announces). Nil: every host.
	Hosts []string
	// Keep selects, further, the events the narration shows (nil: every
	// event).
	Keep func(e trace.Event) bool
}

// Filter returns the narration's filter of s: its Hosts (with the client)
// at both ends of each event, and its Keep.
func (s Scenario) Filter(n *Namer, client string) func(trace.Event) bool {
	in := map[string]bool{client: true}
	for _, h := range s.Hosts {
		in[h] = true
	}
	return func(e trace.Event) bool {
		if len(s.Hosts) > 0 && (!in[n.Name(e.From)] || e.To != "" && !in[n.Name(e.To)]) {
			return false
		}
		return s.Keep == nil || s.Keep(e)
	}
}

// ScenarioEnv is what a scenario's Run gets.
type ScenarioEnv struct {
	// Plan is the running lab.
	Plan *Plan
	// Client is the address the scenario's clients use, ClientName the
	// name the narration gives it ("client").
	Client     netip.Addr
	ClientName string
	// Dialer dials from Client and resolves the lab's host names through
	// the plan (with its port offset), like a lab host's dialer.
	Dialer service.Dialer
	// Trace is where the clients publish their own messages (stamped with
	// ClientName).
	Trace *trace.Bus
	// Admin sends a request to the lab's admin listener (path such as
	// "/hosts/resolver.nyu.edu/dns/resolver/flush"); it fails when the lab
	// has none.
	Admin func(ctx context.Context, method, path string) error
	// Out receives the scenario's own notes.
	Out    io.Writer
	Logger *slog.Logger
}

// Addr returns host's address with the lab port of standard port port.
func (e ScenarioEnv) Addr(host string, port int) (string, error) {
	h, ok := e.Plan.Lookup(host)
	if !ok {
		return "", fmt.Errorf("lab: scenario: the topology has no host %s", host)
	}
	return netip.AddrPortFrom(h.Addr, uint16(e.Plan.Port(port))).String(), nil
}

// Scenarios is a set of scenarios by name.
type Scenarios struct {
	m map[string]Scenario
}

// NewScenarios returns a set of the given scenarios. It panics on a
// duplicate name, which is a wiring mistake.
func NewScenarios(ss ...Scenario) *Scenarios {
	s := &Scenarios{m: map[string]Scenario{}}
	for _, sc := range ss {
		if _, dup := s.m[sc.Name]; dup {
			panic(fmt.Sprintf("lab: scenario %q listed twice", sc.Name))
		}
		s.m[sc.Name] = sc
	}
	return s
}

// Get returns the named scenario.
func (s *Scenarios) Get(name string) (Scenario, bool) {
	sc, ok := s.m[name]
	return sc, ok
}

// All returns the scenarios sorted by name.
func (s *Scenarios) All() []Scenario {
	out := make([]Scenario, 0, len(s.m))
	for _, sc := range s.m {
		out = append(out, sc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ClientAddr returns the address scenario clients use in plan: the last
// address of the lab block that no host has.
func ClientAddr(p *Plan) netip.Addr {
	used := map[netip.Addr]bool{}
	for _, h := range p.Hosts {
		used[h.Addr] = true
	}
	// The last address of the block, then downwards.
	a := p.Block.Addr()
	bits := a.BitLen() - p.Block.Bits()
	b := a.AsSlice()
	for i := len(b) - 1; i >= 0 && bits > 0; i-- {
		n := min(bits, 8)
		b[i] |= byte(1<<n - 1)
		bits -= n
	}
	last, _ := netip.AddrFromSlice(b)
	for c := last.Prev(); c.IsValid() && p.Block.Contains(c); c = c.Prev() {
		if !used[c] {
			return c
		}
	}
	return p.Block.Addr()
}

// ClientDialer returns a dialer whose connections leave from addr and
// whose destinations may be lab host names (with standard ports). Each TCP
// connection's opening and closing is published on bus (the client's own
// view of it, in the order the client sees it).
func (p *Plan) ClientDialer(addr netip.Addr, bus *trace.Bus) service.Dialer {
	return p.Dialer(tracingDialer{next: &hostDialer{addr: addr}, bus: bus})
}

type tracingDialer struct {
	next service.Dialer
	bus  *trace.Bus
}

func (d tracingDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.next.DialContext(ctx, network, address)
	if err != nil || !strings.HasPrefix(network, "tcp") || !d.bus.Enabled() {
		return c, err
	}
	tc := &tracedConn{Conn: c, bus: d.bus}
	tc.publish(trace.ConnOpen, "TCP connection opened")
	return tc, nil
}

// tracedConn publishes its closing once.
type tracedConn struct {
	net.Conn
	bus  *trace.Bus
	once sync.Once
}

func (c *tracedConn) publish(typ, summary string) {
	c.bus.Publish(trace.Event{Type: typ, From: c.LocalAddr().String(), To: c.RemoteAddr().String(), Proto: "tcp", Summary: summary})
}

func (c *tracedConn) Close() error {
	c.once.Do(func() { c.publish(trace.ConnClose, "TCP connection closed") })
	return c.Conn.Close()
}

// Step is one line of a narrated message sequence.
type Step struct {
	N        int
	Event    trace.Event
	From, To string // host names (or addresses outside the lab)
	// Conn numbers the TCP connections of HTTP and the socket examples in
	// the order they appear (0: not a connection's message).
	Conn int
}

// Namer maps addresses to the lab's host names.
type Namer struct {
	names map[netip.Addr]string
}

// NewNamer names plan's hosts and the client address.
func NewNamer(p *Plan, client netip.Addr, clientName string) *Namer {
	n := &Namer{names: map[netip.Addr]string{}}
	if p != nil {
		for _, h := range p.Hosts {
			n.names[h.Addr] = h.Name
		}
	}
	if client.IsValid() {
		n.names[client] = clientName
	}
	return n
}

// Name returns the host name of an event address (host:port), or the
// address itself when it is not a lab host's.
func (n *Namer) Name(addr string) string {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		if h, _, err := net.SplitHostPort(addr); err == nil {
			return h
		}
		return addr
	}
	if name, ok := n.names[ap.Addr().Unmap()]; ok {
		return name
	}
	return addr
}

// Narrate turns a trace into the numbered steps of a message sequence:
// events in time order, those keep rejects left out, and each message once
// (the sender's observation when the sender traces, else the receiver's:
// a query is seen by both ends).
func Narrate(events []trace.Event, n *Namer, keep func(trace.Event) bool) []Step {
	evs := append([]trace.Event(nil), events...)
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
	// The (from, to) pairs each observer published messages for.
	type pair struct{ host, typ, from, to string }
	seen := map[pair]bool{}
	for _, e := range evs {
		if observedByBoth(e.Type) {
			seen[pair{e.Host, e.Type, e.From, e.To}] = true
		}
	}
	var steps []Step
	// A connection is numbered when it opens. A client's port may be
	// reused by a later connection while the earlier one's close is still
	// being traced (net/http closes on a goroutine of its own), so each
	// address pair keeps its open connections in order: a close ends the
	// oldest, messages go to the newest.
	conns := map[string][]int{}
	numbered := 0
	connOf := func(k, typ string) int {
		open := conns[k]
		switch {
		case typ == trace.ConnOpen || len(open) == 0:
			numbered++
			conns[k] = append(open, numbered)
			if typ == trace.ConnClose {
				conns[k] = open
			}
			return numbered
		case typ == trace.ConnClose:
			conns[k] = open[1:]
			return open[0]
		default:
			return open[len(open)-1]
		}
	}
	for _, e := range evs {
		if keep != nil && !keep(e) {
			continue
		}
		from, to := n.Name(e.From), n.Name(e.To)
		if observedByBoth(e.Type) && e.Host != "" && e.Host != from && seen[pair{from, e.Type, e.From, e.To}] {
			continue // the sender's own observation is narrated
		}
		s := Step{N: len(steps) + 1, Event: e, From: from, To: to}
		switch {
		case isConnProto(e.Proto) && e.To != "":
			s.Conn = connOf(connKey(e.From, e.To), e.Type)
		case e.Proto == "link" && e.To != "":
			// A lost segment or a queue wait on an open connection
			// carries that connection's number (datagrams none).
			if open := conns[connKey(e.From, e.To)]; len(open) > 0 {
				s.Conn = open[len(open)-1]
			}
		}
		steps = append(steps, s)
	}
	return steps
}

// observedByBoth reports whether events of type t may be published by
// both ends: messages and connections.
func observedByBoth(t string) bool {
	return t == trace.Msg || t == trace.ConnOpen || t == trace.ConnClose
}

func isConnProto(p string) bool {
	fam, _, _ := strings.Cut(p, "/")
	return p == "tcp" || strings.HasPrefix(p, "http/1") || p == "http/2" || p == "tls" || fam == "smtp" || fam == "imap" || fam == "pop3"
}

func connKey(a, b string) string {
	if a > b {
		a, b = b, a
	}
	return a + " " + b
}

// WriteNarration prints steps as a table: number, time since the first
// step (or "+T" when maskTimes, for golden files), who -> whom, protocol,
// summary and size.
func WriteNarration(w io.Writer, steps []Step, maskTimes bool) error {
	if len(steps) == 0 {
		_, err := fmt.Fprintln(w, "(no messages traced)")
		return err
	}
	t0 := steps[0].Event.Time
	var b strings.Builder
	for _, s := range steps {
		at := "+T"
		if !maskTimes {
			at = fmt.Sprintf("+%.1fms", float64(s.Event.Time.Sub(t0).Microseconds())/1000)
		}
		what := s.Event.Summary
		if s.Event.Type != trace.Msg {
			what = "[" + s.Event.Type + "] " + what
		}
		if s.Conn > 0 {
			what = fmt.Sprintf("(conn %d) %s", s.Conn, what)
		}
		size := ""
		if s.Event.Bytes > 0 {
			size = fmt.Sprintf("  (%d B)", s.Event.Bytes)
		}
		who := s.From + " -> " + s.To
		if s.Event.To == "" {
			who = s.From // a peer's own decision
		}
		fmt.Fprintf(&b, "%3d %9s  %s  %s  %s%s\n", s.N, at, who, s.Event.Proto, what, size)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// adminRequest sends method path to the admin listener at addr.
func adminRequest(ctx context.Context, addr, method, path string) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, nil)
	if err != nil {
		return fmt.Errorf("lab: admin: %w", err)
	}
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("lab: admin %s %s: %w", method, path, err)
	}
	io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("lab: admin %s %s: %s", method, path, res.Status)
	}
	return nil
}

// AdminFunc returns a ScenarioEnv.Admin for the admin listener at addr.
func AdminFunc(addr string) func(ctx context.Context, method, path string) error {
	return func(ctx context.Context, method, path string) error {
		if addr == "" {
			return fmt.Errorf("lab: the lab has no admin listener (%s %s)", method, path)
		}
		return adminRequest(ctx, addr, method, path)
	}
}

// ServiceAddr returns the first host running kind and where it listens,
// given the kind's standard port (a port the topology sets wins).
func (p *Plan) ServiceAddr(kind string, standard int) (PlannedHost, netip.AddrPort, bool) {
	for _, h := range p.Hosts {
		for _, s := range h.Services {
			if s.Kind == kind {
				port := standard
				if s.Port != 0 {
					port = s.Port
				}
				return h, netip.AddrPortFrom(h.Addr, uint16(p.Port(port))), true
			}
		}
	}
	return PlannedHost{}, netip.AddrPort{}, false
}
