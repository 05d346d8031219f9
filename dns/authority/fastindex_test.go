package authority

import (
	"fmt"
	"strings"
	"testing"
)

// The index returns what the map it was built from holds, for every key
// (short and long, at the inline limit and past it, prefixes of one
// another) and nothing for keys it does not hold.
func TestFastIndex(t *testing.T) {
	for _, tc := range []struct {
		name string
		keys []string
		miss []string
	}{
		{"empty", nil, []string{"", "a", strings.Repeat("x", 40)}},
		{"one", []string{"\x01a\x00\x00\x01\x00"}, []string{"", "\x01a\x00\x00\x01\x01", "\x01a\x00\x00\x01"}},
		{"inline limit", []string{strings.Repeat("a", 29), strings.Repeat("a", 30), strings.Repeat("a", 31), strings.Repeat("a", 258)},
			[]string{strings.Repeat("a", 28), strings.Repeat("a", 32), strings.Repeat("a", 257), strings.Repeat("b", 30)}},
		{"same length, one byte apart", []string{strings.Repeat("a", 29) + "b", strings.Repeat("a", 29) + "c", strings.Repeat("a", 40) + "b", strings.Repeat("a", 40) + "c"},
			[]string{strings.Repeat("a", 29) + "d", strings.Repeat("a", 40) + "d"}},
		{"many", func() (k []string) {
			for i := range 5000 {
				k = append(k, string(fastKey(nil, fmt.Sprintf("\x05h%04d\x06amazon\x03com\x00", i), uint16(i%3), i%2 == 0)))
			}
			return k
		}(), []string{string(fastKey(nil, "\x05h9999\x06amazon\x03com\x00", 1, false)), "\x00"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := map[string]*int{}
			for i, k := range tc.keys {
				m[k] = &i
			}
			x := newFastIndex(m)
			if n := len(x.slots); n < 2*len(m) || n&(n-1) != 0 {
				t.Errorf("%d slots for %d keys: want a power of two at least twice as many", n, len(m))
			}
			for k, v := range m {
				if got := x.get([]byte(k)); got != v {
					t.Errorf("get(%q) = %v, want %v", k, got, v)
				}
			}
			for _, k := range tc.miss {
				if got := x.get([]byte(k)); got != nil {
					t.Errorf("get(%q) = %v, want nil (not a key)", k, got)
				}
			}
		})
	}
}

func BenchmarkFastIndex(b *testing.B) {
	m := map[string]*int{}
	var keys [][]byte
	for i := range 100000 {
		k := string(fastKey(nil, fmt.Sprintf("\x06h%05d\x06amazon\x03com\x00", i), 1, false))
		m[k] = &i
		keys = append(keys, []byte(k))
	}
	x := newFastIndex(m)
	b.Run("index", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if x.get(keys[(i*7919)%len(keys)]) == nil {
				b.Fatal("miss")
			}
		}
	})
	b.Run("map", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if m[string(keys[(i*7919)%len(keys)])] == nil {
				b.Fatal("miss")
			}
		}
	})
}
