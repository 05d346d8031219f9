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
	// data is a header (packedHeader), the key, then the records.
	data []byte
	x    *packedExtra
	// stored is when the entry was cached, in Unix nanoseconds.
	stored int64
	// life is the time from stored to expiry in milliseconds (noExpiry:
	// the entry's expiry is the zero time).
	life int32
	ref  atomic.Uint32
}

// packedHeader is the length of a packedRR's data header: the key's
// length, the number of records in the RRset and of its RRSIGs, neg
// (big-endian uint16 each), then rank and the security state.
const packedHeader = 10

func (p *packedRR) field(i int) int { return int(binary.BigEndian.Uint16(p.data[2*i:])) }
func (p *packedRR) klen() int       { return p.field(0) }

// packedExtra holds a packedRR's rarely set fields.
type packedExtra struct {
	zone string
	ede  *dns.EDNS0_EDE
}

// ownerIsKey stands for the key's name as a record's owner. A wire name
// starts with a label length (at most 63) or a compression pointer
// (0xC0 and up), which packed records never use.
const ownerIsKey = 0xFF

// noExpiry encodes the zero time.Time of an entry without expiry.
const noExpiry = math.MinInt32

// packedRRBytes is the heap size of a packedRR (its size class).
const packedRRBytes = 48

func (p *packedRR) cacheKey() []byte { return p.data[packedHeader : packedHeader+p.klen()] }
func (p *packedRR) negative() bool   { return p.field(3) != 0 }

func (p *packedRR) expiresAt() int64 {
	if p.life == noExpiry {
		return math.MinInt64
	}
	return p.stored + int64(p.life)*int64(time.Millisecond)
}

// expiry is the entry's expiry as rrEntry has it.
func (p *packedRR) expiry() time.Time {
	if p.life == noExpiry {
		return time.Time{}
	}
	return time.Unix(0, p.expiresAt())
}

func (p *packedRR) rank() uint8   { return p.data[8] }
func (p *packedRR) sec() security { return security(p.data[9]) }
func (p *packedRR) unref() bool   { return p.ref.Swap(0) != 0 }

func (p *packedRR) touch() {
	if p.ref.Load() == 0 {
		p.ref.Store(1)
	}
}

func (p *packedRR) heapBytes() int {
	n := packedRRBytes + allocBytes(cap(p.data)) + mapSlotBytes
	if p.x != nil {
		n += 32 + allocBytes(len(p.x.zone))
		if p.x.ede != nil {
			n += 48 + allocBytes(len(p.x.ede.ExtraText))
		}
	}
	return n
}

// packRR returns e in its cached form under key (rrKey's form: the
// lower-cased name, then the type).
func packRR(key []byte, e *rrEntry) (*packedRR, error) {
	if len(key) < 2 || len(key) > math.MaxUint16 {
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
	// Built in the message's buffer (the records only move left), then
	// copied to a slice of its exact size.
	data := make([]byte, 0, packedHeader+len(key)+len(wire)-12)
	data = binary.BigEndian.AppendUint16(data, uint16(len(key)))
	data = binary.BigEndian.AppendUint16(data, uint16(len(e.rrs)))
	data = binary.BigEndian.AppendUint16(data, uint16(len(sigs)))
	data = binary.BigEndian.AppendUint16(data, uint16(e.neg))
	data = append(data, e.rank, byte(e.sec))
	data = append(data, key...)
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
	p := &packedRR{data: append([]byte(nil), data...), stored: e.stored, life: noExpiry}
	if !e.expires.IsZero() {
		ms := e.expires.Sub(time.Unix(0, e.stored)) / time.Millisecond
		p.life = int32(min(max(ms, math.MinInt32+1), math.MaxInt32))
	}
	if zone != "" || e.ede != nil {
		p.x = &packedExtra{zone: zone, ede: e.ede}
	}
	return p, nil
}

// unpack decodes the entry (fresh records: the caller may change them).
func (p *packedRR) unpack() (*rrEntry, error) {
	e := &rrEntry{stored: p.stored, neg: int32(p.field(3)), rank: p.rank(), sec: p.sec(), expires: p.expiry()}
	var zone string
	if p.x != nil {
		zone, e.ede = p.x.zone, p.x.ede
	}
	nrrs, n := p.field(1), p.field(1)+p.field(2)
	var all []dns.RR
	klen := p.klen()
	owner := string(p.data[packedHeader : packedHeader+klen-2])
	for off := packedHeader + klen; off < len(p.data); {
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
	if nrrs > 0 {
		e.rrs = all[:nrrs:nrrs]
	}
	sigs, soa := all[nrrs:n:n], all[n:]
	if len(sigs) > 0 || len(soa) > 0 || zone != "" {
		e.x = &rrExtra{zone: zone}
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
