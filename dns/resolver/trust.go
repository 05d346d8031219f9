package resolver

import (
	"context"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// anchorsFor returns the trust anchors owned by zone.
func (r *Engine) anchorsFor(zone string) []dns.RR {
	var out []dns.RR
	for _, a := range r.anchors {
		if equalName(a.Header().Name, zone) {
			out = append(out, a)
		}
	}
	return out
}

// underAnchor reports whether name is at or below a trust anchor.
func (r *Engine) underAnchor(name string) bool {
	for _, a := range r.anchors {
		if dns.IsSubDomain(a.Header().Name, name) {
			return true
		}
	}
	return false
}

// zoneKeys returns the security state of zone and, when secure, its
// validated DNSKEYs (in rrs), from the cache or by building the chain of
// trust from the closest trust anchor.
func (r *Engine) zoneKeys(ctx context.Context, t *task, zone string) *rrEntry {
	zone = lowerName(zone)
	now := r.deps.Now()
	key := rrKey(zone, typeZoneKeys)
	if e, ok := r.rr.get(key); ok && now.Before(e.expires) {
		return e
	}
	if t.keyDepth > 64 {
		return &rrEntry{sec: secBogus, ede: ede(dns.ExtendedErrorCodeDNSBogus, "chain of trust too long")}
	}
	t.keyDepth++
	defer func() { t.keyDepth-- }()
	var e *rrEntry
	switch {
	case !r.validating() || !r.underAnchor(zone):
		e = &rrEntry{sec: secInsecure, expires: now.Add(r.cfg.MaxTTL.D())}
	case len(r.anchorsFor(zone)) > 0:
		e = r.fetchKeys(ctx, t, zone, r.anchorsFor(zone))
	case r.forwarding():
		e = r.fwdKeys(ctx, t, zone)
	default:
		e = r.keysViaDS(ctx, t, zone)
	}
	e.stored = now.UnixNano()
	if e.sec == secBogus {
		e.expires = now.Add(r.cfg.BogusTTL.D())
	}
	if e.expires.IsZero() {
		e.expires = now.Add(time.Minute)
	}
	if ctx.Err() == nil {
		r.rr.put(key, e)
	}
	return e
}

// keysViaDS builds the security state of zone from its DS RRset (seen in
// the referral to it, or asked of its parent) validated with the parent's
// keys: no DS with a valid proof makes zone insecure.
func (r *Engine) keysViaDS(ctx context.Context, t *task, zone string) *rrEntry {
	now := r.deps.Now()
	var rrs []dns.RR
	parent := ""
	if e, ok := r.rr.get(rrKey(zone, typeDSRef)); ok && now.Before(e.expires) {
		rrs, parent = e.rrs, e.zone()
	} else {
		m, pz, err := r.iterate(ctx, t, zone, dns.TypeDS)
		if err != nil {
			return &rrEntry{sec: secBogus, ede: ede(dns.ExtendedErrorCodeDNSKEYMissing, "no DS for %s: %v", zone, err)}
		}
		rrs, parent = append(append([]dns.RR(nil), m.Answer...), m.Ns...), pz
		if m.Rcode == dns.RcodeNameError {
			// The zone does not exist according to its parent.
			return &rrEntry{sec: secBogus, ede: ede(dns.ExtendedErrorCodeDNSBogus, "the parent of %s says it does not exist", zone)}
		}
	}
	var ds rrset
	var others []dns.RR
	for _, s := range groupSets(rrs, nil) {
		if s.rtype() == dns.TypeDS && equalName(s.name(), zone) {
			ds = s
		}
	}
	for _, rr := range rrs {
		switch rr.Header().Rrtype {
		case dns.TypeNSEC, dns.TypeNSEC3, dns.TypeRRSIG, dns.TypeSOA:
			others = append(others, rr)
		}
	}
	// The parent zone: the DS signer, or the delegating server's zone.
	signer := parent
	if len(ds.rrs) > 0 {
		if s := signerOf(ds, parent); s != "" {
			signer = s
		}
	}
	if equalName(signer, zone) || !dns.IsSubDomain(signer, zone) {
		return &rrEntry{sec: secBogus, ede: ede(dns.ExtendedErrorCodeDNSBogus, "DS of %s signed by %s", zone, signer)}
	}
	pk := r.zoneKeys(ctx, t, signer)
	if pk.sec != secSecure {
		return &rrEntry{sec: pk.sec, ede: pk.ede, expires: pk.expires}
	}
	if len(ds.rrs) > 0 {
		v := r.verifySet(t, ds.rrs, ds.sigs, pk.rrs)
		if v.state != secSecure {
			return &rrEntry{sec: secBogus, ede: v.ede}
		}
		return r.fetchKeys(ctx, t, zone, ds.rrs)
	}
	// No DS: a signed proof that the delegation has none (NS bit, no DS).
	den := &denial{r: r, t: t}
	for _, s := range groupSets(others, func(rr dns.RR) bool { t := rr.Header().Rrtype; return t == dns.TypeNSEC || t == dns.TypeNSEC3 }) {
		v := r.validateSet(ctx, t, s, signer)
		if v.state == secBogus {
			return &rrEntry{sec: secBogus, ede: v.ede}
		}
		if v.state == secSecure {
			den.add(s)
		}
	}
	ttl := time.Duration(min(rrsetTTL(others), uint32(r.cfg.MaxNegativeTTL.D()/time.Second))) * time.Second
	if len(others) == 0 {
		ttl = r.cfg.BogusTTL.D()
	}
	switch den.noDS(zone) {
	case proofOK, proofInsecure:
		r.m.insecureDelegations.Inc()
		return &rrEntry{sec: secInsecure, expires: now.Add(ttl)}
	}
	return &rrEntry{sec: secBogus, ede: ede(dns.ExtendedErrorCodeNSECMissing, "no DS for %s and no proof of its absence", zone)}
}

// fetchKeys asks for zone's DNSKEY RRset and validates it against the
// trusted DS or DNSKEY records: a key matching one of them must sign the
// set. Only DS of supported algorithms and digests count; with none, the
// zone is insecure (RFC 4035 5.2).
func (r *Engine) fetchKeys(ctx context.Context, t *task, zone string, trusted []dns.RR) *rrEntry {
	now := r.deps.Now()
	usable, algOK := 0, false
	for _, rr := range trusted {
		switch x := rr.(type) {
		case *dns.DS:
			algOK = algOK || supportedAlg(x.Algorithm)
			if supportedAlg(x.Algorithm) && supportedDigest(x.DigestType) {
				usable++
			}
		case *dns.DNSKEY:
			if supportedAlg(x.Algorithm) {
				usable++
			}
		}
	}
	if usable == 0 {
		// RFC 8914: the insecure answers say why (EDE 1 or 2).
		if algOK {
			return &rrEntry{sec: secInsecure, expires: now.Add(time.Hour), ede: ede(dns.ExtendedErrorCodeUnsupportedDSDigestType, "%s: no DS with a supported digest type", zone)}
		}
		return &rrEntry{sec: secInsecure, expires: now.Add(time.Hour), ede: ede(dns.ExtendedErrorCodeUnsupportedDNSKEYAlgorithm, "%s: no DS with a supported algorithm", zone)}
	}
	m, _, err := r.iterate(ctx, t, zone, dns.TypeDNSKEY)
	if err != nil {
		return &rrEntry{sec: secBogus, ede: ede(dns.ExtendedErrorCodeDNSKEYMissing, "DNSKEY %s: %v", zone, err)}
	}
	var set rrset
	for _, s := range groupSets(m.Answer, nil) {
		if s.rtype() == dns.TypeDNSKEY && equalName(s.name(), zone) {
			set = s
		}
	}
	if len(set.rrs) == 0 {
		return &rrEntry{sec: secBogus, ede: ede(dns.ExtendedErrorCodeDNSKEYMissing, "no DNSKEY for %s", zone)}
	}
	var sep []dns.RR
	for _, rr := range set.rrs {
		k := rr.(*dns.DNSKEY)
		if k.Protocol != 3 || k.Flags&dns.ZONE == 0 {
			continue
		}
		for _, tr := range trusted {
			if trustedKey(k, tr) {
				sep = append(sep, k)
				break
			}
		}
	}
	if len(sep) == 0 {
		return &rrEntry{sec: secBogus, ede: ede(dns.ExtendedErrorCodeDNSKEYMissing, "no DNSKEY of %s matches its DS", zone)}
	}
	if v := r.verifySet(t, set.rrs, set.sigs, sep); v.state != secSecure {
		return &rrEntry{sec: secBogus, ede: v.ede}
	}
	var keys []dns.RR
	for _, rr := range set.rrs {
		k := rr.(*dns.DNSKEY)
		if k.Protocol == 3 && k.Flags&dns.ZONE != 0 && k.Flags&dns.REVOKE == 0 {
			keys = append(keys, k)
		}
	}
	ttl := min(time.Duration(rrsetTTL(set.rrs))*time.Second, r.cfg.MaxTTL.D())
	return &rrEntry{sec: secSecure, rrs: keys, expires: now.Add(ttl)}
}

// trustedKey reports whether k matches the trusted DS or DNSKEY tr.
func trustedKey(k *dns.DNSKEY, tr dns.RR) bool {
	switch x := tr.(type) {
	case *dns.DS:
		if x.KeyTag != k.KeyTag() || x.Algorithm != k.Algorithm || !supportedDigest(x.DigestType) {
			return false
		}
		d := k.ToDS(x.DigestType)
		return d != nil && strings.EqualFold(d.Digest, x.Digest)
	case *dns.DNSKEY:
		return x.Algorithm == k.Algorithm && x.PublicKey == k.PublicKey && equalName(x.Hdr.Name, k.Hdr.Name)
	}
	return false
}
