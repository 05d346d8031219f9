package authority

import (
	"strings"
	"sync/atomic"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/zone"
)

// zoneSet is the immutable set of zones a server answers for. Readers load
// it from an atomic.Pointer; reloads build a new one and swap it in.
type zoneSet struct {
	zones map[string]*zone.Zone
	// fast is the answer table (fast.go); nil when off.
	fast *fastTable
}

// find returns the deepest zone containing key. A DS query for a zone's
// apex goes to the parent zone when this server also serves the parent.
func (zs *zoneSet) find(key string, qtype uint16) *zone.Zone {
	for n := key; n != ""; n = zone.Parent(n) {
		z := zs.zones[n]
		if z == nil {
			continue
		}
		if qtype == dns.TypeDS && n == key && n != "." {
			for p := zone.Parent(n); p != ""; p = zone.Parent(p) {
				if pz := zs.zones[p]; pz != nil {
					return pz
				}
			}
		}
		return z
	}
	return nil
}

// maxChain bounds the CNAME chain followed inside one zone.
const maxChain = 12

// lookup fills m (whose question is set) with the authoritative answer for
// q from z, as NSD and Knot answer: AA answers, referrals, NXDOMAIN/NODATA
// with the SOA, in-zone CNAME chains, wildcards, additional addresses.
type lookup struct {
	z      *zone.Zone
	m      *dns.Msg
	do     bool
	rotate *atomic.Uint32
	// rotated is set when an address set was rotated: the answer varies;
	// rotatedN is the size of that set.
	rotated  bool
	rotatedN int
	// denial dedups the NSEC/NSEC3 records added to the authority section.
	denied map[string]bool
}

func (l *lookup) run(q dns.Question) {
	z, m := l.z, l.m
	name, key := q.Name, zone.Key(q.Name)
	qtype := q.Qtype
	m.Authoritative = true
	var visited [maxChain]string
	for hop := 0; ; hop++ {
		if hop >= maxChain {
			return
		}
		for _, v := range visited[:hop] {
			if v == key {
				return // a CNAME loop
			}
		}
		visited[hop] = key
		if cut := l.findCut(key, qtype); cut != nil {
			l.referral(cut)
			return
		}
		if owner, set := l.findDNAME(key); set != nil {
			// RFC 6672: the DNAME, then a CNAME synthesized from it (same
			// TTL, unsigned), followed like any CNAME.
			labels := dns.CountLabel(owner)
			ownerName := name
			if off, end := dns.PrevLabel(name, labels); !end {
				ownerName = name[off:]
			}
			l.add(&m.Answer, ownerName, set, false)
			d := set.RRs[0].(*dns.DNAME)
			prefix := name[:len(name)-len(ownerName)]
			target := prefix + d.Target
			if d.Target == "." {
				target = prefix
			}
			if _, ok := dns.IsDomainName(target); !ok || len(target) > 254 {
				m.Rcode = dns.RcodeYXDomain
				return
			}
			m.Answer = append(m.Answer, &dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: d.Hdr.Ttl}, Target: target})
			tkey := zone.Key(target)
			if !dns.IsSubDomain(z.Origin, tkey) {
				return
			}
			name, key = target, tkey
			continue
		}
		node := z.Node(key)
		wild := false
		var ce string
		if node == nil {
			ce = l.closestEncloser(key)
			wc := "*." + ce
			if ce == "." {
				wc = "*."
			}
			node = z.Node(wc)
			if node == nil {
				m.Rcode = dns.RcodeNameError
				l.negative()
				if l.do {
					l.denyName(key, ce)
				}
				return
			}
			wild = true
		}
		if qtype == dns.TypeANY {
			// RFC 8482: one RRset, not the whole node (an amplifier), as
			// Knot answers; DNSSEC records and DNSKEY only when alone.
			if set := anySet(node.Sets()); set != nil {
				l.add(&m.Answer, name, set, false)
			}
			if wild && l.do {
				l.denyNextCloser(key, ce)
			}
			return
		}
		if qtype == dns.TypeRRSIG && !wild {
			// A question for RRSIG gets every signature at the name, as
			// NSD and BIND answer it; the name's NSEC lists RRSIG, so
			// NODATA here would contradict the zone's own denial chain.
			before := len(m.Answer)
			for _, set := range node.Sets() {
				m.Answer = appendNamed(m.Answer, name, set.Sigs)
			}
			if len(m.Answer) > before {
				return
			}
		}
		if set := node.Set(qtype); set != nil {
			l.add(&m.Answer, name, set, true)
			if wild && l.do {
				l.denyNextCloser(key, ce)
			}
			l.additional(set)
			return
		}
		if set := node.Set(dns.TypeCNAME); set != nil {
			l.add(&m.Answer, name, set, false)
			if wild && l.do {
				l.denyNextCloser(key, ce)
			}
			target := set.RRs[0].(*dns.CNAME).Target
			tkey := zone.Key(target)
			if !dns.IsSubDomain(z.Origin, tkey) {
				return
			}
			name, key = target, tkey
			continue
		}
		// NODATA.
		l.negative()
		if l.do {
			if wild {
				l.denyNoData(key, node, ce)
			} else {
				l.denyNoData(key, node, "")
			}
		}
		return
	}
}

// findCut returns the delegation node between the apex (exclusive) and key
// (inclusive; exclusive for DS, whose data lives in the parent).
func (l *lookup) findCut(key string, qtype uint16) *zone.Node {
	origin := l.z.Origin
	if key == origin {
		return nil
	}
	var stack [16]string
	names := stack[:0]
	for n := key; n != origin && n != ""; n = zone.Parent(n) {
		names = append(names, n)
	}
	for i := len(names) - 1; i >= 0; i-- {
		n := l.z.Node(names[i])
		if n == nil {
			return nil
		}
		if i == 0 && qtype == dns.TypeDS {
			return nil
		}
		if n.Set(dns.TypeNS) != nil {
			return n
		}
	}
	return nil
}

// findDNAME returns the DNAME set of the closest ancestor of key (below or
// at the apex, key itself excluded) that has one, with that ancestor.
func (l *lookup) findDNAME(key string) (string, *zone.RRset) {
	origin := l.z.Origin
	if !l.z.HasDNAME() || key == origin {
		return "", nil
	}
	var stack [16]string
	names := stack[:0]
	for n := zone.Parent(key); n != ""; n = zone.Parent(n) {
		names = append(names, n)
		if n == origin {
			break
		}
	}
	for i := len(names) - 1; i >= 0; i-- {
		n := l.z.Node(names[i])
		if n == nil {
			if names[i] == origin {
				continue
			}
			return "", nil
		}
		if set := n.Set(dns.TypeDNAME); set != nil {
			return names[i], set
		}
	}
	return "", nil
}

func (l *lookup) closestEncloser(key string) string {
	for n := zone.Parent(key); n != ""; n = zone.Parent(n) {
		if n == l.z.Origin || l.z.Node(n) != nil {
			return n
		}
	}
	return l.z.Origin
}

// add appends set to sec with owner name (keeping the question's case),
// rotating address sets, with the RRSIGs when DO is set.
func (l *lookup) add(sec *[]dns.RR, name string, set *zone.RRset, rotate bool) {
	rrs := set.RRs
	if rotate && len(rrs) > 1 && l.rotate != nil {
		if t := rrs[0].Header().Rrtype; t == dns.TypeA || t == dns.TypeAAAA {
			l.rotated, l.rotatedN = true, len(rrs)
			k := int(l.rotate.Add(1) % uint32(len(rrs)))
			*sec = appendNamed(*sec, name, rrs[k:])
			*sec = appendNamed(*sec, name, rrs[:k])
			goto sigs
		}
	}
	*sec = appendNamed(*sec, name, rrs)
sigs:
	if l.do {
		*sec = appendNamed(*sec, name, set.Sigs)
	}
}

func appendNamed(sec []dns.RR, name string, rrs []dns.RR) []dns.RR {
	for _, rr := range rrs {
		if rr.Header().Name != name {
			rr = dns.Copy(rr)
			rr.Header().Name = name
		}
		sec = append(sec, rr)
	}
	return sec
}

// negative adds the SOA with the negative-caching TTL (RFC 2308).
func (l *lookup) negative() {
	l.m.Ns = append(l.m.Ns, negSOA(l.z))
	if l.do {
		if set := l.z.Node(l.z.Origin).Set(dns.TypeSOA); set != nil {
			for _, s := range set.Sigs {
				s = dns.Copy(s)
				s.Header().Ttl = negTTL(l.z.SOA)
				l.m.Ns = append(l.m.Ns, s)
			}
		}
	}
}

func negTTL(soa *dns.SOA) uint32 { return min(soa.Hdr.Ttl, soa.Minttl) }

func negSOA(z *zone.Zone) dns.RR {
	soa := *z.SOA
	soa.Hdr.Ttl = negTTL(z.SOA)
	return &soa
}

// referral fills the authority section with the cut's NS set and the
// additional section with glue; the answer is not authoritative unless a
// CNAME chain already put authoritative data in it.
func (l *lookup) referral(cut *zone.Node) {
	m := l.m
	if len(m.Answer) == 0 {
		m.Authoritative = false
	}
	ns := cut.Set(dns.TypeNS)
	m.Ns = append(m.Ns, ns.RRs...)
	if l.do {
		if ds := cut.Set(dns.TypeDS); ds != nil {
			m.Ns = append(m.Ns, ds.RRs...)
			m.Ns = append(m.Ns, ds.Sigs...)
		} else if l.z.Signed() {
			l.denyNoData(zone.Key(cut.Name), cut, "")
		}
	}
	l.glue(ns.RRs)
}

// glue adds the addresses of NS targets found in the zone (in-bailiwick,
// under the cut or elsewhere in the zone).
func (l *lookup) glue(rrs []dns.RR) {
	for _, rr := range rrs {
		if ns, ok := rr.(*dns.NS); ok {
			l.addresses(ns.Ns, false)
		}
	}
}

func (l *lookup) addresses(target string, sigs bool) {
	key := zone.Key(target)
	if !dns.IsSubDomain(l.z.Origin, key) {
		return
	}
	n := l.z.Node(key)
	if n == nil {
		return
	}
	for _, t := range [...]uint16{dns.TypeA, dns.TypeAAAA} {
		set := n.Set(t)
		if set == nil {
			continue
		}
		if l.inExtra(set.RRs[0]) {
			continue
		}
		l.m.Extra = append(l.m.Extra, set.RRs...)
		if sigs && l.do {
			l.m.Extra = append(l.m.Extra, set.Sigs...)
		}
	}
}

func (l *lookup) inExtra(rr dns.RR) bool {
	h := rr.Header()
	for _, x := range l.m.Extra {
		if x.Header().Rrtype == h.Rrtype && strings.EqualFold(x.Header().Name, h.Name) {
			return true
		}
	}
	return false
}

// additional adds addresses for the targets of MX, NS and SRV answers.
func (l *lookup) additional(set *zone.RRset) {
	for _, rr := range set.RRs {
		switch r := rr.(type) {
		case *dns.MX:
			l.addresses(r.Mx, true)
		case *dns.NS:
			l.addresses(r.Ns, true)
		case *dns.SRV:
			l.addresses(r.Target, true)
		}
	}
}

// --- DNSSEC denial of existence ---

func (l *lookup) addDenial(set *zone.RRset) {
	if set == nil || len(set.RRs) == 0 {
		return
	}
	k := zone.Key(set.RRs[0].Header().Name)
	if l.denied == nil {
		l.denied = map[string]bool{}
	}
	if l.denied[k] {
		return
	}
	l.denied[k] = true
	l.m.Ns = append(l.m.Ns, set.RRs...)
	l.m.Ns = append(l.m.Ns, set.Sigs...)
}

func (l *lookup) nsecCovering(key string) *zone.RRset {
	n := l.z.CoveringNSEC(key)
	if n == nil {
		return nil
	}
	return n.Set(dns.TypeNSEC)
}

func wildcardOf(ce string) string {
	if ce == "." {
		return "*."
	}
	return "*." + ce
}

// nextCloser returns the name one label longer than ce on the way to key.
func nextCloser(key, ce string) string {
	n := key
	for p := zone.Parent(n); p != "" && p != ce; p = zone.Parent(p) {
		n = p
	}
	return n
}

// denyName proves that key does not exist and that no wildcard could have
// matched it (NXDOMAIN).
func (l *lookup) denyName(key, ce string) {
	if l.z.NSEC3Param() != nil {
		l.closestEncloserProof(key, ce)
		set, _ := l.z.NSEC3For(wildcardOf(ce))
		l.addDenial(set)
		return
	}
	l.addDenial(l.nsecCovering(key))
	l.addDenial(l.nsecCovering(wildcardOf(ce)))
}

func (l *lookup) closestEncloserProof(key, ce string) {
	set, _ := l.z.NSEC3For(ce)
	l.addDenial(set)
	set, _ = l.z.NSEC3For(nextCloser(key, ce))
	l.addDenial(set)
}

// denyNextCloser proves, for a wildcard answer, that the exact name does
// not exist.
func (l *lookup) denyNextCloser(key, ce string) {
	if l.z.NSEC3Param() != nil {
		set, _ := l.z.NSEC3For(nextCloser(key, ce))
		l.addDenial(set)
		return
	}
	l.addDenial(l.nsecCovering(key))
}

// denyNoData proves that node has no data of the type asked. wildCE is the
// closest encloser when node is a wildcard.
func (l *lookup) denyNoData(key string, node *zone.Node, wildCE string) {
	if l.z.NSEC3Param() != nil {
		if wildCE != "" {
			l.closestEncloserProof(key, wildCE)
			set, _ := l.z.NSEC3For(wildcardOf(wildCE))
			l.addDenial(set)
			return
		}
		set, match := l.z.NSEC3For(key)
		if match {
			l.addDenial(set)
			return
		}
		// Opt-out: prove the closest provable encloser instead.
		ce := l.closestEncloser(key)
		l.closestEncloserProof(key, ce)
		return
	}
	if wildCE != "" {
		l.addDenial(l.nsecCovering(key))
		l.addDenial(node.Set(dns.TypeNSEC))
		return
	}
	if set := node.Set(dns.TypeNSEC); set != nil {
		l.addDenial(set)
		return
	}
	l.addDenial(l.nsecCovering(key))
}

// anySet picks the RRset that answers ANY (RFC 8482 4.1): the first that
// is not DNSSEC machinery (DNSKEY, NSEC, NSEC3, NSEC3PARAM, RRSIG, the
// big ones), or the first of all when there is no other.
func anySet(sets []zone.RRset) *zone.RRset {
	for i := range sets {
		if len(sets[i].RRs) == 0 {
			continue
		}
		switch sets[i].RRs[0].Header().Rrtype {
		case dns.TypeDNSKEY, dns.TypeNSEC, dns.TypeNSEC3, dns.TypeNSEC3PARAM, dns.TypeRRSIG:
			continue
		}
		return &sets[i]
	}
	if len(sets) > 0 {
		return &sets[0]
	}
	return nil
}
