package cache

import (
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// Key returns the primary cache key of a request (RFC 9111 section 2): the
// target URI with the scheme and host lower-cased and a default port
// removed. The method is not part of it: only GET responses are stored, and
// HEAD is answered from them.
func Key(r *http.Request) string {
	scheme := r.URL.Scheme
	if scheme == "" {
		scheme = "http"
		if r.TLS != nil {
			scheme = "https"
		}
	}
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	return keyOf(scheme, host, r.URL.RequestURI())
}

func keyOf(scheme, host, uri string) string {
	scheme = asciiLower(scheme)
	host = asciiLower(host)
	if scheme == "http" {
		host = strings.TrimSuffix(host, ":80")
	} else if scheme == "https" {
		host = strings.TrimSuffix(host, ":443")
	}
	if uri == "" || uri == "*" {
		uri = "/"
	}
	return scheme + "://" + host + uri
}

// asciiLower lower-cases s without allocating when it already is.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// keyFromURL resolves ref (a Location or Content-Location value) against
// the request's key and returns its key and whether it has the same origin
// (scheme and authority) as base.
func keyFromURL(base string, ref string) (string, bool) {
	b, err := url.Parse(base)
	if err != nil {
		return "", false
	}
	u, err := b.Parse(strings.TrimSpace(ref))
	if err != nil {
		return "", false
	}
	k := keyOf(u.Scheme, u.Host, u.RequestURI())
	bo := keyOf(b.Scheme, b.Host, "/")
	return k, strings.HasPrefix(k, strings.TrimSuffix(bo, "/")+"/")
}

// varyNames returns the canonical, sorted, de-duplicated field names listed
// in the response's Vary, and whether it contains "*" (never matches).
func varyNames(h http.Header) (names []string, star bool) {
	for _, line := range h["Vary"] {
		for _, f := range strings.Split(line, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			if f == "*" {
				return nil, true
			}
			names = append(names, http.CanonicalHeaderKey(f))
		}
	}
	if len(names) < 2 {
		return names, false
	}
	sort.Strings(names)
	out := names[:1]
	for _, n := range names[1:] {
		if n != out[len(out)-1] {
			out = append(out, n)
		}
	}
	return out, false
}

// VaryKey returns the secondary key of a request for a response that
// varies on names: each selecting header's value normalised (RFC 9111
// section 4.1), so requests that differ only in whitespace, case of
// case-insensitive values, or the order of list members select the same
// stored response.
func VaryKey(names []string, h http.Header) string {
	if len(names) == 0 {
		return ""
	}
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n)
		b.WriteByte(':')
		vs, ok := h[n]
		if !ok {
			b.WriteString("\x00\n") // absent differs from empty
			continue
		}
		b.WriteString(normalizeFieldValue(n, vs))
		b.WriteByte('\n')
	}
	return b.String()
}

// normalizeFieldValue combines a field's lines into one list, removes
// optional whitespace around list members and parameters, lower-cases the
// content-negotiation fields (whose values are case-insensitive) and sorts
// Accept-Encoding's members, whose order carries no meaning.
func normalizeFieldValue(name string, vs []string) string {
	var members []string
	for _, v := range vs {
		for _, m := range strings.Split(v, ",") {
			m = strings.Join(strings.Fields(m), "")
			if m == "" {
				continue
			}
			members = append(members, m)
		}
	}
	switch name {
	case "Accept-Encoding", "Accept-Language", "Accept", "Accept-Charset":
		for i, m := range members {
			members[i] = strings.ToLower(m)
		}
		if name == "Accept-Encoding" {
			sort.Strings(members)
		}
	}
	return strings.Join(members, ",")
}
