package resolver

import (
	"encoding/binary"
	"errors"
)

// query is what the fast path reads from a client's query without a full
// unpack: the question and the EDNS flags that select the cached variant.
type query struct {
	id      uint16
	rd, cd  bool
	ad      bool
	edns    bool
	do      bool
	udpSize int
	qtype   uint16
	qclass  uint16
	// qnameEnd is the offset just past the question's name.
	qnameEnd int
	// key is the cache key: the lower-cased wire name, type and flags.
	key []byte
}

var errSlowPath = errors.New("resolver: query needs the slow path")

// parseQuery reads a plain recursive query (one question, at most an OPT
// record) into q, reusing q.key's storage. Anything else returns
// errSlowPath and is handled by a full unpack.
func parseQuery(b []byte, q *query) error {
	if len(b) < 17 {
		return errSlowPath
	}
	flags := binary.BigEndian.Uint16(b[2:])
	// QR must be 0, opcode QUERY (0).
	if flags&0x8000 != 0 || flags&0x7800 != 0 {
		return errSlowPath
	}
	if binary.BigEndian.Uint16(b[4:]) != 1 || binary.BigEndian.Uint16(b[6:]) != 0 || binary.BigEndian.Uint16(b[8:]) != 0 {
		return errSlowPath
	}
	ar := binary.BigEndian.Uint16(b[10:])
	if ar > 1 {
		return errSlowPath
	}
	q.id = binary.BigEndian.Uint16(b)
	q.rd = flags&0x0100 != 0
	q.cd = flags&0x0010 != 0
	q.ad = flags&0x0020 != 0
	key := q.key[:0]
	off := 12
	for {
		if off >= len(b) {
			return errSlowPath
		}
		l := int(b[off])
		if l&0xC0 != 0 {
			return errSlowPath
		}
		key = append(key, byte(l))
		off++
		if l == 0 {
			break
		}
		if off+l > len(b) || off-12+l > 254 {
			return errSlowPath
		}
		for _, c := range b[off : off+l] {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			key = append(key, c)
		}
		off += l
	}
	q.qnameEnd = off
	if off+4 > len(b) {
		return errSlowPath
	}
	q.qtype = binary.BigEndian.Uint16(b[off:])
	q.qclass = binary.BigEndian.Uint16(b[off+2:])
	off += 4
	q.edns, q.do, q.udpSize = false, false, 512
	if ar == 1 {
		// OPT: root name, type 41, class = UDP size, TTL = ext-rcode,
		// version, flags; rdlen; options.
		if off+11 > len(b) || b[off] != 0 || binary.BigEndian.Uint16(b[off+1:]) != 41 {
			return errSlowPath
		}
		if b[off+6] != 0 { // EDNS version
			return errSlowPath
		}
		q.edns = true
		q.udpSize = max(512, int(binary.BigEndian.Uint16(b[off+3:])))
		q.do = b[off+7]&0x80 != 0
		rdlen := int(binary.BigEndian.Uint16(b[off+9:]))
		off += 11 + rdlen
	}
	if off != len(b) {
		return errSlowPath
	}
	if q.qclass != 1 || q.qtype == 0 || q.qtype == 252 || q.qtype == 251 || q.qtype == 255 {
		return errSlowPath
	}
	var fl byte
	if q.edns {
		fl |= 1
	}
	if q.do {
		fl |= 2
	}
	if q.cd {
		fl |= 4
	}
	if q.ad {
		fl |= 8
	}
	key = append(key, byte(q.qtype>>8), byte(q.qtype), fl)
	q.key = key
	return nil
}

// ttlOffsets returns the offsets of the TTL fields of every record in the
// packed message msg except OPT's.
func ttlOffsets(msg []byte) ([]uint16, error) {
	if len(msg) < 12 {
		return nil, errors.New("short message")
	}
	qd := int(binary.BigEndian.Uint16(msg[4:]))
	n := int(binary.BigEndian.Uint16(msg[6:])) + int(binary.BigEndian.Uint16(msg[8:])) + int(binary.BigEndian.Uint16(msg[10:]))
	off := 12
	for range qd {
		var err error
		if off, err = skipName(msg, off); err != nil {
			return nil, err
		}
		off += 4
	}
	var out []uint16
	for range n {
		var err error
		if off, err = skipName(msg, off); err != nil {
			return nil, err
		}
		if off+10 > len(msg) {
			return nil, errors.New("short record")
		}
		if binary.BigEndian.Uint16(msg[off:]) != 41 {
			out = append(out, uint16(off+4))
		}
		rdlen := int(binary.BigEndian.Uint16(msg[off+8:]))
		off += 10 + rdlen
		if off > len(msg) {
			return nil, errors.New("short rdata")
		}
	}
	return out, nil
}

func skipName(b []byte, off int) (int, error) {
	for {
		if off >= len(b) {
			return 0, errors.New("short name")
		}
		l := int(b[off])
		switch {
		case l == 0:
			return off + 1, nil
		case l&0xC0 == 0xC0:
			return off + 2, nil
		case l&0xC0 != 0:
			return 0, errors.New("bad label")
		}
		off += 1 + l
	}
}
