package resolver

import (
	"strings"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/zone"
)

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
	r     *Engine
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
