package resolver

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/zone"
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

// supportedAlg reports whether signatures of algorithm a can be checked.
func supportedAlg(a uint8) bool {
	switch a {
	case dns.RSASHA1, dns.RSASHA1NSEC3SHA1, dns.RSASHA256, dns.RSASHA512, dns.ECDSAP256SHA256, dns.ECDSAP384SHA384, dns.ED25519:
		return true
	}
	return false
}

func supportedDigest(d uint8) bool {
	return d == dns.SHA1 || d == dns.SHA256 || d == dns.SHA384
}

// anchorsFor returns the trust anchors owned by zone.
func (r *Server) anchorsFor(zone string) []dns.RR {
	var out []dns.RR
	for _, a := range r.anchors {
		if equalName(a.Header().Name, zone) {
			out = append(out, a)
		}
	}
	return out
}

// underAnchor reports whether name is at or below a trust anchor.
func (r *Server) underAnchor(name string) bool {
	for _, a := range r.anchors {
		if dns.IsSubDomain(a.Header().Name, name) {
			return true
		}
	}
	return false
}

// verifySet checks rrset's signatures by signer with keys. It returns
// secure when one signature verifies, bogus (with the reason) otherwise.
func (r *Server) verifySet(t *task, rrset []dns.RR, sigs []*dns.RRSIG, keys []dns.RR) verdict {
	h := rrset[0].Header()
	what := h.Name + " " + dns.TypeToString[h.Rrtype]
	if len(sigs) == 0 {
		return bogus(dns.ExtendedErrorCodeRRSIGsMissing, "no RRSIG for %s", what)
	}
	now := r.deps.Now()
	v := bogus(dns.ExtendedErrorCodeDNSKEYMissing, "no DNSKEY for the RRSIG of %s", what)
	for _, sig := range sigs {
		if !supportedAlg(sig.Algorithm) {
			continue
		}
		if !sig.ValidityPeriod(now) {
			if int64(int32(uint32(now.Unix())-sig.Expiration)) > 0 {
				v = bogus(dns.ExtendedErrorCodeSignatureExpired, "RRSIG of %s expired", what)
			} else {
				v = bogus(dns.ExtendedErrorCodeSignatureNotYetValid, "RRSIG of %s not yet valid", what)
			}
			continue
		}
		tried := 0
		for _, k := range keys {
			key := k.(*dns.DNSKEY)
			if key.Algorithm != sig.Algorithm || key.KeyTag() != sig.KeyTag || !equalName(key.Hdr.Name, sig.SignerName) {
				continue
			}
			if tried >= r.cfg.MaxKeyTagCollisions {
				break
			}
			tried++
			if t.sigChecks >= r.cfg.MaxSigChecks || t.sigFails >= r.cfg.MaxSigFailures {
				r.m.keytrap.Inc()
				return bogus(dns.ExtendedErrorCodeDNSBogus, "signature check limit reached at %s (%d checks, %d failed)", what, t.sigChecks, t.sigFails)
			}
			t.sigChecks++
			if err := sig.Verify(key, rrset); err == nil {
				return verdict{state: secSecure}
			}
			t.sigFails++
			v = bogus(dns.ExtendedErrorCodeDNSBogus, "bad signature on %s", what)
		}
	}
	return v
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
func (r *Server) validateSet(ctx context.Context, t *task, s rrset, zone string) verdict {
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
func (r *Server) validateReply(ctx context.Context, t *task, m *dns.Msg, zone, qname string, qtype uint16) verdict {
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

// rememberWildcard caches the validated RRset s, expanded from the
// wildcard at ce in zone, under the wildcard's own owner name (*.ce) with
// its RRSIGs, for positive answers synthesized by aggressiveWildcard.
func (r *Server) rememberWildcard(zone, ce string, s rrset, now time.Time) {
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

// proof is the outcome of a denial-of-existence check.
type proof int

const (
	proofFail proof = iota
	proofOK
	// proofInsecure: the proof relies on NSEC3 opt-out or on more NSEC3
	// iterations than allowed (RFC 9276): the answer is insecure.
	proofInsecure
)

func (p proof) verdict(name string, qtype uint16) verdict {
	switch p {
	case proofOK:
		return verdict{state: secSecure}
	case proofInsecure:
		return verdict{state: secInsecure}
	}
	return bogus(dns.ExtendedErrorCodeNSECMissing, "no valid denial proof for %s %s", name, dns.TypeToString[qtype])
}

// denial holds the validated NSEC and NSEC3 records of one reply.
type denial struct {
	r     *Server
	t     *task
	nsec  []*dns.NSEC
	nsec3 []*dns.NSEC3
	// zone of the proof records: the signer.
	zone string
	// tooMany: an NSEC3 record had more iterations than allowed.
	tooMany bool
	hashes  map[string]string
	// sigs are the RRSIGs of the added sets.
	sigs []dns.RR
	// track makes the proof checks record the NSEC/NSEC3 records they
	// rely on in used (for synthesized answers).
	track bool
	used  []dns.RR
}

// use records rr as part of the proof when tracking.
func (d *denial) use(rr dns.RR) {
	if d.track {
		d.used = append(d.used, rr)
	}
}

func (d *denial) add(s rrset) {
	if len(s.sigs) > 0 {
		d.zone = lowerName(s.sigs[0].SignerName)
	}
	for _, sg := range s.sigs {
		d.sigs = append(d.sigs, sg)
	}
	for _, rr := range s.rrs {
		switch x := rr.(type) {
		case *dns.NSEC:
			d.nsec = append(d.nsec, x)
		case *dns.NSEC3:
			if x.Hash != dns.SHA1 {
				continue
			}
			if int(x.Iterations) > d.r.cfg.MaxNSEC3Iterations {
				d.tooMany = true
				continue
			}
			d.nsec3 = append(d.nsec3, x)
		}
	}
}

func canonCmp(a, b string) int { return zone.Compare(lowerName(a), lowerName(b)) }

// nsecCovers reports whether n proves name absent: owner < name < next in
// canonical order (the last NSEC of the zone wraps to the apex).
func nsecCovers(n *dns.NSEC, name string) bool {
	o, x := n.Hdr.Name, n.NextDomain
	if canonCmp(o, x) < 0 {
		return canonCmp(o, name) < 0 && canonCmp(name, x) < 0
	}
	return canonCmp(o, name) < 0 || canonCmp(name, x) < 0
}

func hasType(bitmap []uint16, t uint16) bool {
	for _, b := range bitmap {
		if b == t {
			return true
		}
	}
	return false
}

// nodataBitmap reports whether a bitmap at the queried name proves qtype
// absent: no qtype, no CNAME, and not the parent side of a delegation
// (unless the question is DS) (RFC 4035 5.4, RFC 6840 4.1).
func nodataBitmap(bm []uint16, qtype uint16) bool {
	if hasType(bm, qtype) || hasType(bm, dns.TypeCNAME) {
		return false
	}
	if qtype != dns.TypeDS && hasType(bm, dns.TypeNS) && !hasType(bm, dns.TypeSOA) {
		return false
	}
	return true
}

// commonAncestor returns the longest common suffix of a and b in labels.
func commonAncestor(a, b string) string {
	n := dns.CompareDomainName(a, b)
	if n == 0 {
		return "."
	}
	idx := dns.Split(a)
	return lowerName(a[idx[len(idx)-n]:])
}

// nsecEncloser returns the closest encloser of name proven by the NSEC
// covering it.
func nsecEncloser(n *dns.NSEC, name string) string {
	a, b := commonAncestor(name, n.Hdr.Name), commonAncestor(name, n.NextDomain)
	if dns.CountLabel(a) > dns.CountLabel(b) {
		return a
	}
	return b
}

func (d *denial) nsecMatch(name string) *dns.NSEC {
	for _, n := range d.nsec {
		if equalName(n.Hdr.Name, name) {
			d.use(n)
			return n
		}
	}
	return nil
}

func (d *denial) nsecCover(name string) *dns.NSEC {
	for _, n := range d.nsec {
		if nsecCovers(n, name) {
			d.use(n)
			return n
		}
	}
	return nil
}

func wildcardAt(ce string) string {
	if ce == "." {
		return "*."
	}
	return "*." + ce
}

func (d *denial) nxdomain(name string) proof {
	if len(d.nsec) > 0 {
		if d.nsecMatch(name) != nil {
			return proofFail
		}
		n := d.nsecCover(name)
		if n == nil || cutAbove(n, name) {
			return proofFail
		}
		ce := nsecEncloser(n, name)
		if d.nsecCover(wildcardAt(ce)) == nil {
			return proofFail
		}
		return proofOK
	}
	ce, optout, p := d.closestEncloser(name)
	if p != proofOK {
		return p
	}
	if ce == lowerName(name) {
		return proofFail
	}
	if _, ok := d.n3cover(wildcardAt(ce)); !ok {
		return d.n3fail()
	}
	if optout {
		return proofInsecure
	}
	return proofOK
}

func (d *denial) nodata(name string, qtype uint16) proof {
	if len(d.nsec) > 0 {
		if n := d.nsecMatch(name); n != nil {
			if nodataBitmap(n.TypeBitMap, qtype) {
				return proofOK
			}
			return proofFail
		}
		n := d.nsecCover(name)
		if n == nil {
			return proofFail
		}
		// An empty non-terminal: the next name is below name.
		if dns.IsSubDomain(name, n.NextDomain) && !equalName(name, n.NextDomain) {
			return proofOK
		}
		// Wildcard NODATA: the wildcard exists without qtype.
		if w := d.nsecMatch(wildcardAt(nsecEncloser(n, name))); w != nil && nodataBitmap(w.TypeBitMap, qtype) {
			return proofOK
		}
		return proofFail
	}
	if n := d.n3match(name); n != nil {
		if nodataBitmap(n.TypeBitMap, qtype) {
			return proofOK
		}
		return proofFail
	}
	ce, optout, p := d.closestEncloser(name)
	if p != proofOK {
		return p
	}
	if qtype == dns.TypeDS && optout {
		// RFC 5155 8.6: an opt-out span may hide an unsigned delegation.
		return proofInsecure
	}
	if w := d.n3match(wildcardAt(ce)); w != nil && nodataBitmap(w.TypeBitMap, qtype) {
		return proofOK
	}
	// An empty non-terminal has a matching NSEC3 (handled above).
	return d.n3fail()
}

// wildcard checks the proof that name itself does not exist, for an
// answer expanded from the wildcard at ce (RFC 4035 5.3.4, RFC 5155 8.8).
func (d *denial) wildcard(name, ce string) proof {
	if len(d.nsec) > 0 {
		if d.nsecCover(name) != nil {
			return proofOK
		}
		return proofFail
	}
	nc := nextCloser(name, ce)
	n, ok := d.n3cover(nc)
	if !ok {
		return d.n3fail()
	}
	if n.Flags&1 != 0 {
		return proofInsecure
	}
	return proofOK
}

// n3fail is the outcome of a missing NSEC3 proof: insecure if records
// were ignored for their iteration count, bogus otherwise.
func (d *denial) n3fail() proof {
	if d.tooMany {
		return proofInsecure
	}
	return proofFail
}

// nextCloser returns the ancestor of name one label longer than ce.
func nextCloser(name, ce string) string {
	name = lowerName(name)
	n := dns.CountLabel(ce) + 1
	idx := dns.Split(name)
	if n > len(idx) {
		return name
	}
	return name[idx[len(idx)-n]:]
}

func (d *denial) hash(name string, n *dns.NSEC3) string {
	k := lowerName(name) + "/" + n.Salt + "/" + itoa(int(n.Iterations))
	if h, ok := d.hashes[k]; ok {
		return h
	}
	if d.hashes == nil {
		d.hashes = map[string]string{}
	}
	h := strings.ToLower(dns.HashName(name, n.Hash, n.Iterations, n.Salt))
	d.hashes[k] = h
	return h
}

// n3zone is the zone an NSEC3 record belongs to (its owner minus the hash).
func n3zone(n *dns.NSEC3) string {
	idx := dns.Split(n.Hdr.Name)
	if len(idx) < 2 {
		return "."
	}
	return lowerName(n.Hdr.Name[idx[1]:])
}

func n3label(n *dns.NSEC3) string {
	idx := dns.Split(n.Hdr.Name)
	end := len(n.Hdr.Name) - 1
	if len(idx) > 1 {
		end = idx[1] - 1
	}
	return strings.ToLower(n.Hdr.Name[:end])
}

func (d *denial) n3match(name string) *dns.NSEC3 {
	for _, n := range d.nsec3 {
		if !dns.IsSubDomain(n3zone(n), name) {
			continue
		}
		if n3label(n) == d.hash(name, n) {
			d.use(n)
			return n
		}
	}
	return nil
}

func (d *denial) n3cover(name string) (*dns.NSEC3, bool) {
	for _, n := range d.nsec3 {
		if !dns.IsSubDomain(n3zone(n), name) {
			continue
		}
		h, o, x := d.hash(name, n), n3label(n), strings.ToLower(n.NextDomain)
		if o < x && o < h && h < x || o >= x && (o < h || h < x) {
			d.use(n)
			return n, true
		}
	}
	return nil, false
}

// closestEncloser finds the closest provable encloser of name: an
// ancestor with a matching NSEC3 whose next closer name is covered (RFC
// 5155 8.3). optout reports the covering record's opt-out flag.
func (d *denial) closestEncloser(name string) (string, bool, proof) {
	name = lowerName(name)
	idx := dns.Split(name)
	for i := 1; i < len(idx); i++ {
		ce := name[idx[i]:]
		m := d.n3match(ce)
		if m == nil {
			continue
		}
		// A delegation's NSEC3 (NS without SOA) cannot be an encloser of
		// names below it (RFC 5155 8.3), nor can a DNAME owner.
		if (hasType(m.TypeBitMap, dns.TypeNS) && !hasType(m.TypeBitMap, dns.TypeSOA)) || hasType(m.TypeBitMap, dns.TypeDNAME) {
			return "", false, proofFail
		}
		nc, ok := d.n3cover(nextCloser(name, ce))
		if !ok {
			return "", false, d.n3fail()
		}
		return ce, nc.Flags&1 != 0, proofOK
	}
	if m := d.n3match("."); m != nil && len(idx) > 0 {
		if nc, ok := d.n3cover(nextCloser(name, ".")); ok {
			return ".", nc.Flags&1 != 0, proofOK
		}
	}
	return "", false, d.n3fail()
}

// zoneKeys returns the security state of zone and, when secure, its
// validated DNSKEYs (in rrs), from the cache or by building the chain of
// trust from the closest trust anchor.
func (r *Server) zoneKeys(ctx context.Context, t *task, zone string) *rrEntry {
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
func (r *Server) keysViaDS(ctx context.Context, t *task, zone string) *rrEntry {
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

// noDS checks the proof that the delegation zone has no DS.
func (d *denial) noDS(zone string) proof {
	if n := d.nsecMatch(zone); n != nil {
		if hasType(n.TypeBitMap, dns.TypeNS) && !hasType(n.TypeBitMap, dns.TypeDS) && !hasType(n.TypeBitMap, dns.TypeSOA) {
			return proofOK
		}
		return proofFail
	}
	if n := d.n3match(zone); n != nil {
		if hasType(n.TypeBitMap, dns.TypeNS) && !hasType(n.TypeBitMap, dns.TypeDS) && !hasType(n.TypeBitMap, dns.TypeSOA) {
			return proofOK
		}
		return proofFail
	}
	if len(d.nsec3) > 0 || d.tooMany {
		_, optout, p := d.closestEncloser(zone)
		if p == proofOK && optout {
			return proofInsecure
		}
		if p == proofInsecure {
			return p
		}
	}
	return proofFail
}

// fetchKeys asks for zone's DNSKEY RRset and validates it against the
// trusted DS or DNSKEY records: a key matching one of them must sign the
// set. Only DS of supported algorithms and digests count; with none, the
// zone is insecure (RFC 4035 5.2).
func (r *Server) fetchKeys(ctx context.Context, t *task, zone string, trusted []dns.RR) *rrEntry {
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
func (r *Server) rememberNSEC(zone string, d *denial, soa []dns.RR) {
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

func (r *Server) rememberDenial(key []byte, add, sigs, soa []dns.RR) {
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
func (r *Server) aggressive(res *result, qname string, qtype uint16) bool {
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
func (r *Server) cachedDenial(e *rrEntry, qname string) (*denial, bool) {
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
func (r *Server) synthesize(res *result, e *rrEntry, qname string, qtype uint16, now time.Time) bool {
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
func (r *Server) aggressiveWildcard(res *result, e *rrEntry, zone, qname string, qtype uint16, now time.Time) bool {
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
