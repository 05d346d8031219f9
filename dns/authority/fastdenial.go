package authority

import (
	"bytes"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"sync"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/zone"
)

// zoneDenial answers with DO the names of a signed zone that do not
// exist: NXDOMAIN and wildcard answers, whose proofs name the NSEC (or
// NSEC3) records around the name asked. Those records, with the closest
// encloser and the type, decide the whole answer, so the answer to the
// first name of each (closest encloser, covering record, type) is packed
// and kept as a template for the next ones; finding the covering record
// is a binary search over canonical keys (NSEC) or over the hashes
// (NSEC3, the hash computed here without allocating).
type zoneDenial struct {
	s  *Server
	zs *zoneSet // the zone alone, for the full answers templates come from
	// nsec are the canonical keys (canonicalKey) of the NSEC owners, in
	// canonical order.
	nsec []string
	// hashes, salt and iterations are the zone's NSEC3 chain (SHA-1).
	hashes []string
	salt   []byte
	iter   uint16
	enc    *base32.Encoding

	mu  sync.RWMutex
	tpl map[string]*fastAnswer
	max int // entries kept at most
}

// newDenial returns the denial templates of z, or nil when z is not
// signed or its chain is not one this can search.
func newDenial(s *Server, z *zone.Zone) *zoneDenial {
	if !z.Signed() || z.HasDNAME() {
		return nil
	}
	d := &zoneDenial{s: s, zs: &zoneSet{zones: map[string]*zone.Zone{z.Origin: z}}, tpl: map[string]*fastAnswer{}}
	d.max = 4096 + 2*len(z.Names())
	if p := z.NSEC3Param(); p != nil {
		if p.Hash != dns.SHA1 {
			return nil
		}
		if p.Salt != "-" && p.Salt != "" {
			salt, err := hex.DecodeString(p.Salt)
			if err != nil {
				return nil
			}
			d.salt = salt
		}
		d.hashes, d.iter = z.NSEC3Hashes(), p.Iterations
		d.enc = base32.HexEncoding.WithPadding(base32.NoPadding)
		return d
	}
	var wbuf [256]byte
	for _, key := range z.Names() {
		n := z.Node(key)
		if n == nil || n.Set(dns.TypeNSEC) == nil {
			continue
		}
		l, err := dns.PackDomainName(key, wbuf[:], 0, nil, false)
		if err != nil {
			return nil
		}
		ck, ok := canonicalKey(nil, wbuf[:l])
		if !ok {
			return nil
		}
		d.nsec = append(d.nsec, string(ck))
	}
	if len(d.nsec) == 0 {
		return nil
	}
	return d
}

// canonicalKey appends to dst a key of the lower-case wire name w whose
// byte order is the canonical order of names (RFC 4034 6.1): the labels
// from the right, each followed by a zero byte. It fails for labels that
// hold a zero byte.
func canonicalKey(dst, w []byte) ([]byte, bool) {
	var offs [128]int
	n := 0
	for off := 0; off < len(w) && w[off] != 0; off += 1 + int(w[off]) {
		if n == len(offs) || off+1+int(w[off]) > len(w) {
			return nil, false
		}
		offs[n] = off
		n++
	}
	for i := n - 1; i >= 0; i-- {
		l := w[offs[i]+1 : offs[i]+1+int(w[offs[i]])]
		if bytes.IndexByte(l, 0) >= 0 {
			return nil, false
		}
		dst = append(dst, l...)
		dst = append(dst, 0)
	}
	return dst, true
}

// cover returns the index of the NSEC or NSEC3 record that covers name
// (lower-case wire; ce is the offset of its closest encloser), or -1.
func (d *zoneDenial) cover(name []byte, ce int) int {
	if d.hashes == nil {
		var kb [256]byte
		ck, ok := canonicalKey(kb[:0], name)
		if !ok {
			return -1
		}
		lo, hi := 0, len(d.nsec)
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if d.nsec[m] > string(ck) {
				hi = m
			} else {
				lo = m + 1
			}
		}
		if lo == 0 {
			return len(d.nsec) - 1 // the last NSEC covers names before the first
		}
		return lo - 1
	}
	if len(d.hashes) == 0 {
		return -1
	}
	// The next closer name: one label more than the closest encloser.
	nc := 0
	for off := 0; off < ce; off += 1 + int(name[off]) {
		nc = off
	}
	var buf [255 + 255]byte
	h := sha1.Sum(append(append(buf[:0], name[nc:]...), d.salt...))
	for range d.iter {
		h = sha1.Sum(append(append(buf[:0], h[:]...), d.salt...))
	}
	var enc [32]byte
	d.enc.Encode(enc[:], h[:])
	for i, c := range enc {
		if 'A' <= c && c <= 'Z' {
			enc[i] = c + 'a' - 'A'
		}
	}
	lo, hi := 0, len(d.hashes)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if d.hashes[m] >= string(enc[:]) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	if lo < len(d.hashes) && d.hashes[lo] == string(enc[:]) {
		return lo // a hash that matches a name that does not exist: a collision
	}
	if lo == 0 {
		return len(d.hashes) - 1
	}
	return lo - 1
}

// answer returns the template for name (lower-case wire, not in the
// zone; ce the offset of its closest encloser, wild whether that has a
// wildcard child) asked with DO, making it from the full answer on first
// use; nil when there is none and no room for one.
func (d *zoneDenial) answer(name []byte, ce int, wild bool, qtype uint16) *fastAnswer {
	idx := d.cover(name, ce)
	if idx < 0 {
		return nil
	}
	t := qtype
	if !wild {
		t = 0 // NXDOMAIN: the same whatever the type
	}
	var kb [264]byte
	k := append(kb[:0], name[ce:]...)
	k = append(k, byte(t>>8), byte(t))
	k = binary.BigEndian.AppendUint32(k, uint32(idx))
	d.mu.RLock()
	a, ok := d.tpl[string(k)]
	n := len(d.tpl)
	d.mu.RUnlock()
	if ok {
		return a
	}
	if n >= d.max {
		return nil
	}
	qname, _, err := dns.UnpackDomainName(name, 0)
	if err != nil {
		return nil
	}
	bt := qtype
	if !wild {
		bt = standInType
	}
	a = d.s.fastAnswerFor(d.zs, qname, bt, true, len(name)-ce)
	if a != nil && !a.template {
		a = nil
	}
	d.mu.Lock()
	if len(d.tpl) < d.max {
		d.tpl[string(k)] = a
	}
	d.mu.Unlock()
	return a
}
