package resolver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// task is the budget of one client query: its upstream queries and the
// nesting depth of name-server address lookups it may start.
type task struct {
	upstream int
	depth    int
	// refresh skips the cached answer for the first name (prefetch).
	refresh bool
	// sigChecks and sigFails count signature verifications and failed
	// ones (KeyTrap limits); keyDepth bounds chain-of-trust recursion.
	sigChecks, sigFails, keyDepth int
	// step, when set, observes every upstream exchange (Engine.Resolve);
	// names maps the servers' addresses to their names for it.
	step  func(Step)
	names map[netip.AddrPort]string
}

const (
	maxDepth = 6  // nested glueless lookups
	maxChain = 12 // CNAME/DNAME hops
	maxSteps = 40 // referrals and minimisation steps per iteration
)

var (
	errBudget  = errors.New("resolver: upstream query budget exhausted")
	errDepth   = errors.New("resolver: name server lookups nested too deep")
	errNoServe = errors.New("resolver: no server answered")
)

// result is a resolved answer.
type result struct {
	rcode  int
	answer []dns.RR
	ns     []dns.RR
	sec    security
	ede    *dns.EDNS0_EDE
}

// kind is how a reply is classified.
type kind int

const (
	kindLame kind = iota
	kindAnswer
	kindNXDomain
	kindNoData
	kindReferral
)

func (k kind) String() string {
	return [...]string{"lame", "answer", "nxdomain", "nodata", "referral"}[k]
}

// sanitize drops every record whose owner is outside zone: a server may
// only speak for its own zone (the bailiwick rule). It also drops records
// of classes other than IN, and OPT.
func sanitize(m *dns.Msg, zone string) {
	keep := func(rrs []dns.RR) []dns.RR {
		out := rrs[:0]
		for _, rr := range rrs {
			h := rr.Header()
			if h.Rrtype == dns.TypeOPT || h.Class != dns.ClassINET {
				continue
			}
			if dns.IsSubDomain(zone, h.Name) {
				out = append(out, rr)
			}
		}
		return out
	}
	m.Answer = keep(m.Answer)
	m.Ns = keep(m.Ns)
	m.Extra = keep(m.Extra)
}

// classify decides what a sanitized reply from a server of zone means for
// the question qname/qtype. For a referral it returns the child zone.
func classify(m *dns.Msg, qname string, qtype uint16, zone string) (kind, string) {
	switch m.Rcode {
	case dns.RcodeNameError:
		return kindNXDomain, ""
	case dns.RcodeSuccess:
	default:
		return kindLame, ""
	}
	if chain, _, _ := extractChain(m.Answer, qname, qtype); len(chain) > 0 {
		return kindAnswer, ""
	}
	var child string
	for _, rr := range m.Ns {
		h := rr.Header()
		switch h.Rrtype {
		case dns.TypeSOA:
			if dns.IsSubDomain(h.Name, qname) {
				return kindNoData, ""
			}
		case dns.TypeNS:
			if child == "" {
				child = lowerName(h.Name)
			}
		}
	}
	if child != "" && child != zone && dns.IsSubDomain(zone, child) && dns.IsSubDomain(child, qname) {
		return kindReferral, child
	}
	if m.Authoritative && len(m.Answer) == 0 {
		return kindNoData, ""
	}
	return kindLame, ""
}

// extractChain follows qname through the answer records: CNAMEs, DNAMEs
// (with the CNAME they imply) and finally the records of type qtype. It
// returns the records of the chain, the last name reached and whether the
// chain ended in data of type qtype.
func extractChain(answer []dns.RR, qname string, qtype uint16) ([]dns.RR, string, bool) {
	var out []dns.RR
	cur := qname
	for hop := 0; hop < maxChain; hop++ {
		var data []dns.RR
		var cname *dns.CNAME
		var dname *dns.DNAME
		for _, rr := range answer {
			h := rr.Header()
			switch {
			case equalName(h.Name, cur) && h.Rrtype == qtype:
				data = append(data, rr)
			case equalName(h.Name, cur) && h.Rrtype == dns.TypeCNAME:
				cname = rr.(*dns.CNAME)
			case h.Rrtype == dns.TypeDNAME && !equalName(h.Name, cur) && dns.IsSubDomain(h.Name, cur):
				dname = rr.(*dns.DNAME)
			}
		}
		switch {
		case len(data) > 0:
			return append(out, data...), cur, true
		case dname != nil:
			prefix := cur
			if dname.Hdr.Name != "." {
				prefix = cur[:len(cur)-len(dname.Hdr.Name)]
			}
			target := prefix + dns.Fqdn(dname.Target)
			if len(target) > 255 {
				return out, cur, false
			}
			syn := &dns.CNAME{Hdr: dns.RR_Header{Name: cur, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: dname.Hdr.Ttl}, Target: target}
			out = append(out, dname, syn)
			cur = lowerName(target)
		case cname != nil:
			out = append(out, cname)
			cur = lowerName(cname.Target)
		default:
			return out, cur, false
		}
	}
	return out, cur, false
}

func equalName(a, b string) bool {
	return len(a) == len(b) && dns.CanonicalName(a) == dns.CanonicalName(b)
}

// resolve answers qname/qtype from the cache or by iteration, following
// CNAME and DNAME chains across zones.
func (r *Engine) resolve(ctx context.Context, t *task, qname string, qtype uint16) (*result, error) {
	qname = lowerName(qname)
	res := &result{sec: secUnset}
	cur := qname
	for hop := 0; hop < maxChain; hop++ {
		skipCache := t.refresh && hop == 0
		if !skipCache {
			if done, next := r.fromCache(res, cur, qtype); done {
				return res, nil
			} else if next != "" {
				cur = next
				continue
			}
		}
		if !skipCache && r.aggressive(res, cur, qtype) {
			return res, nil
		}
		m, zone, err := r.iterate(ctx, t, cur, qtype)
		if err != nil {
			return nil, err
		}
		sec := r.validate(ctx, t, m, zone, cur, qtype)
		res.mergeSec(sec.state)
		if sec.state == secInsecure && res.ede == nil {
			res.ede = sec.ede
		}
		chain, last, complete := extractChain(m.Answer, cur, qtype)
		r.cacheAnswer(m, chain, cur, last, qtype, complete, sec)
		res.answer = append(res.answer, chainWithSigs(chain, m.Answer)...)
		// The proof of a wildcard expansion goes along (RFC 4035
		// 3.1.3.3), so a validator behind this resolver can check it.
		res.ns = append(res.ns, wildcardProof(m, chain)...)
		if sec.state == secBogus {
			// Kept for clients that set CD; others get SERVFAIL.
			res.ede = sec.ede
			res.rcode = m.Rcode
			if !complete {
				res.ns = negativeAuthority(m)
			}
			return res, nil
		}
		switch {
		case complete:
			res.rcode = dns.RcodeSuccess
			return res, nil
		case last != cur && m.Rcode == dns.RcodeSuccess && !r.answersLast(m, last):
			// The chain leaves this server's data: go on from its end.
			cur = last
			continue
		default:
			res.rcode = m.Rcode
			res.ns = append(res.ns, negativeAuthority(m)...)
			for _, rr := range res.ns {
				rr.Header().Ttl = min(rr.Header().Ttl, uint32(r.cfg.MaxNegativeTTL.D()/time.Second))
			}
			return res, nil
		}
	}
	return nil, fmt.Errorf("resolver: CNAME chain from %s longer than %d", qname, maxChain)
}

// answersLast reports whether m is itself the negative answer for the end
// of its chain (an authoritative NODATA or NXDOMAIN for the target).
func (r *Engine) answersLast(m *dns.Msg, last string) bool {
	for _, rr := range m.Ns {
		if rr.Header().Rrtype == dns.TypeSOA && dns.IsSubDomain(rr.Header().Name, last) {
			return true
		}
	}
	return false
}

// negativeAuthority returns the SOA and denial records of a negative
// answer with their TTLs capped at the negative TTL, min(SOA TTL, SOA
// minimum) (RFC 2308 section 5).
func negativeAuthority(m *dns.Msg) []dns.RR {
	ttl := ^uint32(0)
	for _, rr := range m.Ns {
		if s, ok := rr.(*dns.SOA); ok {
			ttl = min(s.Hdr.Ttl, s.Minttl)
		}
	}
	var out []dns.RR
	for _, rr := range m.Ns {
		switch rr.Header().Rrtype {
		case dns.TypeSOA, dns.TypeNSEC, dns.TypeNSEC3, dns.TypeRRSIG:
			c := dns.Copy(rr)
			c.Header().Ttl = min(c.Header().Ttl, ttl)
			out = append(out, c)
		}
	}
	return out
}

// iterate asks the hierarchy about qname/qtype, starting at the closest
// cached delegation and following referrals down. It returns the final
// reply (sanitized) and the zone of the server that gave it.
func (r *Engine) iterate(ctx context.Context, t *task, qname string, qtype uint16) (*dns.Msg, string, error) {
	if len(r.forwarders) > 0 {
		m, _, err := r.ask(ctx, t, r.forwarders, qname, qtype)
		if err != nil {
			return nil, "", err
		}
		sanitize(m, ".")
		return m, ".", nil
	}
	// DS lives on the parent side of a zone cut: start above qname.
	from := qname
	if qtype == dns.TypeDS && qname != "." {
		if idx := dns.Split(qname); len(idx) > 1 {
			from = qname[idx[1]:]
		} else {
			from = "."
		}
	}
	zone, servers, err := r.closestDelegation(ctx, t, from)
	if err != nil {
		return nil, "", err
	}
	minimise := !r.cfg.NoQNAMEMinimisation
	extra := 1 // labels below the zone asked about while minimising
	for step := 0; step < maxSteps; step++ {
		qn, qt := qname, qtype
		if minimise {
			if n := dns.CountLabel(zone) + extra; n < dns.CountLabel(qname) {
				idx := dns.Split(qname)
				qn, qt = qname[idx[dns.CountLabel(qname)-n]:], dns.TypeA
				if e, ok := r.rr.get(rrKey(qn, typeNoCut)); ok && r.deps.Now().Before(e.expires) {
					extra++ // known: no zone cut at qn
					continue
				}
			}
		}
		m, from, err := r.ask(ctx, t, servers, qn, qt)
		if err != nil {
			return nil, "", err
		}
		r.trustEverything(m) // a lab hazard; nothing otherwise
		sanitize(m, zone)
		k, child := classify(m, qn, qt, zone)
		if k == kindReferral && qt == dns.TypeDS && equalName(child, qn) && qn == qname {
			// A referral to the zone asked about: the parent has no
			// DS (the proof, if signed, is in the authority section).
			r.cacheReferralDS(m, child, zone, r.deps.Now())
			return m, zone, nil
		}
		if k == kindReferral {
			r.m.referrals.Inc()
			ns, err := r.followReferral(ctx, t, m, child, zone)
			if err != nil {
				return nil, "", err
			}
			zone, servers, extra = child, ns, 1
			continue
		}
		if qn != qname {
			switch k {
			case kindNXDomain:
				// RFC 8020: nothing exists below a nonexistent name.
				m.Question[0] = dns.Question{Name: qname, Qtype: qtype, Qclass: dns.ClassINET}
				return m, zone, nil
			case kindNoData:
				r.rememberNoCut(qn, m)
				extra++
			case kindAnswer:
				if m.Answer[0].Header().Rrtype == dns.TypeCNAME || m.Answer[0].Header().Rrtype == dns.TypeDNAME {
					minimise = false
				} else {
					extra++
				}
			default:
				// Some servers mishandle minimised queries: ask in full.
				minimise = false
			}
			continue
		}
		switch k {
		case kindAnswer, kindNXDomain, kindNoData:
			return m, zone, nil
		}
		// Lame: this server does not serve the zone. Drop it, try others.
		r.m.lame.Inc()
		servers = dropServer(servers, from)
		if len(servers) == 0 {
			return nil, "", fmt.Errorf("resolver: every server of %s is lame for %s", zone, qname)
		}
	}
	return nil, "", fmt.Errorf("resolver: %s: too many referrals", qname)
}

// typeNoCut is a private type code marking a name known not to be a zone
// cut, learnt from a minimised query's NODATA, so later minimised
// iterations skip asking about it again.
const typeNoCut = 65534

func (r *Engine) rememberNoCut(name string, m *dns.Msg) {
	ns := negativeAuthority(m)
	if len(ns) == 0 {
		return
	}
	now := r.deps.Now()
	ttl := min(ns[0].Header().Ttl, uint32(r.cfg.MaxNegativeTTL.D()/time.Second))
	r.rr.put(rrKey(name, typeNoCut), &rrEntry{neg: negNoData, rank: rankAnswer, stored: now.UnixNano(), expires: now.Add(time.Duration(ttl) * time.Second)})
}

// dropServer removes from from servers.
func dropServer(servers []netip.AddrPort, from netip.AddrPort) []netip.AddrPort {
	out := servers[:0:0]
	for _, s := range servers {
		if s != from {
			out = append(out, s)
		}
	}
	return out
}

// ask queries the zone's servers, fastest first, with retries and
// exponential backoff, until one gives a usable reply (NOERROR or
// NXDOMAIN). REFUSED, SERVFAIL and the like move on to the next server.
func (r *Engine) ask(ctx context.Context, t *task, servers []netip.AddrPort, qname string, qtype uint16) (*dns.Msg, netip.AddrPort, error) {
	var none netip.AddrPort
	if len(servers) == 0 {
		return nil, none, errNoServe
	}
	timeout := r.cfg.Timeout.D()
	var last error = errNoServe
	bad := map[netip.AddrPort]bool{}
	for round := 0; round < 3; round++ {
		for _, s := range r.infra.order(servers) {
			if bad[s] {
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, none, fmt.Errorf("resolver: %s: %w", qname, err)
			}
			if t.upstream >= r.cfg.MaxUpstreamQueries {
				return nil, none, errBudget
			}
			t.upstream++
			m, err := r.exchange(ctx, t, s, qname, qtype, timeout)
			if err != nil {
				last = err
				if !errors.Is(err, errTimeout) {
					bad[s] = true
				}
				continue
			}
			switch m.Rcode {
			case dns.RcodeSuccess, dns.RcodeNameError:
				return m, s, nil
			}
			bad[s] = true
			last = fmt.Errorf("resolver: %s answered %s", s, dns.RcodeToString[m.Rcode])
		}
		timeout *= 2
	}
	return nil, none, last
}

// followReferral caches the delegation in m to child and returns the
// addresses of its servers: in-bailiwick glue, cached addresses, or
// addresses looked up (glueless delegation).
func (r *Engine) followReferral(ctx context.Context, t *task, m *dns.Msg, child, parent string) ([]netip.AddrPort, error) {
	now := r.deps.Now()
	var nsset []dns.RR
	var names []string
	for _, rr := range m.Ns {
		if ns, ok := rr.(*dns.NS); ok && equalName(ns.Hdr.Name, child) {
			nsset = append(nsset, ns)
			names = append(names, lowerName(ns.Ns))
		}
	}
	r.putRRs(child, dns.TypeNS, nsset, nil, rankGlue, verdict{}, now)
	// Glue: only addresses of the child's name servers (sanitize already
	// dropped everything outside the delegating zone).
	glue := map[string][]dns.RR{}
	for _, rr := range m.Extra {
		h := rr.Header()
		if h.Rrtype != dns.TypeA && h.Rrtype != dns.TypeAAAA {
			continue
		}
		for _, n := range names {
			if equalName(h.Name, n) {
				k := string(rrKey(n, h.Rrtype))
				glue[k] = append(glue[k], rr)
			}
		}
	}
	for _, rrs := range glue {
		h := rrs[0].Header()
		r.putRRs(lowerName(h.Name), h.Rrtype, rrs, nil, rankGlue, verdict{}, now)
	}
	// Remember DS records (or their absence) for validation.
	r.cacheReferralDS(m, child, parent, now)
	return r.serverAddrs(ctx, t, child, names)
}

// serverAddrs returns the addresses of the named servers of zone from the
// cache, looking up the missing ones (glueless) when none is cached.
func (r *Engine) serverAddrs(ctx context.Context, t *task, zone string, names []string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, n := range names {
		a := r.cachedAddrs(n)
		t.nameServers(n, a)
		out = append(out, a...)
	}
	if len(out) > 0 {
		return out, nil
	}
	if t.depth >= maxDepth {
		return nil, errDepth
	}
	var last error = fmt.Errorf("resolver: no address for any name server of %s", zone)
	for _, n := range names {
		if dns.IsSubDomain(zone, n) {
			continue // needs glue we did not get: would loop
		}
		// IPv4 first; AAAA when the name resolves but has no A (an
		// IPv6-only name server). A failed A lookup is not retried as AAAA.
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
			t.depth++
			res, err := r.resolve(ctx, t, n, qt)
			t.depth--
			if err != nil {
				last = err
				break
			}
			a := r.addrsOf(res.answer)
			t.nameServers(n, a)
			out = append(out, a...)
			if len(out) > 0 {
				return out, nil
			}
		}
	}
	return nil, last
}

// addrsOf returns the addresses of the A and AAAA records in rrs (a
// CNAME chain's target records count). An IPv4-mapped AAAA is used as the
// IPv4 address it maps.
func (r *Engine) addrsOf(rrs []dns.RR) []netip.AddrPort {
	var out []netip.AddrPort
	for _, rr := range rrs {
		var ip netip.Addr
		switch a := rr.(type) {
		case *dns.A:
			ip, _ = netip.AddrFromSlice(a.A.To4())
		case *dns.AAAA:
			ip, _ = netip.AddrFromSlice(a.AAAA)
		}
		if ip = ip.Unmap(); ip.IsValid() {
			out = append(out, netip.AddrPortFrom(ip, uint16(r.cfg.UpstreamPort)))
		}
	}
	return out
}

func (r *Engine) cachedAddrs(name string) []netip.AddrPort {
	var out []netip.AddrPort
	now := r.deps.Now()
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		e, ok := r.rr.get(rrKey(name, qt))
		if !ok || e.neg != 0 || now.After(e.expires) {
			continue
		}
		out = append(out, r.addrsOf(e.rrs)...)
	}
	return out
}

// closestDelegation finds the deepest cached zone above qname whose
// servers' addresses are known, or the root from the hints.
func (r *Engine) closestDelegation(ctx context.Context, t *task, qname string) (string, []netip.AddrPort, error) {
	now := r.deps.Now()
	idx := dns.Split(qname)
	for _, i := range idx {
		zone := qname[i:]
		e, ok := r.rr.get(rrKey(zone, dns.TypeNS))
		if !ok || e.neg != 0 || now.After(e.expires) {
			continue
		}
		var names []string
		for _, rr := range e.rrs {
			names = append(names, lowerName(rr.(*dns.NS).Ns))
		}
		var addrs []netip.AddrPort
		for _, n := range names {
			a := r.cachedAddrs(n)
			t.nameServers(n, a)
			addrs = append(addrs, a...)
		}
		if len(addrs) > 0 {
			return zone, addrs, nil
		}
	}
	return ".", r.roots, nil
}

// fromCache adds what the cache knows about cur/qtype to res. done means
// res is complete; next is the target of a cached CNAME to follow.
func (r *Engine) fromCache(res *result, cur string, qtype uint16) (done bool, next string) {
	now := r.deps.Now()
	if e, ok := r.rr.get(rrKey(cur, 0)); ok && now.Before(e.expires) && e.neg == dns.RcodeNameError {
		res.rcode, res.ns = dns.RcodeNameError, withTTL(e.soa(), e.stored, now)
		res.fromEntry(e)
		return true, ""
	}
	if e, ok := r.rr.get(rrKey(cur, qtype)); ok && now.Before(e.expires) && e.rank >= rankAnswer {
		res.fromEntry(e)
		if e.neg != 0 {
			res.rcode, res.ns = dns.RcodeSuccess, withTTL(e.soa(), e.stored, now)
			return true, ""
		}
		res.rcode = dns.RcodeSuccess
		res.answer = e.appendTo(res.answer, now)
		res.ns = append(res.ns, withTTL(e.soa(), e.stored, now)...) // a wildcard proof
		return true, ""
	}
	if qtype != dns.TypeCNAME {
		if e, ok := r.rr.get(rrKey(cur, dns.TypeCNAME)); ok && now.Before(e.expires) && e.neg == 0 && e.rank >= rankAnswer {
			res.fromEntry(e)
			res.answer = e.appendTo(res.answer, now)
			res.ns = append(res.ns, withTTL(e.soa(), e.stored, now)...)
			if e.sec == secBogus {
				return true, ""
			}
			return false, lowerName(e.rrs[0].(*dns.CNAME).Target)
		}
	}
	return false, ""
}

// cacheAnswer stores the RRsets of a final reply's chain and, for a
// negative answer, the negative entry (RFC 2308).
func (r *Engine) cacheAnswer(m *dns.Msg, chain []dns.RR, qname, last string, qtype uint16, complete bool, v verdict) {
	sec := v.state
	now := r.deps.Now()
	sets := map[string][]dns.RR{}
	var order []string
	for _, rr := range chain {
		h := rr.Header()
		if h.Rrtype == dns.TypeCNAME && isSynth(rr, chain) {
			continue
		}
		k := string(rrKey(h.Name, h.Rrtype))
		if _, ok := sets[k]; !ok {
			order = append(order, k)
		}
		sets[k] = append(sets[k], rr)
	}
	for _, k := range order {
		rrs := sets[k]
		h := rrs[0].Header()
		// A wildcard's proof is served with the RRset (fromCache).
		r.putRRsProof(lowerName(h.Name), h.Rrtype, rrs, sigsFor(m.Answer, h.Name, h.Rrtype), wildcardProof(m, rrs), rankAnswer, v, now)
	}
	if complete {
		return
	}
	var soa *dns.SOA
	for _, rr := range m.Ns {
		if s, ok := rr.(*dns.SOA); ok {
			soa = s
		}
	}
	if soa == nil {
		return // no SOA: RFC 2308 says do not cache
	}
	ttl := min(soa.Hdr.Ttl, soa.Minttl)
	ttl = min(ttl, uint32(r.cfg.MaxNegativeTTL.D()/time.Second))
	if sec == secBogus {
		ttl = min(ttl, uint32(r.cfg.BogusTTL.D()/time.Second))
	}
	ns := negativeAuthority(m)
	for _, rr := range ns {
		rr.Header().Ttl = min(rr.Header().Ttl, ttl)
	}
	e := &rrEntry{x: &rrExtra{soa: ns}, rank: rankAnswer, sec: sec, ede: v.ede, stored: now.UnixNano(), expires: now.Add(time.Duration(ttl) * time.Second)}
	switch m.Rcode {
	case dns.RcodeNameError:
		e.neg = dns.RcodeNameError
		r.rr.put(rrKey(last, 0), e)
	case dns.RcodeSuccess:
		e.neg = negNoData
		r.rr.put(rrKey(last, qtype), e)
	}
}

// chainWithSigs returns chain with, after each of its RRsets, the RRSIGs
// of answer that cover it (store drops them for clients without DO).
func chainWithSigs(chain, answer []dns.RR) []dns.RR {
	out := make([]dns.RR, 0, 2*len(chain))
	for i, rr := range chain {
		out = append(out, rr)
		h := rr.Header()
		if i+1 < len(chain) {
			if n := chain[i+1].Header(); n.Rrtype == h.Rrtype && equalName(n.Name, h.Name) {
				continue // not the RRset's last record
			}
		}
		out = append(out, sigsFor(answer, h.Name, h.Rrtype)...)
	}
	return out
}

func isSynth(rr dns.RR, chain []dns.RR) bool {
	for _, x := range chain {
		if d, ok := x.(*dns.DNAME); ok && dns.IsSubDomain(d.Hdr.Name, rr.Header().Name) && !equalName(d.Hdr.Name, rr.Header().Name) {
			return true
		}
	}
	return false
}

func sigsFor(rrs []dns.RR, name string, t uint16) []dns.RR {
	var out []dns.RR
	for _, rr := range rrs {
		if s, ok := rr.(*dns.RRSIG); ok && s.TypeCovered == t && equalName(s.Hdr.Name, name) {
			out = append(out, s)
		}
	}
	return out
}

// putRRs caches an RRset unless a fresher entry of higher rank exists.
func (r *Engine) putRRs(name string, qtype uint16, rrs, sigs []dns.RR, rank uint8, v verdict, now time.Time) {
	r.putRRsProof(name, qtype, rrs, sigs, nil, rank, v, now)
}

// putRRsProof is putRRs with the wildcard proof served with the RRset.
func (r *Engine) putRRsProof(name string, qtype uint16, rrs, sigs, proof []dns.RR, rank uint8, v verdict, now time.Time) {
	if len(rrs) == 0 {
		return
	}
	key := rrKey(name, qtype)
	if oldRank, exp, ok := r.rr.peek(key); ok && oldRank > rank && now.Before(exp) {
		return
	}
	ttl := min(rrsetTTL(rrs), uint32(r.cfg.MaxTTL.D()/time.Second))
	if v.state == secBogus {
		ttl = min(ttl, uint32(r.cfg.BogusTTL.D()/time.Second))
	}
	x := withSigs(sigs)
	if len(proof) > 0 {
		if x == nil {
			x = &rrExtra{}
		}
		x.soa = proof
	}
	r.rr.put(key, &rrEntry{rrs: rrs, x: x, rank: rank, sec: v.state, ede: v.ede, stored: now.UnixNano(), expires: now.Add(time.Duration(ttl) * time.Second)})
}

// wildcardProof returns copies of the NSEC/NSEC3 records (with their
// RRSIGs) in m's authority section when an RRset of chain was expanded
// from a wildcard (an RRSIG labels field below the owner's label count).
func wildcardProof(m *dns.Msg, chain []dns.RR) []dns.RR {
	expanded := false
	for _, rr := range m.Answer {
		sig, ok := rr.(*dns.RRSIG)
		if !ok {
			continue
		}
		n := dns.CountLabel(sig.Hdr.Name)
		if strings.HasPrefix(sig.Hdr.Name, "*.") {
			n--
		}
		if int(sig.Labels) >= n {
			continue
		}
		for _, c := range chain {
			if c.Header().Rrtype == sig.TypeCovered && equalName(c.Header().Name, sig.Hdr.Name) {
				expanded = true
			}
		}
	}
	if !expanded {
		return nil
	}
	var out []dns.RR
	for _, rr := range m.Ns {
		t := rr.Header().Rrtype
		if s, ok := rr.(*dns.RRSIG); ok {
			t = s.TypeCovered
		}
		if t == dns.TypeNSEC || t == dns.TypeNSEC3 {
			out = append(out, dns.Copy(rr))
		}
	}
	return out
}
