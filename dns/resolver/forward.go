package resolver

import (
	"context"
	"time"

	"github.com/miekg/dns"
)

// DNSSEC validation in forwarding mode (as Unbound does behind a
// forwarder): every query to the forwarder carries DO and CD, so it
// returns the data, signatures and denial proofs unvalidated. A forwarder
// hides the zone cuts, so the chain of trust is built by asking it for
// DS records: the zone of a signed RRset is its RRSIG signer; the zone of
// an unsigned RRset is found by walking down from the closest trust
// anchor, one label at a time, asking DS for each name. A DS makes the
// name a secure zone cut (its DNSKEYs are then fetched and validated as
// in iteration), a signed proof of no DS at a delegation (NS bit, no DS)
// makes it an insecure cut, and a signed proof that the name is no
// delegation at all keeps the walk in the same zone.

// typeFwdCut caches, per name, what a DS query to the forwarder said
// about it (a cutKind in rrEntry.neg); the zone it was asked in is kept
// in the entry's zone.
const typeFwdCut = 65529

// cutKind is what a DS query for a name says about the name.
type cutKind uint8

const (
	cutNone     cutKind = iota + 1 // no zone cut: the walk stays in the zone
	cutSecure                      // a DS: a signed child zone
	cutInsecure                    // a proven unsigned delegation
	cutMissing                     // the name does not exist: nothing below it does
	cutBogus                       // no acceptable answer
)

// forwarding reports whether queries go to forwarders.
func (r *Engine) forwarding() bool { return len(r.forwarders) > 0 }

// parentName returns the name one label up ("." for a TLD and the root).
func parentName(name string) string {
	idx := dns.Split(name)
	if len(idx) < 2 {
		return "."
	}
	return name[idx[1]:]
}

// fwdKeys is zoneKeys for a zone below the trust anchor in forwarding
// mode: the zone enclosing its parent name must be secure, and a DS query
// for zone itself must show a signed zone cut.
func (r *Engine) fwdKeys(ctx context.Context, t *task, zone string) *rrEntry {
	pz, pe := r.fwdEnclosing(ctx, t, parentName(zone))
	if pe.sec != secSecure {
		return &rrEntry{sec: pe.sec, ede: pe.ede, expires: pe.expires}
	}
	switch k, e := r.fwdCut(ctx, t, zone, pz); k {
	case cutSecure:
		return r.keysViaDS(ctx, t, zone)
	case cutInsecure:
		return &rrEntry{sec: secInsecure, expires: e.expires}
	case cutBogus:
		return &rrEntry{sec: secBogus, ede: e.ede}
	default:
		return &rrEntry{sec: secBogus, ede: ede(dns.ExtendedErrorCodeDNSBogus, "%s signs as a zone but is no zone cut of %s", zone, pz)}
	}
}

// fwdEnclosing returns the zone enclosing name (name itself if it is a
// zone cut) and that zone's keys entry: walking down from the closest
// trust anchor it stops at the first insecure or bogus zone.
func (r *Engine) fwdEnclosing(ctx context.Context, t *task, name string) (string, *rrEntry) {
	name = lowerName(name)
	z := ""
	for a := name; ; a = parentName(a) {
		if len(r.anchorsFor(a)) > 0 {
			z = a
			break
		}
		if a == "." {
			break
		}
	}
	if z == "" {
		return ".", &rrEntry{sec: secInsecure, expires: r.deps.Now().Add(r.cfg.MaxTTL.D())}
	}
	e := r.zoneKeys(ctx, t, z)
	idx := dns.Split(name)
	for i := dns.CountLabel(name) - dns.CountLabel(z) - 1; i >= 0 && e.sec == secSecure; i-- {
		n := name[idx[i]:]
		k, ce := r.fwdCut(ctx, t, n, z)
		switch k {
		case cutNone:
			continue
		case cutSecure:
			z, e = n, r.zoneKeys(ctx, t, n)
		case cutInsecure:
			return n, &rrEntry{sec: secInsecure, expires: ce.expires}
		case cutMissing:
			return z, e
		default:
			return z, &rrEntry{sec: secBogus, ede: ce.ede}
		}
	}
	return z, e
}

// fwdCut asks the forwarder for the DS of name, a name below the secure
// zone z, and classifies the answer (cached per name).
func (r *Engine) fwdCut(ctx context.Context, t *task, name, z string) (cutKind, *rrEntry) {
	now := r.deps.Now()
	key := rrKey(name, typeFwdCut)
	if e, ok := r.rr.get(key); ok && now.Before(e.expires) && equalName(e.zone(), z) {
		return cutKind(e.neg), e
	}
	k, e := r.classifyCut(ctx, t, name, z)
	e.neg = int32(k)
	if e.x == nil {
		e.x = &rrExtra{}
	}
	e.x.zone = z
	e.stored = now.UnixNano()
	if k == cutBogus || e.expires.IsZero() {
		e.expires = now.Add(r.cfg.BogusTTL.D())
	}
	if ctx.Err() == nil {
		r.rr.put(key, e)
	}
	return k, e
}

func (r *Engine) classifyCut(ctx context.Context, t *task, name, z string) (cutKind, *rrEntry) {
	now := r.deps.Now()
	m, _, err := r.iterate(ctx, t, name, dns.TypeDS)
	if err != nil {
		return cutBogus, &rrEntry{ede: ede(dns.ExtendedErrorCodeDNSKEYMissing, "DS %s from the forwarder: %v", name, err)}
	}
	for _, s := range groupSets(m.Answer, nil) {
		if !equalName(s.name(), name) {
			continue
		}
		switch s.rtype() {
		case dns.TypeDS:
			// A cut with a DS: keysViaDS validates the DS with z's keys.
			var rrs []dns.RR
			rrs = append(append(rrs, s.rrs...), setSigs(s)...)
			ttl := min(time.Duration(rrsetTTL(s.rrs))*time.Second, r.cfg.MaxTTL.D())
			r.rr.put(rrKey(name, typeDSRef), &rrEntry{rrs: rrs, x: &rrExtra{zone: z}, rank: rankAuth, stored: now.UnixNano(), expires: now.Add(ttl)})
			return cutSecure, &rrEntry{expires: now.Add(ttl)}
		case dns.TypeCNAME:
			// An alias is no delegation (its own signature is checked
			// where it is used).
			return cutNone, &rrEntry{expires: now.Add(min(time.Duration(rrsetTTL(s.rrs))*time.Second, r.cfg.MaxNegativeTTL.D()))}
		}
	}
	// No DS: the signed proof, from z, says why.
	den := &denial{r: r, t: t}
	var others []dns.RR
	for _, s := range groupSets(m.Ns, func(rr dns.RR) bool { t := rr.Header().Rrtype; return t == dns.TypeNSEC || t == dns.TypeNSEC3 }) {
		if sg := signerOf(s, z); sg != "" && !equalName(sg, z) {
			continue // signed below z: not the parent side of name
		}
		v := r.validateSet(ctx, t, s, z)
		if v.state == secBogus {
			return cutBogus, &rrEntry{ede: v.ede}
		}
		if v.state == secSecure {
			den.add(s)
			others = append(others, s.rrs...)
		}
	}
	ttl := time.Duration(min(rrsetTTL(others), uint32(r.cfg.MaxNegativeTTL.D()/time.Second))) * time.Second
	if len(others) == 0 {
		ttl = r.cfg.BogusTTL.D()
	}
	ok := &rrEntry{expires: now.Add(ttl)}
	delegation := func(bm []uint16) (cutKind, *rrEntry) {
		switch {
		case !hasType(bm, dns.TypeNS) || hasType(bm, dns.TypeSOA):
			return cutNone, ok
		case hasType(bm, dns.TypeDS):
			return cutBogus, &rrEntry{ede: ede(dns.ExtendedErrorCodeDNSBogus, "the forwarder gave no DS for %s, whose NSEC lists one", name)}
		}
		r.m.insecureDelegations.Inc()
		return cutInsecure, ok
	}
	if n := den.nsecMatch(name); n != nil {
		return delegation(n.TypeBitMap)
	}
	if n := den.n3match(name); n != nil {
		return delegation(n.TypeBitMap)
	}
	if m.Rcode == dns.RcodeNameError {
		if den.nxdomain(name) == proofOK {
			return cutMissing, ok
		}
	} else {
		switch den.nodata(name, dns.TypeDS) {
		case proofOK:
			return cutNone, ok // an empty non-terminal or a wildcard's name
		case proofInsecure:
			r.m.insecureDelegations.Inc()
			return cutInsecure, ok // NSEC3 opt-out: maybe an unsigned delegation
		}
	}
	return cutBogus, &rrEntry{ede: ede(dns.ExtendedErrorCodeNSECMissing, "no DS for %s and no proof of what it is", name)}
}

// setSigs returns s's signatures as records.
func setSigs(s rrset) []dns.RR {
	out := make([]dns.RR, len(s.sigs))
	for i, sg := range s.sigs {
		out[i] = sg
	}
	return out
}
