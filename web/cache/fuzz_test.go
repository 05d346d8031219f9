package cache

import (
	"net/http"
	"strings"
	"testing"
)

func FuzzParseCacheControl(f *testing.F) {
	for _, s := range []string{`max-age=60`, `no-cache="a, b", private`, `max-age="1`, `,,=,"`, `s-maxage=99999999999999999999999`, `max-stale, min-fresh=1`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := parseCC(strings.Split(s, "\n"))
		for _, v := range []int64{d.MaxAge, d.SMaxAge, d.MaxStale, d.MinFresh, d.StaleIfError, d.StaleWhileRevalidate} {
			if v < -1 || v > maxDelta {
				t.Fatalf("%q: out-of-range delta %d", s, v)
			}
		}
		// Parsing is deterministic.
		if d2 := parseCC(strings.Split(s, "\n")); d2.MaxAge != d.MaxAge || d2.flags != d.flags {
			t.Fatalf("%q: not deterministic", s)
		}
	})
}

func FuzzVaryKey(f *testing.F) {
	f.Add("Accept-Encoding, Accept-Language", "gzip, br", "en")
	f.Add("*", "", "")
	f.Add(",accept-encoding,,", "BR,  gzip", "")
	f.Fuzz(func(t *testing.T, vary, ae, al string) {
		rh := http.Header{"Vary": {vary}}
		names, star := varyNames(rh)
		if star && names != nil {
			t.Fatal("star with names")
		}
		h := http.Header{"Accept-Encoding": {ae}, "Accept-Language": {al}}
		k1 := VaryKey(names, h)
		// Reordering list members of Accept-Encoding and changing its case
		// must select the same variant.
		parts := strings.Split(ae, ",")
		for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
			parts[i], parts[j] = parts[j], parts[i]
		}
		h2 := http.Header{"Accept-Encoding": {strings.ToUpper(strings.Join(parts, ","))}, "Accept-Language": {al}}
		// Only checked for ASCII: Unicode case mapping is not an involution.
		if k2 := VaryKey(names, h2); k1 != k2 && isASCII(ae) {
			t.Fatalf("Vary %q: Accept-Encoding %q and %q select different variants: %q != %q", vary, ae, h2.Get("Accept-Encoding"), k1, k2)
		}
		r, err := http.NewRequest("GET", "http://example.com/"+vary, nil)
		if err == nil {
			if k := Key(r); !strings.HasPrefix(k, "http://example.com/") {
				t.Fatalf("Key %q", k)
			}
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
