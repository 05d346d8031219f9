package resolver

import (
	"encoding/binary"
	"errors"
	"math"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// packedRR is how the RRset cache keeps an rrEntry: one byte slice holds
// the key and every record (the RRset, its RRSIGs, then a negative
// answer's SOA and denial records) in uncompressed wire form, an owner
// equal to the key's name (in any case) written as the one byte
// ownerIsKey, so the name is held once per entry. No miekg/dns record
// structs stay in the cache: get decodes them (the miss and validation
// paths), which is what keeps a cached record near its wire size.
type packedRR struct {
	// data is the key's length (one byte), the key, the fixed fields
	// (rank, security state, then the time from stored to expiry in
	// milliseconds as an int32, noExpiry for the zero time), the counts
	// (uvarints: records of the RRset, its RRSIGs, neg, the length of the
	// extra fields), the extra fields (a typeDSRef entry's zone, the EDE
	// of a bogus state), then the records.
	data []byte
	// state is when the entry was cached in Unix nanoseconds, its lowest
	// bit replaced by the CLOCK reference bit.
	state atomic.Int64
}

// ownerIsKey stands for the key's name as a record's owner. A wire name
// starts with a label length (at most 63) or a compression pointer
// (0xC0 and up), which packed records never use.
const ownerIsKey = 0xFF

// noExpiry encodes the zero time.Time of an entry without expiry.
const noExpiry = math.MinInt32

// packedRRBytes is the heap size of a packedRR (its size class).
const packedRRBytes = 32

// rrMeta is a packedRR's header, parsed.
type rrMeta struct {
	rank             uint8
	sec              security
	life             int32
	nrrs, nsigs, neg int
	zone             string
	ede              *dns.EDNS0_EDE
	records          int
}

func (p *packedRR) cacheKey() []byte { return p.data[1 : 1+p.data[0]] }
func (p *packedRR) fixed() int       { return 1 + int(p.data[0]) }
func (p *packedRR) rank() uint8      { return p.data[p.fixed()] }
func (p *packedRR) life() int32      { return int32(binary.BigEndian.Uint32(p.data[p.fixed()+2:])) }
func (p *packedRR) stored() int64    { return p.state.Load() &^ 1 }
func (p *packedRR) unref() bool      { return p.state.And(^int64(1))&1 != 0 }

func (p *packedRR) touch() {
	if p.state.Load()&1 == 0 {
		p.state.Or(1)
	}
}

// meta parses the header (the extra fields only with extra set).
func (p *packedRR) meta(extra bool) (rrMeta, error) {
	f := p.fixed()
	m := rrMeta{rank: p.data[f], sec: security(p.data[f+1]), life: p.life()}
	off := f + 6
	var v [4]uint64
	for i := range v {
		x, n := binary.Uvarint(p.data[off:])
		if n <= 0 {
			return m, errors.New("bad packed header")
		}
		v[i], off = x, off+n
	}
	m.nrrs, m.nsigs, m.neg = int(v[0]), int(v[1]), int(v[2])
	m.records = off + int(v[3])
	if m.records > len(p.data) {
		return m, errors.New("bad packed header")
	}
	if !extra || v[3] == 0 {
		return m, nil
	}
	x := p.data[off:m.records]
	zl, n := binary.Uvarint(x)
	if n <= 0 || uint64(len(x)-n) < zl {
		return m, errors.New("bad packed extra")
	}
	m.zone, x = string(x[n:n+int(zl)]), x[n+int(zl):]
	if len(x) >= 2 {
		m.ede = &dns.EDNS0_EDE{InfoCode: binary.BigEndian.Uint16(x), ExtraText: string(x[2:])}
	}
	return m, nil
}

func (p *packedRR) negative() bool {
	m, err := p.meta(false)
	return err == nil && m.neg != 0
}

func (p *packedRR) expiresAt() int64 {
	l := p.life()
	if l == noExpiry {
		return math.MinInt64
	}
	return p.stored() + int64(l)*int64(time.Millisecond)
}

// expiry is the entry's expiry as rrEntry has it.
func (p *packedRR) expiry() time.Time {
	if p.life() == noExpiry {
		return time.Time{}
	}
	return time.Unix(0, p.expiresAt())
}

func (p *packedRR) heapBytes() int { return packedRRBytes + allocBytes(cap(p.data)) + mapSlotBytes }

// packRR returns e in its cached form under key (rrKey's form: the
// lower-cased name, then the type).
func packRR(key []byte, e *rrEntry) (*packedRR, error) {
	if len(key) < 2 || len(key) > 255 {
		return nil, errors.New("bad cache key")
	}
	var sigs, soa []dns.RR
	var zone string
	if e.x != nil {
		sigs, soa, zone = e.x.sigs, e.x.soa, e.x.zone
	}
	all := make([]dns.RR, 0, len(e.rrs)+len(sigs)+len(soa))
	all = append(append(append(all, e.rrs...), sigs...), soa...)
	if len(all) > math.MaxUint16 {
		return nil, errors.New("too many records")
	}
	// A message packs the records without writing to them (dns.PackRR
	// would set their Rdlength, and these records may be shared).
	wire, err := (&dns.Msg{Answer: all}).Pack()
	if err != nil {
		return nil, err
	}
	var ownerBuf [256]byte
	n, err := dns.PackDomainName(string(key[:len(key)-2]), ownerBuf[:], 0, nil, false)
	if err != nil {
		return nil, err
	}
	owner := ownerBuf[:n]
	var extra []byte
	if zone != "" || e.ede != nil {
		extra = binary.AppendUvarint(extra, uint64(len(zone)))
		extra = append(extra, zone...)
		if e.ede != nil {
			extra = binary.BigEndian.AppendUint16(extra, e.ede.InfoCode)
			extra = append(extra, e.ede.ExtraText...)
		}
	}
	life := int32(noExpiry)
	if !e.expires.IsZero() {
		ms := e.expires.Sub(time.Unix(0, e.stored)) / time.Millisecond
		life = int32(min(max(ms, math.MinInt32+1), math.MaxInt32))
	}
	// Built in a buffer of the message's size (the records only shrink),
	// then copied to a slice of its exact size.
	data := make([]byte, 0, 1+len(key)+6+4*binary.MaxVarintLen64+len(extra)+len(wire))
	data = append(data, byte(len(key)))
	data = append(data, key...)
	data = append(data, e.rank, byte(e.sec))
	data = binary.BigEndian.AppendUint32(data, uint32(life))
	for _, v := range []int{len(e.rrs), len(sigs), int(e.neg), len(extra)} {
		data = binary.AppendUvarint(data, uint64(v))
	}
	data = append(data, extra...)
	off := 12
	for range all {
		end, err := skipWireName(wire, off)
		if err != nil || end+10 > len(wire) {
			return nil, errors.New("bad packed record")
		}
		if foldEqual(wire[off:end], owner) {
			data = append(data, ownerIsKey)
		} else {
			data = append(data, wire[off:end]...)
		}
		next := end + 10 + int(binary.BigEndian.Uint16(wire[end+8:]))
		if next > len(wire) {
			return nil, errors.New("bad packed record")
		}
		data = append(data, wire[end:next]...)
		off = next
	}
	p := &packedRR{data: append([]byte(nil), data...)}
	p.state.Store(e.stored &^ 1)
	return p, nil
}

// unpack decodes the entry (fresh records: the caller may change them).
func (p *packedRR) unpack() (*rrEntry, error) {
	m, err := p.meta(true)
	if err != nil {
		return nil, err
	}
	e := &rrEntry{stored: p.stored(), neg: int32(m.neg), rank: m.rank, sec: m.sec, expires: p.expiry(), ede: m.ede}
	n := m.nrrs + m.nsigs
	var all []dns.RR
	owner := string(p.data[1 : 1+int(p.data[0])-2])
	for off := m.records; off < len(p.data); {
		var h dns.RR_Header
		if p.data[off] == ownerIsKey {
			h.Name = owner
			off++
		} else {
			name, end, err := dns.UnpackDomainName(p.data, off)
			if err != nil {
				return nil, err
			}
			h.Name, off = name, end
		}
		if off+10 > len(p.data) {
			return nil, errors.New("short packed record")
		}
		h.Rrtype = binary.BigEndian.Uint16(p.data[off:])
		h.Class = binary.BigEndian.Uint16(p.data[off+2:])
		h.Ttl = binary.BigEndian.Uint32(p.data[off+4:])
		h.Rdlength = binary.BigEndian.Uint16(p.data[off+8:])
		end := off + 10 + int(h.Rdlength)
		if end > len(p.data) {
			return nil, errors.New("short packed record")
		}
		// The record's data ends the message it is unpacked from (as
		// miekg/dns's own header parsing cuts it).
		rr, end, err := dns.UnpackRRWithHeader(h, p.data[:end], off+10)
		if err != nil {
			return nil, err
		}
		all = append(all, rr)
		off = end
	}
	if len(all) < n {
		return nil, errors.New("packed entry lost records")
	}
	if m.nrrs > 0 {
		e.rrs = all[:m.nrrs:m.nrrs]
	}
	sigs, soa := all[m.nrrs:n:n], all[n:]
	if len(sigs) > 0 || len(soa) > 0 || m.zone != "" {
		e.x = &rrExtra{zone: m.zone}
		if len(sigs) > 0 {
			e.x.sigs = sigs
		}
		if len(soa) > 0 {
			e.x.soa = soa
		}
	}
	return e, nil
}

// skipWireName returns the offset past the uncompressed name at off.
func skipWireName(b []byte, off int) (int, error) {
	for off < len(b) {
		l := int(b[off])
		switch {
		case l == 0:
			return off + 1, nil
		case l > 63:
			return 0, errors.New("compressed or bad name")
		}
		off += l + 1
	}
	return 0, errors.New("short name")
}

// foldEqual compares two wire names, ASCII letters in any case.
func foldEqual(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// rrCache is the RRset cache: rrEntry values in, packed in the store,
// decoded out.
type rrCache struct {
	s   *store[*packedRR]
	bad atomic.Uint64
}

func newRRCache(size int, maxBytes int64) *rrCache {
	return &rrCache{s: newStore[*packedRR](size, maxBytes)}
}

// get returns the entry under key, decoded.
func (c *rrCache) get(key []byte) (*rrEntry, bool) {
	p, ok := c.s.get(key)
	if !ok {
		return nil, false
	}
	e, err := p.unpack()
	if err != nil {
		c.bad.Add(1)
		return nil, false
	}
	return e, true
}

// peek returns the entry's rank and expiry without decoding it.
func (c *rrCache) peek(key []byte) (rank uint8, expires time.Time, ok bool) {
	p, ok := c.s.get(key)
	if !ok {
		return 0, time.Time{}, false
	}
	return p.rank(), p.expiry(), true
}

// put caches e under key. An entry whose records do not pack (none from
// the wire should fail) is not cached.
func (c *rrCache) put(key []byte, e *rrEntry) {
	p, err := packRR(key, e)
	if err != nil {
		c.bad.Add(1)
		return
	}
	c.s.put(key, p)
}

func (c *rrCache) len() int                              { return c.s.len() }
func (c *rrCache) flush(match func(key string) bool) int { return c.s.flush(match) }

// each calls fn with every entry's key and decoded entry.
func (c *rrCache) each(fn func(key string, e *rrEntry)) {
	c.s.each(func(p *packedRR) {
		if e, err := p.unpack(); err == nil {
			fn(string(p.cacheKey()), e)
		}
	})
}
