package resolver

import (
	"context"
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// DNSSEC validation (RFC 4033-4035, 5155, 6840): the chain of trust is
// built from the configured trust anchor down through each zone's DS and
// DNSKEY RRsets, signatures are checked with the zone's validated keys,
// and denial of existence (NSEC, NSEC3) is checked for negative answers
// and wildcard expansions. The cost of one client query is bounded (the
// KeyTrap attacks, CVE-2023-50387/50868): signature verifications,
// failed verifications, keys tried per signature and NSEC3 iterations.

// Private cache types (RFC 6895 private use range) for validation state.
const (
	// typeZoneKeys caches a zone's security state and validated DNSKEYs.
	typeZoneKeys = 65533
	// typeDSRef caches the DS RRset or the proof of its absence seen in
	// the referral to a zone, with the delegating zone in rrEntry.zone.
	typeDSRef = 65532
)

func ede(code uint16, format string, args ...any) *dns.EDNS0_EDE {
	return &dns.EDNS0_EDE{InfoCode: code, ExtraText: shorten(fmt.Sprintf(format, args...))}
}

func bogus(code uint16, format string, args ...any) verdict {
	return verdict{state: secBogus, ede: ede(code, format, args...)}
}

// rrset is the records of one owner and type with their signatures.
type rrset struct {
	rrs  []dns.RR
	sigs []*dns.RRSIG
}

func (s rrset) name() string  { return s.rrs[0].Header().Name }
func (s rrset) rtype() uint16 { return s.rrs[0].Header().Rrtype }

// groupSets splits records into RRsets (in order of first appearance) and
// attaches their RRSIGs. types, when not nil, selects the types kept.
func groupSets(rrs []dns.RR, keep func(dns.RR) bool) []rrset {
	var out []rrset
	idx := map[string]int{}
	for _, rr := range rrs {
		h := rr.Header()
		if h.Rrtype == dns.TypeRRSIG || (keep != nil && !keep(rr)) {
			continue
		}
		k := string(rrKey(h.Name, h.Rrtype))
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, rrset{})
		}
		out[i].rrs = append(out[i].rrs, rr)
	}
	for i := range out {
		for _, s := range sigsFor(rrs, out[i].name(), out[i].rtype()) {
			out[i].sigs = append(out[i].sigs, s.(*dns.RRSIG))
		}
	}
	return out
}

// signerOf returns the signer name of the usable signatures of s: one
// that is an ancestor of (or equal to) the owner and inside zone.
func signerOf(s rrset, zone string) string {
	for _, sig := range s.sigs {
		sn := lowerName(sig.SignerName)
		if dns.IsSubDomain(sn, s.name()) && dns.IsSubDomain(zone, sn) {
			return sn
		}
	}
	return ""
}

// validateSet validates one RRset served by a server of zone.
func (r *Engine) validateSet(ctx context.Context, t *task, s rrset, zone string) verdict {
	signer := signerOf(s, zone)
	if signer == "" {
		var st *rrEntry
		if r.forwarding() {
			// The forwarder hides the zone cuts: find the owner's zone
			// (the parent's for a DS) by asking DS down from the anchor.
			owner := s.name()
			if s.rtype() == dns.TypeDS {
				owner = parentName(lowerName(owner))
			}
			_, st = r.fwdEnclosing(ctx, t, owner)
		} else {
			st = r.zoneKeys(ctx, t, zone)
		}
		if st.sec != secSecure {
			return verdict{state: st.sec, ede: st.ede}
		}
		return bogus(dns.ExtendedErrorCodeRRSIGsMissing, "no RRSIG for %s %s in signed zone %s", s.name(), dns.TypeToString[s.rtype()], zone)
	}
	st := r.zoneKeys(ctx, t, signer)
	if st.sec != secSecure {
		return verdict{state: st.sec, ede: st.ede}
	}
	var sigs []*dns.RRSIG
	for _, sig := range s.sigs {
		if equalName(sig.SignerName, signer) {
			sigs = append(sigs, sig)
		}
	}
	return r.verifySet(t, s.rrs, sigs, st.rrs)
}

// wildcardOf returns the closest encloser a wildcard-expanded RRset was
// synthesized from (from the RRSIG labels field), or "" if s was not
// expanded from a wildcard.
func wildcardOf(s rrset) string {
	for _, sig := range s.sigs {
		n := dns.CountLabel(s.name())
		if strings.HasPrefix(s.name(), "*.") {
			n--
		}
		if int(sig.Labels) < n {
			idx := dns.Split(s.name())
			return lowerName(s.name()[idx[n-int(sig.Labels)]:])
		}
	}
	return ""
}

// validateReply checks a final reply from a server of zone: the RRsets of
// the answer chain, and for a negative answer (or a wildcard expansion)
// the NSEC or NSEC3 proof in the authority section.
func (r *Engine) validateReply(ctx context.Context, t *task, m *dns.Msg, zone, qname string, qtype uint16) verdict {
	chain, last, complete := extractChain(m.Answer, qname, qtype)
	inChain := map[string]bool{}
	for _, rr := range chain {
		if rr.Header().Rrtype == dns.TypeCNAME && isSynth(rr, chain) {
			continue // synthesized from a DNAME (checked by extractChain)
		}
		inChain[string(rrKey(rr.Header().Name, rr.Header().Rrtype))] = true
	}
	res := verdict{state: secUnset}
	merge := func(v verdict) bool {
		x := result{sec: res.state}
		x.mergeSec(v.state)
		res.state = x.sec
		if v.state == secBogus {
			res.ede = v.ede
			return false
		}
		if v.state == secInsecure && res.ede == nil {
			res.ede = v.ede // why insecure (unsupported algorithm or digest), if known
		}
		return true
	}
	type wild struct {
		name, ce string
		set      rrset
	}
	var wilds []wild
	for _, s := range groupSets(m.Answer, func(rr dns.RR) bool { return inChain[string(rrKey(rr.Header().Name, rr.Header().Rrtype))] }) {
		v := r.validateSet(ctx, t, s, zone)
		if !merge(v) {
			return res
		}
		if v.state == secSecure {
			if ce := wildcardOf(s); ce != "" {
				wilds = append(wilds, wild{lowerName(s.name()), ce, s})
			}
		}
	}
	negative := m.Rcode == dns.RcodeNameError || (!complete && (last == qname || r.answersLast(m, last)))
	if !negative && len(wilds) == 0 {
		return res
	}
	// The denial records: validate them and keep the secure ones.
	soaZone := zone
	var soaSeen bool
	den := &denial{r: r, t: t}
	for _, s := range groupSets(m.Ns, func(rr dns.RR) bool {
		switch rr.Header().Rrtype {
		case dns.TypeSOA, dns.TypeNSEC, dns.TypeNSEC3:
			return true
		}
		return false
	}) {
		if s.rtype() == dns.TypeSOA {
			soaZone, soaSeen = lowerName(s.name()), true
		}
		v := r.validateSet(ctx, t, s, zone)
		if v.state == secBogus {
			merge(v)
			return res
		}
		if v.state != secSecure {
			if s.rtype() != dns.TypeSOA {
				continue
			}
			merge(v)
			continue
		}
		den.add(s)
	}
	if negative {
		if !soaSeen || (len(den.nsec)+len(den.nsec3) == 0 && !den.tooMany) {
			// No signed proof: bogus only if the zone is signed.
			st := r.zoneKeys(ctx, t, soaZone)
			if st.sec != secSecure {
				merge(verdict{state: st.sec, ede: st.ede})
				return res
			}
			if res.state == secInsecure {
				return res
			}
			merge(bogus(dns.ExtendedErrorCodeNSECMissing, "no NSEC/NSEC3 proof for %s %s", last, dns.TypeToString[qtype]))
			return res
		}
		var p proof
		if m.Rcode == dns.RcodeNameError {
			p = den.nxdomain(last)
		} else {
			p = den.nodata(last, qtype)
		}
		if !merge(p.verdict(last, qtype)) {
			return res
		}
		if p == proofOK && soaSeen {
			r.rememberNSEC(den.zone, den, soaWithSigs(m.Ns))
		}
	}
	for _, w := range wilds {
		if !merge(den.wildcard(w.name, w.ce).verdict(w.name, qtype)) {
			return res
		}
	}
	if res.state == secSecure && len(wilds) > 0 && den.zone != "" {
		// RFC 8198 5.3: keep the wildcard RRsets and the proof records so
		// later names the proof covers are answered without a query.
		now := r.deps.Now()
		for _, w := range wilds {
			r.rememberWildcard(den.zone, w.ce, w.set, now)
		}
		r.rememberNSEC(den.zone, den, nil)
	}
	return res
}
