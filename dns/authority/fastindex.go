package authority

import (
	"bytes"
	"hash/maphash"
	"math/bits"
)

// fastIndexEntryBytes is what an entry costs the index, on average: a
// 64-byte slot, with between two and four slots an entry.
const fastIndexEntryBytes = 192

// fastIndex is the answer table's lookup structure, built once from a
// map when the table is: open addressing with linear probing over a
// power-of-two array of 64-byte slots, at most half full. A slot holds
// the key's hash, the value and, when the key is short (as the wire
// names of a zone mostly are), the key itself, so that a lookup reads
// one cache line before the value, and a miss (the names that do not
// exist) usually that line alone. A Go map reads the group's control
// word, the slot and the key's bytes elsewhere: with a table of tens of
// thousands of answers each is a cache miss, and perf put map lookups
// at half of the authority's user time per answer.
type fastIndex[V any] struct {
	seed  maphash.Seed
	slots []fastSlot[V]
	mask  uint64
}

// fastSlot is one slot: h is the key's hash with its low bit set (0: an
// empty slot); the key is short[:n], or long when it is longer.
type fastSlot[V any] struct {
	h     uint64
	v     V
	long  string
	n     uint16
	short [30]byte
}

// newFastIndex indexes m.
func newFastIndex[V any](m map[string]V) *fastIndex[V] {
	size := 8
	if n := 2 * len(m); n > size {
		size = 1 << bits.Len(uint(n-1))
	}
	x := &fastIndex[V]{seed: maphash.MakeSeed(), slots: make([]fastSlot[V], size), mask: uint64(size - 1)}
	for k, v := range m {
		h := maphash.String(x.seed, k) | 1
		i := h & x.mask
		for x.slots[i].h != 0 {
			i = (i + 1) & x.mask
		}
		s := &x.slots[i]
		s.h, s.v, s.n = h, v, uint16(len(k))
		if len(k) <= len(s.short) {
			copy(s.short[:], k)
		} else {
			s.long = k
		}
	}
	return x
}

// get returns the value of key, or the zero value.
func (x *fastIndex[V]) get(key []byte) V {
	h := maphash.Bytes(x.seed, key) | 1
	for i := h & x.mask; ; i = (i + 1) & x.mask {
		s := &x.slots[i]
		if s.h == h && int(s.n) == len(key) {
			if len(key) <= len(s.short) {
				if bytes.Equal(s.short[:len(key)], key) {
					return s.v
				}
			} else if s.long == string(key) {
				return s.v
			}
		}
		if s.h == 0 {
			var zero V
			return zero
		}
	}
}
