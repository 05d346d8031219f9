package resolver

import (
	"slices"
	"time"

	"github.com/miekg/dns"
)

// rememberWildcard caches the validated RRset s, expanded from the
// wildcard at ce in zone, under the wildcard's own owner name (*.ce) with
// its RRSIGs, for positive answers synthesized by aggressiveWildcard.
func (r *Engine) rememberWildcard(zone, ce string, s rrset, now time.Time) {
	owner := wildcardAt(ce)
	var rrs, sigs []dns.RR
	for _, rr := range s.rrs {
		c := dns.Copy(rr)
		c.Header().Name = owner
		rrs = append(rrs, c)
	}
	for _, sig := range s.sigs {
		if !equalName(sig.SignerName, zone) || int(sig.Labels) != dns.CountLabel(ce) {
			continue
		}
		c := dns.Copy(sig).(*dns.RRSIG)
		c.Hdr.Name = owner
		sigs = append(sigs, c)
	}
	if len(sigs) == 0 {
		return
	}
	r.putRRs(owner, s.rtype(), rrs, sigs, rankAnswer, verdict{state: secSecure}, now)
}

// typeNSECCache and typeNSEC3Cache cache a signed zone's validated NSEC
// (NSEC3) records with their RRSIGs (and the zone's SOA with signatures)
// for aggressive negative caching (RFC 8198).
const (
	typeNSECCache  = 65531
	typeNSEC3Cache = 65530
)

// maxCachedNSEC bounds the NSEC (NSEC3) records remembered per zone.
const maxCachedNSEC = 256

// rememberNSEC adds the validated NSEC and NSEC3 records of a denial
// proof from zone to the zone's caches.
func (r *Engine) rememberNSEC(zone string, d *denial, soa []dns.RR) {
	var nsec, nsec3 []dns.RR
	for _, n := range d.nsec {
		nsec = append(nsec, n)
	}
	for _, n := range d.nsec3 {
		nsec3 = append(nsec3, n)
	}
	r.rememberDenial(rrKey(zone, typeNSECCache), nsec, d.sigs, soa)
	r.rememberDenial(rrKey(zone, typeNSEC3Cache), nsec3, d.sigs, soa)
}

func (r *Engine) rememberDenial(key []byte, add, sigs, soa []dns.RR) {
	if len(add) == 0 {
		return
	}
	now := r.deps.Now()
	var rrs, rsigs []dns.RR
	expires := now.Add(r.cfg.MaxNegativeTTL.D())
	if e, ok := r.rr.get(key); ok && now.Before(e.expires) {
		rrs = withTTL(e.rrs, e.stored, now)
		if e.x != nil {
			rsigs = withTTL(e.x.sigs, e.stored, now)
		}
		expires = e.expires
		if len(soa) == 0 {
			// Records from a wildcard proof (no SOA): keep the zone's SOA.
			soa = withTTL(e.soa(), e.stored, now)
		}
	}
	for _, n := range add {
		h := n.Header()
		dup := false
		for _, x := range rrs {
			if equalName(x.Header().Name, h.Name) {
				dup = true
			}
		}
		if dup || len(rrs) >= maxCachedNSEC {
			continue
		}
		rrs = append(rrs, n)
		rsigs = append(rsigs, sigsFor(sigs, h.Name, h.Rrtype)...)
	}
	ttl := time.Duration(rrsetTTL(rrs)) * time.Second
	if len(soa) > 0 {
		ttl = min(ttl, time.Duration(rrsetTTL(soa))*time.Second)
	}
	if t := now.Add(ttl); t.Before(expires) {
		expires = t
	}
	r.rr.put(key, &rrEntry{rrs: rrs, x: &rrExtra{soa: soa, sigs: rsigs}, sec: secSecure, stored: now.UnixNano(), expires: expires})
}

// aggressive answers qname/qtype with a synthesized NXDOMAIN or NODATA
// from the cached, validated NSEC or NSEC3 records of the closest
// enclosing signed zone, without asking (RFC 8198). Proofs relying on
// NSEC3 opt-out are not used.
func (r *Engine) aggressive(res *result, qname string, qtype uint16) bool {
	if !r.validating() {
		return false
	}
	now := r.deps.Now()
	idx := dns.Split(qname)
	first := 0
	if qtype == dns.TypeDS {
		first = 1 // the DS RRset lives in the parent zone
	}
	for i := first; i <= len(idx); i++ {
		z := "."
		if i < len(idx) {
			z = qname[idx[i]:]
		}
		var found bool
		for _, ct := range []uint16{typeNSECCache, typeNSEC3Cache} {
			e, ok := r.rr.get(rrKey(z, ct))
			if !ok || now.After(e.expires) {
				continue
			}
			found = true
			if r.synthesize(res, e, qname, qtype, now) || r.aggressiveWildcard(res, e, z, qname, qtype, now) {
				return true
			}
		}
		if found {
			return false
		}
	}
	return false
}

// cachedDenial loads the cached NSEC/NSEC3 records of one zone (e) into a
// denial checker that tracks which records a proof uses. It reports false
// when an NSEC is the parent side of a cut above qname: qname is then in a
// child zone and nothing here proves anything about it.
func (r *Engine) cachedDenial(e *rrEntry, qname string) (*denial, bool) {
	d := &denial{r: r, t: &task{}, track: true}
	for _, rr := range e.rrs {
		switch x := rr.(type) {
		case *dns.NSEC:
			if cutAbove(x, qname) {
				return nil, false
			}
			d.nsec = append(d.nsec, x)
		case *dns.NSEC3:
			d.nsec3 = append(d.nsec3, x)
		}
	}
	return d, true
}

// usedProofs returns the cached denial records a proof used, each followed
// by its RRSIGs.
func usedProofs(e *rrEntry, d *denial) []dns.RR {
	var proofs []dns.RR
	for _, rr := range e.rrs {
		if slices.Contains(d.used, rr) {
			proofs = append(proofs, rr)
			if e.x != nil {
				proofs = append(proofs, sigsFor(e.x.sigs, rr.Header().Name, rr.Header().Rrtype)...)
			}
		}
	}
	return proofs
}

// synthesize builds the negative answer for qname/qtype from the cached
// denial records of one zone, with just the records the proof uses.
func (r *Engine) synthesize(res *result, e *rrEntry, qname string, qtype uint16, now time.Time) bool {
	if len(e.soa()) == 0 {
		return false // only records of wildcard proofs so far: no SOA to answer with
	}
	d, ok := r.cachedDenial(e, qname)
	if !ok {
		return false // qname is in a child zone
	}
	rcode := dns.RcodeNameError
	if d.nxdomain(qname) != proofOK {
		d.used = d.used[:0]
		if d.nodata(qname, qtype) != proofOK {
			return false
		}
		rcode = dns.RcodeSuccess
	}
	r.m.aggressive.Inc()
	res.rcode = rcode
	res.ns = withTTL(e.soa(), e.stored, now)
	res.ns = append(res.ns, withTTL(usedProofs(e, d), e.stored, now)...)
	res.mergeSec(secSecure)
	return true
}

// aggressiveWildcard answers qname/qtype with a positive answer expanded
// from a cached, validated wildcard RRset of zone when the cached denial
// records of zone (e) prove that qname does not exist and that the
// wildcard's closest encloser is the closest encloser of qname (RFC 8198
// section 5.3, RFC 4035 5.3.4, RFC 5155 8.8). The answer carries the
// wildcard's RRSIGs (their labels field shows the expansion) and the
// proof records with theirs. NSEC3 opt-out spans are never used.
func (r *Engine) aggressiveWildcard(res *result, e *rrEntry, zone, qname string, qtype uint16, now time.Time) bool {
	if qtype == dns.TypeDS || qtype == dns.TypeRRSIG || qtype == dns.TypeNSEC || qtype == dns.TypeNSEC3 {
		return false
	}
	d, ok := r.cachedDenial(e, qname)
	if !ok {
		return false // qname is in a child zone
	}
	idx := dns.Split(qname)
	// Candidate closest enclosers, longest first, inside zone.
	for i := 1; i < len(idx); i++ {
		ce := qname[idx[i]:]
		if !dns.IsSubDomain(zone, ce) {
			break
		}
		w, ok := r.rr.get(rrKey(wildcardAt(ce), qtype))
		if !ok || w.neg != 0 || w.sec != secSecure || !now.Before(w.expires) || w.x == nil || len(w.x.sigs) == 0 {
			continue
		}
		signed := true
		for _, sg := range w.x.sigs {
			sig, ok := sg.(*dns.RRSIG)
			signed = signed && ok && equalName(sig.SignerName, zone) && int(sig.Labels) == dns.CountLabel(ce)
		}
		if !signed {
			continue
		}
		d.used = d.used[:0]
		if len(d.nsec) > 0 {
			n := d.nsecCover(qname)
			if n == nil || d.nsecMatch(qname) != nil || nsecEncloser(n, qname) != lowerName(ce) {
				return false
			}
		} else {
			n, ok := d.n3cover(nextCloser(qname, ce))
			if !ok || n.Flags&1 != 0 {
				return false
			}
		}
		// The wildcard's records renamed to qname, then its RRSIGs.
		for _, rr := range w.appendTo(nil, now) {
			rr.Header().Name = qname
			res.answer = append(res.answer, rr)
		}
		res.ns = append(res.ns, withTTL(usedProofs(e, d), e.stored, now)...)
		res.rcode = dns.RcodeSuccess
		res.mergeSec(secSecure)
		r.m.aggressiveWildcard.Inc()
		return true
	}
	return false
}

func soaWithSigs(ns []dns.RR) []dns.RR {
	var out []dns.RR
	for _, rr := range ns {
		switch x := rr.(type) {
		case *dns.SOA:
			out = append(out, x)
		case *dns.RRSIG:
			if x.TypeCovered == dns.TypeSOA {
				out = append(out, x)
			}
		}
	}
	return out
}

// cutAbove reports whether n is the parent side of a delegation (or a
// DNAME) above name: such an NSEC says nothing about names below it (RFC
// 6840 4.1).
func cutAbove(n *dns.NSEC, name string) bool {
	if !dns.IsSubDomain(n.Hdr.Name, name) || equalName(n.Hdr.Name, name) {
		return false
	}
	return (hasType(n.TypeBitMap, dns.TypeNS) && !hasType(n.TypeBitMap, dns.TypeSOA)) || hasType(n.TypeBitMap, dns.TypeDNAME)
}
