package dnsserver

import (
	"encoding/binary"
	"errors"
)

// Query is what the fast path reads from a query without a full unpack:
// the question and the EDNS fields that select a cached answer.
type Query struct {
	ID         uint16
	RD, CD, AD bool
	EDNS, DO   bool
	// UDPSize is the client's EDNS buffer size, at least 512 (512
	// without EDNS).
	UDPSize int
	Qtype   uint16
	Qclass  uint16
	// NameEnd is the offset just past the question's name.
	NameEnd int
	// Key is a cache key: the lower-cased wire name, the type and a flag
	// byte (EDNS 1, DO 2, CD 4, AD 8). Its storage is reused by the next
	// ParseQuery into the same Query: copy it to keep it.
	Key []byte
}

// ErrSlowPath is returned by ParseQuery for a message it does not read:
// it needs a full unpack (Request.Msg).
var ErrSlowPath = errors.New("dnsserver: query needs the slow path")

// ParseQuery reads a plain query (QR clear, opcode QUERY, one question
// of class IN, no answer or authority records, at most an OPT record of
// EDNS version 0, and not a zone transfer or ANY) into q, reusing q.Key's
// storage: nothing is allocated once q.Key has grown. Anything else
// returns ErrSlowPath.
func ParseQuery(b []byte, q *Query) error {
	if len(b) < 17 {
		return ErrSlowPath
	}
	flags := binary.BigEndian.Uint16(b[2:])
	// QR must be 0, opcode QUERY (0).
	if flags&0x8000 != 0 || flags&0x7800 != 0 {
		return ErrSlowPath
	}
	if binary.BigEndian.Uint16(b[4:]) != 1 || binary.BigEndian.Uint16(b[6:]) != 0 || binary.BigEndian.Uint16(b[8:]) != 0 {
		return ErrSlowPath
	}
	ar := binary.BigEndian.Uint16(b[10:])
	if ar > 1 {
		return ErrSlowPath
	}
	q.ID = binary.BigEndian.Uint16(b)
	q.RD = flags&0x0100 != 0
	q.CD = flags&0x0010 != 0
	q.AD = flags&0x0020 != 0
	key := q.Key[:0]
	off := 12
	for {
		if off >= len(b) {
			return ErrSlowPath
		}
		l := int(b[off])
		if l&0xC0 != 0 {
			return ErrSlowPath
		}
		key = append(key, byte(l))
		off++
		if l == 0 {
			break
		}
		if off+l > len(b) || off-12+l > 254 {
			return ErrSlowPath
		}
		for _, c := range b[off : off+l] {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			key = append(key, c)
		}
		off += l
	}
	q.NameEnd = off
	if off+4 > len(b) {
		return ErrSlowPath
	}
	q.Qtype = binary.BigEndian.Uint16(b[off:])
	q.Qclass = binary.BigEndian.Uint16(b[off+2:])
	off += 4
	q.EDNS, q.DO, q.UDPSize = false, false, 512
	if ar == 1 {
		// OPT: root name, type 41, class = UDP size, TTL = ext-rcode,
		// version, flags; rdlen; options.
		if off+11 > len(b) || b[off] != 0 || binary.BigEndian.Uint16(b[off+1:]) != 41 {
			return ErrSlowPath
		}
		if b[off+6] != 0 { // EDNS version
			return ErrSlowPath
		}
		q.EDNS = true
		q.UDPSize = max(512, int(binary.BigEndian.Uint16(b[off+3:])))
		q.DO = b[off+7]&0x80 != 0
		rdlen := int(binary.BigEndian.Uint16(b[off+9:]))
		off += 11 + rdlen
	}
	if off != len(b) {
		return ErrSlowPath
	}
	if q.Qclass != 1 || q.Qtype == 0 || q.Qtype == 252 || q.Qtype == 251 || q.Qtype == 255 {
		return ErrSlowPath
	}
	var fl byte
	if q.EDNS {
		fl |= 1
	}
	if q.DO {
		fl |= 2
	}
	if q.CD {
		fl |= 4
	}
	if q.AD {
		fl |= 8
	}
	key = append(key, byte(q.Qtype>>8), byte(q.Qtype), fl)
	q.Key = key
	return nil
}
