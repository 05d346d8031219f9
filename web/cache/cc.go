package cache

import (
	"net/http"
	"strconv"
	"strings"
)

// Directive flags of a Cache-Control header (RFC 9111 section 5.2).
const (
	ccNoCache uint32 = 1 << iota
	ccNoStore
	ccPrivate
	ccPublic
	ccMustRevalidate
	ccProxyRevalidate
	ccOnlyIfCached
	ccImmutable
	ccNoTransform
	ccMaxStaleAny
	ccMustUnderstand
)

// Directives is a parsed Cache-Control header (request or response). The
// durations are in seconds; -1 means the directive is absent.
type Directives struct {
	flags uint32
	// MaxAge is max-age; an invalid value (e.g. "max-age=abc") is recorded
	// as 0 so the response counts as stale (RFC 9111 section 4.2.1).
	MaxAge int64
	// SMaxAge is s-maxage, handled like MaxAge.
	SMaxAge int64
	// MaxStale is max-stale=N (request); MaxStaleAny reports bare max-stale.
	MaxStale int64
	// MinFresh is min-fresh (request).
	MinFresh int64
	// StaleWhileRevalidate is stale-while-revalidate (RFC 5861).
	StaleWhileRevalidate int64
	// StaleIfError is stale-if-error (RFC 5861).
	StaleIfError int64
	// NoCacheFields are the field names of a qualified no-cache="...".
	NoCacheFields []string
	// PrivateFields are the field names of a qualified private="...".
	PrivateFields []string
}

// NoCache reports an unqualified no-cache directive.
func (d *Directives) NoCache() bool { return d.flags&ccNoCache != 0 }

// NoStore reports no-store.
func (d *Directives) NoStore() bool { return d.flags&ccNoStore != 0 }

// Private reports an unqualified private directive.
func (d *Directives) Private() bool { return d.flags&ccPrivate != 0 }

// Public reports public.
func (d *Directives) Public() bool { return d.flags&ccPublic != 0 }

// MustRevalidate reports must-revalidate.
func (d *Directives) MustRevalidate() bool { return d.flags&ccMustRevalidate != 0 }

// ProxyRevalidate reports proxy-revalidate.
func (d *Directives) ProxyRevalidate() bool { return d.flags&ccProxyRevalidate != 0 }

// OnlyIfCached reports only-if-cached.
func (d *Directives) OnlyIfCached() bool { return d.flags&ccOnlyIfCached != 0 }

// Immutable reports immutable (RFC 8246).
func (d *Directives) Immutable() bool { return d.flags&ccImmutable != 0 }

// MaxStaleAny reports max-stale without a value (any staleness accepted).
func (d *Directives) MaxStaleAny() bool { return d.flags&ccMaxStaleAny != 0 }

// ParseCacheControl parses every Cache-Control field line of h. Directive
// names are case-insensitive; values may be tokens or quoted strings. For a
// duplicated directive the first occurrence wins (RFC 9111 section 4.2.1);
// a malformed delta-seconds is taken as 0 (stale), and an overflowing one as
// the largest representable value (section 1.2.2).
func ParseCacheControl(h http.Header) Directives {
	return parseCC(h["Cache-Control"])
}

func parseCC(lines []string) Directives {
	d := Directives{MaxAge: -1, SMaxAge: -1, MaxStale: -1, MinFresh: -1, StaleWhileRevalidate: -1, StaleIfError: -1}
	var seen uint32 // for the valued directives: 1 bit each
	for _, line := range lines {
		s := line
		for len(s) > 0 {
			var name, val string
			var quoted, hasVal bool
			s = trimOWS(s)
			if len(s) == 0 {
				break
			}
			// name
			i := 0
			for i < len(s) && s[i] != '=' && s[i] != ',' {
				i++
			}
			name = strings.TrimRight(s[:i], " \t")
			s = s[i:]
			if len(s) > 0 && s[0] == '=' {
				hasVal = true
				s = trimOWS(s[1:])
				if len(s) > 0 && s[0] == '"' {
					quoted = true
					var b strings.Builder
					j := 1
					for j < len(s) && s[j] != '"' {
						if s[j] == '\\' && j+1 < len(s) {
							j++
						}
						b.WriteByte(s[j])
						j++
					}
					val = b.String()
					if j < len(s) {
						j++ // closing quote
					}
					s = s[j:]
					// skip anything up to the next comma
					if k := strings.IndexByte(s, ','); k >= 0 {
						s = s[k:]
					} else {
						s = ""
					}
				} else {
					k := strings.IndexByte(s, ',')
					if k < 0 {
						k = len(s)
					}
					val = strings.TrimRight(s[:k], " \t")
					s = s[k:]
				}
			}
			if len(s) > 0 && s[0] == ',' {
				s = s[1:]
			}
			if name == "" {
				continue
			}
			d.apply(strings.ToLower(name), val, hasVal, quoted, &seen)
		}
	}
	return d
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	return s
}

func (d *Directives) apply(name, val string, hasVal, quoted bool, seen *uint32) {
	delta := func(bit uint32, dst *int64) {
		if *seen&bit != 0 {
			return // first occurrence wins
		}
		*seen |= bit
		*dst = parseDelta(val, hasVal)
	}
	switch name {
	case "max-age":
		delta(1, &d.MaxAge)
	case "s-maxage":
		delta(2, &d.SMaxAge)
	case "max-stale":
		if !hasVal {
			d.flags |= ccMaxStaleAny
			return
		}
		delta(4, &d.MaxStale)
	case "min-fresh":
		delta(8, &d.MinFresh)
	case "stale-while-revalidate":
		delta(16, &d.StaleWhileRevalidate)
	case "stale-if-error":
		delta(32, &d.StaleIfError)
	case "no-cache":
		if hasVal && quoted && strings.TrimSpace(val) != "" {
			d.NoCacheFields = append(d.NoCacheFields, fieldList(val)...)
			return
		}
		d.flags |= ccNoCache
	case "private":
		if hasVal && quoted && strings.TrimSpace(val) != "" {
			d.PrivateFields = append(d.PrivateFields, fieldList(val)...)
			return
		}
		d.flags |= ccPrivate
	case "no-store":
		d.flags |= ccNoStore
	case "public":
		d.flags |= ccPublic
	case "must-revalidate":
		d.flags |= ccMustRevalidate
	case "proxy-revalidate":
		d.flags |= ccProxyRevalidate
	case "only-if-cached":
		d.flags |= ccOnlyIfCached
	case "immutable":
		d.flags |= ccImmutable
	case "no-transform":
		d.flags |= ccNoTransform
	case "must-understand":
		d.flags |= ccMustUnderstand
	}
}

// maxDelta is 2^31, the value RFC 9111 section 1.2.2 says to use for a
// delta-seconds too large to represent.
const maxDelta = 1 << 31

// parseDelta parses delta-seconds: 1*DIGIT. Anything else is invalid and
// yields 0, which makes a freshness lifetime stale.
func parseDelta(v string, hasVal bool) int64 {
	if !hasVal || v == "" {
		return 0
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0
		}
		if n < maxDelta {
			n = n*10 + int64(c-'0')
		}
	}
	if n > maxDelta {
		n = maxDelta
	}
	return n
}

// excludes reports whether the canonical field name f is named in a
// qualified no-cache="..." or private="..." (RFC 9111 sections 5.2.2.4 and
// 5.2.2.7): a shared cache stores the response without it.
func (d *Directives) excludes(f string) bool {
	for _, n := range d.NoCacheFields {
		if n == f {
			return true
		}
	}
	for _, n := range d.PrivateFields {
		if n == f {
			return true
		}
	}
	return false
}

// neverStored are the response fields a shared cache never stores: a
// cookie set for one client (section 3.1's hop-by-hop fields are removed
// before).
var neverStored = [...]string{"Set-Cookie", "Set-Cookie2"}

// storedHeader removes from h (a response header about to be stored or
// merged into a stored one) the fields named in cc's qualified no-cache
// and private directives and those never stored.
func storedHeader(h http.Header, cc *Directives) {
	for _, f := range cc.PrivateFields {
		delete(h, f)
	}
	for _, f := range cc.NoCacheFields {
		delete(h, f)
	}
	for _, f := range neverStored {
		delete(h, f)
	}
}

// fieldList splits a comma-separated list of field names, canonicalised.
func fieldList(v string) []string {
	var out []string
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f != "" {
			out = append(out, http.CanonicalHeaderKey(f))
		}
	}
	return out
}

// parseAge parses an Age field value; ok is false when it is absent or invalid.
func parseAge(h http.Header) (int64, bool) {
	v := h["Age"]
	if len(v) == 0 {
		return 0, false
	}
	s := strings.TrimSpace(v[0])
	if i := strings.IndexByte(s, ','); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		if err != nil && len(s) > 0 && strings.Trim(s, "0123456789") == "" {
			return maxDelta, true // overflow
		}
		return 0, false
	}
	if n > maxDelta {
		n = maxDelta
	}
	return n, true
}
