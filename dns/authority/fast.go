package authority

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/dnsserver"
	"github.com/applayer/applayer/dns/zone"
)

// The answer table: every UDP answer a zone can give to a plain query,
// packed (and compressed) once when the zone loads or is signed, by the
// same code that answers a query (handleWith), so the table cannot say
// anything the slow path would not. A query is then answered by copying:
// the header's flags, counts and the answer's sections come from the
// table, the ID, RD, CD and the question (with its spelling, RFC 0x20
// case included) from the query, and the OPT record is added when the
// query had one.
//
// Keys are the question's lower-cased wire name, its type and the DO bit.
// Every node of a zone has an entry for each type it holds and, when the
// answer to every other type is the same NODATA, one for type 0 that
// stands for them. Names that are not in the zone get templates, answers
// built for a stand-in name and moved to the query's name at answer
// time: the referral of a delegation (any name under the cut, DO or
// not), NXDOMAIN (without DO: the SOA alone) and wildcard answers
// (without DO; the wildcard node's own entries). What the table does not
// cover (DNSSEC denial for names that do not exist, answers too big for
// the client's buffer, queries with EDNS options, transfers, TCP) goes
// the old way: the answer cache, then a full answer.

// fastAnswer is one precomputed answer.
type fastAnswer struct {
	// flags are bytes 2-3 of the header (RD and CD clear); counts are the
	// answer, authority and additional counts (without the OPT record).
	flags  [2]byte
	counts [6]byte
	// qlen is the wire length of the question's name the body was packed
	// after; label is the length of its first label (with its length
	// byte).
	qlen, label int
	// body is the message after the question.
	body []byte
	// relocs are the offsets in body of the compression pointers that
	// point past the template's first label: they move with the length
	// of the query's name. template is false when the answer cannot be
	// moved (a pointer into the first label).
	relocs   []uint16
	template bool
	// rot holds every rotation of an address set that rotates (the
	// answer for rotation k); nil when nothing rotates.
	rot []*fastAnswer
}

func (a *fastAnswer) size() int64 {
	n := int64(len(a.body)+2*len(a.relocs)) + 96
	for _, r := range a.rot {
		n += r.size()
	}
	return n
}

// fastName is what the table knows of a node, for names under it that
// are not nodes themselves.
type fastName struct {
	// below is the answer to any name under this node that does not
	// exist, without and with DO (nil: not in the table): a referral
	// when the node is at or under a delegation, NXDOMAIN otherwise.
	below [2]*fastAnswer
	// wild is the wildcard child's wire name ("\x01*" + the node's),
	// set when the node has one: names under it take the wildcard's
	// entries (without DO in a signed zone: the proof that the name does
	// not exist depends on the name).
	wild   string
	signed bool
	// den answers, with DO, the names under this node that do not exist
	// (nil: unsigned, or not searchable).
	den *zoneDenial
}

// fastTable is the answer table of a zone set, indexed.
type fastTable struct {
	answers *fastIndex[*fastAnswer]
	names   *fastIndex[*fastName]
}

// zoneTable is the part of the table built from one zone.
type zoneTable struct {
	answers map[string]*fastAnswer
	names   map[string]*fastName
	bytes   int64
}

// fastKey appends the table key of a question: the lower-cased wire
// name, the type and the DO bit.
func fastKey[N string | []byte](b []byte, name N, qtype uint16, do bool) []byte {
	b = append(b, name...)
	b = append(b, byte(qtype>>8), byte(qtype))
	if do {
		return append(b, 1)
	}
	return append(b, 0)
}

// standInType is the type the templates and the type-0 entries are
// answered for: a private type (RFC 6895) no zone here holds.
const standInType = 65534

// chainTypes are the types a CNAME's owner has entries for (besides
// CNAME): the answer follows the chain, so it differs by type.
var chainTypes = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeMX, dns.TypeTXT, dns.TypeSRV, dns.TypeHTTPS, dns.TypeNS, dns.TypeCAA, dns.TypePTR}

// nodataType reports the types whose NODATA answer the type-0 entry stands
// for: all but those answered otherwise (RRSIG gets the signatures at the
// name; the rest are refused, FORMERR or NOTIMP; DS may be answered by
// the parent).
func nodataType(t uint16) bool {
	switch t {
	case 0, dns.TypeRRSIG, dns.TypeDS, dns.TypeOPT, dns.TypeTKEY, dns.TypeTSIG,
		dns.TypeIXFR, dns.TypeAXFR, dns.TypeMAILA, dns.TypeMAILB, dns.TypeANY:
		return false
	}
	return true
}

// buildTable builds the answer table of zs from the tables of its zones
// (built now, or kept in prev when the zone did not change). It returns
// nil when the table is off, or when one zone of the set lies inside
// another (a table per set of nested zones is not worth its rules).
func (s *Server) buildTable(zs *zoneSet, prev map[*zone.Zone]*zoneTable) (*fastTable, map[*zone.Zone]*zoneTable) {
	if s.cfg.AnswerTableBytes < 0 || len(zs.zones) == 0 {
		return nil, nil
	}
	for k := range zs.zones {
		for p := zone.Parent(k); p != ""; p = zone.Parent(p) {
			if zs.zones[p] != nil {
				return nil, nil
			}
		}
	}
	kept := make(map[*zone.Zone]*zoneTable, len(zs.zones))
	var budget = s.cfg.AnswerTableBytes
	for _, z := range zs.zones {
		zt := prev[z]
		if zt == nil {
			zt = s.zoneTable(z, budget)
		}
		if zt != nil {
			kept[z] = zt
			budget -= zt.bytes
		}
	}
	if len(kept) == 1 {
		for _, zt := range kept {
			return &fastTable{answers: newFastIndex(zt.answers), names: newFastIndex(zt.names)}, kept
		}
	}
	answers, names := map[string]*fastAnswer{}, map[string]*fastName{}
	for _, zt := range kept {
		for k, v := range zt.answers {
			answers[k] = v
		}
		for k, v := range zt.names {
			names[k] = v
		}
	}
	return &fastTable{answers: newFastIndex(answers), names: newFastIndex(names)}, kept
}

// zoneTable builds the table of z, or returns nil when it would hold more
// than budget bytes.
func (s *Server) zoneTable(z *zone.Zone, budget int64) *zoneTable {
	// A first guess from the zone's size (an unsigned zone's table takes
	// about 200 bytes a record) avoids building most of a table that will
	// not fit, and the memory that would take.
	if int64(z.Len())*256 > budget {
		return nil
	}
	zt := &zoneTable{answers: map[string]*fastAnswer{}, names: map[string]*fastName{}}
	signed := z.Signed()
	dos := []bool{false}
	if signed {
		dos = append(dos, true)
	}
	var wbuf [256]byte
	wire := func(key string) (string, bool) {
		n, err := dns.PackDomainName(key, wbuf[:], 0, nil, false)
		if err != nil {
			return "", false
		}
		return string(wbuf[:n]), true
	}
	put := func(name string, qtype uint16, do bool, a *fastAnswer) {
		k := string(fastKey(nil, name, qtype, do))
		zt.answers[k] = a
		zt.bytes += int64(len(k)) + a.size() + fastIndexEntryBytes
		if !signed {
			// Without signatures DO changes nothing but the OPT record.
			zt.answers[string(fastKey(nil, name, qtype, true))] = a
			zt.bytes += int64(len(k)) + 48 + fastIndexEntryBytes
		}
	}
	zs := &zoneSet{zones: map[string]*zone.Zone{z.Origin: z}}
	den := newDenial(s, z)
	nx := s.fastAnswerFor(zs, standIn(z, z.Origin), standInType, false, -1)
	cuts := map[string][2]*fastAnswer{}
	for _, key := range z.Names() {
		if zt.bytes > budget {
			return nil
		}
		node := z.Node(key)
		w, ok := wire(key)
		if node == nil || !ok {
			continue
		}
		fn := &fastName{signed: signed, den: den}
		zt.names[w] = fn
		zt.bytes += int64(len(w)) + fastIndexEntryBytes
		cut := s.cutOf(z, key)
		switch {
		case cut != "":
			below, ok := cuts[cut]
			if !ok {
				for i, do := range dos {
					below[i] = s.fastAnswerFor(zs, standIn(z, cut), standInType, do, -1)
				}
				if !signed {
					below[1] = below[0]
				}
				cuts[cut] = below
			}
			fn.below = below
		case z.HasDNAME():
		case z.Node("*."+key) != nil:
			fn.wild, _ = wire("*." + key)
		default:
			fn.below[0] = nx
			if !signed {
				fn.below[1] = nx
			}
		}
		types := make([]uint16, 0, len(node.Sets())+len(chainTypes))
		plain := true
		for _, set := range node.Sets() {
			types = append(types, set.Type)
			switch set.Type {
			case dns.TypeCNAME:
				// Every type follows the chain: the types asked most.
				types = append(types, chainTypes...)
				plain = false
			case dns.TypeNS, dns.TypeDNAME, dns.TypeSOA:
				plain = false
			}
		}
		if cut != "" || z.HasDNAME() {
			plain = false
		}
		for _, do := range dos {
			for _, t := range types {
				if t == dns.TypeRRSIG || t == dns.TypeNSEC3 {
					continue
				}
				if a := s.fastAnswerFor(zs, key, t, do, -1); a != nil {
					put(w, t, do, a)
				}
			}
			if plain {
				if a := s.fastAnswerFor(zs, key, standInType, do, -1); a != nil {
					put(w, 0, do, a)
				}
			}
		}
	}
	if zt.bytes > budget {
		return nil
	}
	return zt
}

// cutOf returns the delegation at or above key (below the apex), or "".
func (s *Server) cutOf(z *zone.Zone, key string) string {
	cut := ""
	for n := key; n != z.Origin && n != ""; n = zone.Parent(n) {
		if node := z.Node(n); node != nil && node.Set(dns.TypeNS) != nil {
			cut = n
		}
	}
	return cut
}

// standIn returns a name under key that is not in z, for templates.
func standIn(z *zone.Zone, key string) string {
	for _, l := range []string{"0-fast", "0-fast-0", "0-fast-1", "0-fast-2"} {
		n := l + "." + key
		if key == "." {
			n = l + "."
		}
		if z.Node(n) == nil {
			return n
		}
	}
	return ""
}

// fastAnswerFor answers (name, qtype, DO) from zs with handleWith and
// packs it for the table: nil when it cannot be kept. shared is the wire
// length of the end of name that the names it stands for share (-1: all
// but the first label).
func (s *Server) fastAnswerFor(zs *zoneSet, name string, qtype uint16, do bool, shared int) *fastAnswer {
	if name == "" {
		return nil
	}
	a, n := s.packFast(zs, name, qtype, do, nil, shared)
	if a == nil || n == 0 {
		return a
	}
	if n > 16 {
		return nil
	}
	a.rot = make([]*fastAnswer, n)
	for k := range n {
		var rot atomic.Uint32
		rot.Store(uint32(k + n - 1)) // the next Add gives k (mod n)
		a.rot[k], _ = s.packFast(zs, name, qtype, do, &rot, shared)
		if a.rot[k] == nil {
			return nil
		}
	}
	return a
}

// packFast answers one question as a query without EDNS options would
// be answered (OPT left off), and returns it with the size of the set it
// rotated.
func (s *Server) packFast(zs *zoneSet, name string, qtype uint16, do bool, rot *atomic.Uint32, shared int) (*fastAnswer, int) {
	req := new(dns.Msg)
	req.SetQuestion(name, qtype)
	req.RecursionDesired = false
	req.Id = 0
	if do {
		req.SetEdns0(4096, true)
	}
	if rot == nil {
		rot = new(atomic.Uint32)
	}
	m, _, n := s.handleWith(zs, req, netip.AddrPort{}, false, rot)
	if m.Rcode > 0xf {
		return nil, 0
	}
	if len(m.Extra) > 0 {
		if _, ok := m.Extra[len(m.Extra)-1].(*dns.OPT); ok {
			m.Extra = m.Extra[:len(m.Extra)-1]
		}
	}
	m.Compress = true
	wire, err := m.Pack()
	if err != nil {
		return nil, 0
	}
	qend, err := dnsserver.SkipName(wire, 12)
	if err != nil || qend+4 > len(wire) {
		return nil, 0
	}
	a := &fastAnswer{qlen: qend - 12, body: wire[qend+4:]}
	copy(a.flags[:], wire[2:4])
	copy(a.counts[:], wire[6:12])
	a.label = int(wire[12]) + 1
	if shared < 0 {
		shared = a.qlen - a.label
	}
	a.relocs, a.template = pointers(wire, qend+4, 12+a.qlen-shared)
	return a, n
}

// pointers returns the offsets (from start) of the compression pointers
// in the records from start on that point at or past limit, and whether
// none points between the question's name (12) and limit.
func pointers(msg []byte, start, limit int) ([]uint16, bool) {
	var out []uint16
	ok := true
	name := func(off int) int {
		for off < len(msg) {
			l := int(msg[off])
			switch {
			case l == 0:
				return off + 1
			case l&0xC0 == 0xC0:
				if off+1 >= len(msg) {
					return len(msg)
				}
				t := int(binary.BigEndian.Uint16(msg[off:]) & 0x3FFF)
				if t >= limit {
					out = append(out, uint16(off-start))
				} else if t != 12 {
					ok = false
				}
				return off + 2
			}
			off += 1 + l
		}
		return len(msg)
	}
	n := int(binary.BigEndian.Uint16(msg[6:])) + int(binary.BigEndian.Uint16(msg[8:])) + int(binary.BigEndian.Uint16(msg[10:]))
	off := start
	for range n {
		off = name(off)
		if off+10 > len(msg) {
			return nil, false
		}
		t := binary.BigEndian.Uint16(msg[off:])
		rdlen := int(binary.BigEndian.Uint16(msg[off+8:]))
		rd := off + 10
		// The types whose names miekg/dns compresses in the rdata.
		switch t {
		case dns.TypeNS, dns.TypeCNAME, dns.TypePTR, dns.TypeMB, dns.TypeMD, dns.TypeMF, dns.TypeMG, dns.TypeMR:
			name(rd)
		case dns.TypeMX:
			name(rd + 2)
		case dns.TypeSOA, dns.TypeMINFO:
			name(name(rd))
		}
		off = rd + rdlen
	}
	return out, ok
}

// answerFast answers a plain UDP query from the table, appending to
// out[:0], or returns nil when the table has no answer for it.
func (s *Server) answerFast(t *fastTable, req *dnsserver.Request, out []byte) []byte {
	q, ok := req.Query()
	if !ok {
		return nil
	}
	switch q.Qtype {
	case dns.TypeOPT, dns.TypeTKEY, dns.TypeTSIG, dns.TypeMAILA, dns.TypeMAILB:
		return nil // refused early by handle
	}
	w := req.Wire
	if q.EDNS && binary.BigEndian.Uint16(w[q.NameEnd+4+9:]) != 0 {
		return nil // EDNS options (cookies, NSID) are answered in full
	}
	name := q.Key[:len(q.Key)-3]
	var kb [260]byte
	a := t.answers.get(fastKey(kb[:0], name, q.Qtype, q.DO))
	if a == nil {
		if t.names.get(name) != nil {
			if !nodataType(q.Qtype) {
				return nil
			}
			a = t.answers.get(fastKey(kb[:0], name, 0, q.DO))
		} else {
			a = t.below(name, q.Qtype, q.DO, kb[:0])
		}
		if a == nil {
			return nil
		}
	}
	if a.rot != nil {
		a = a.rot[s.rotate.Add(1)%uint32(len(a.rot))]
	}
	qn := q.NameEnd - 12
	size := 12 + qn + 4 + len(a.body)
	if q.EDNS {
		size += 11
	}
	if size > req.MaxSize() {
		return nil
	}
	delta := qn - a.qlen
	if delta != 0 && !a.template {
		return nil
	}
	out = append(out[:0], w[0], w[1], a.flags[0]|w[2]&0x01, a.flags[1]|w[3]&0x10, 0, 1)
	out = append(out, a.counts[:]...)
	out = append(out, w[12:q.NameEnd+4]...)
	b := len(out)
	out = append(out, a.body...)
	for _, p := range a.relocs {
		at := b + int(p)
		v := int(binary.BigEndian.Uint16(out[at:])&0x3FFF) + delta
		if v >= 0x4000 {
			return nil
		}
		binary.BigEndian.PutUint16(out[at:], 0xC000|uint16(v))
	}
	if q.EDNS {
		ar := binary.BigEndian.Uint16(out[10:]) + 1
		binary.BigEndian.PutUint16(out[10:], ar)
		var flags byte
		if q.DO {
			flags = 0x80
		}
		out = append(out, 0, 0, 41, byte(s.cfg.MaxUDPSize>>8), byte(s.cfg.MaxUDPSize), 0, 0, flags, 0, 0, 0)
	}
	s.m.rcode(int(out[3] & 0xf))
	return out
}

// below finds the answer for name (lower-case wire), not a node of the
// table's zones: the template of its closest existing ancestor.
func (t *fastTable) below(name []byte, qtype uint16, do bool, kb []byte) *fastAnswer {
	for off := 0; off < len(name) && name[off] != 0; {
		// Labels of the wire name are plain bytes here (ParseQuery
		// refuses pointers), so every suffix is a name.
		off += 1 + int(name[off])
		fn := t.names.get(name[off:])
		if fn == nil {
			continue
		}
		if fn.wild != "" {
			if do && fn.signed {
				if fn.den == nil {
					return nil
				}
				return fn.den.answer(name, off, true, qtype)
			}
			a := t.answers.get(fastKey(kb, fn.wild, qtype, false))
			if a == nil && nodataType(qtype) {
				a = t.answers.get(fastKey(kb, fn.wild, 0, false))
			}
			return a
		}
		if do {
			if fn.below[1] == nil && fn.den != nil {
				return fn.den.answer(name, off, false, qtype)
			}
			return fn.below[1]
		}
		return fn.below[0]
	}
	return nil
}
