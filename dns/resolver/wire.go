package resolver

import (
	"encoding/binary"
	"errors"

	"github.com/applayer/applayer/dns/dnsserver"
)

// query is what the fast path reads from a client's query without a full
// unpack (the DNS server's parser, shared by every DNS handler).
type query = dnsserver.Query

// parseQuery reads a plain recursive query into q (dnsserver.ParseQuery).
func parseQuery(b []byte, q *query) error { return dnsserver.ParseQuery(b, q) }

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
		if off, err = dnsserver.SkipName(msg, off); err != nil {
			return nil, err
		}
		off += 4
	}
	var out []uint16
	for range n {
		var err error
		if off, err = dnsserver.SkipName(msg, off); err != nil {
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
