// Conditional requests and ranges evaluated against stored responses
// (RFC 9110 sections 13 and 14).

package cache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// notModified evaluates the request's If-None-Match / If-Modified-Since
// against a stored response (RFC 9110 section 13.2.2).
func notModified(r *http.Request, e *entry) bool {
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		if e.etag == "" {
			return false
		}
		return etagListMatches(inm, e.etag)
	}
	if ims := r.Header.Get("If-Modified-Since"); ims != "" {
		t, err := http.ParseTime(ims)
		return err == nil && !lastModified(e).After(t)
	}
	return false
}

// etagListMatches evaluates an If-None-Match value against a stored
// entity-tag (RFC 9110 section 13.1.2): "*", or a comma-separated list of
// entity-tags (an optional W/ and a quoted opaque tag, which may itself
// hold commas) one of which matches weakly. A malformed list matches
// nothing: the stored response is sent whole.
func etagListMatches(list, etag string) bool {
	if strings.Trim(list, " \t") == "*" {
		return true
	}
	want, ok := opaqueTag(etag)
	if !ok {
		return false
	}
	found := false
	s := list
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			return found
		}
		tag, rest, ok := nextETag(s)
		if !ok {
			return false
		}
		if tag == want {
			found = true
		}
		s = strings.TrimLeft(rest, " \t")
		if s != "" && s[0] != ',' {
			return false
		}
	}
}

// nextETag splits the entity-tag at the start of s: its opaque tag
// (quotes included, W/ dropped) and what follows.
func nextETag(s string) (tag, rest string, ok bool) {
	s = strings.TrimPrefix(s, "W/")
	if len(s) < 2 || s[0] != '"' {
		return "", "", false
	}
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return s[:i+1], s[i+1:], true
		case c < 0x21 || c == 0x7f:
			return "", "", false // not etagc
		}
	}
	return "", "", false
}

// opaqueTag returns a whole entity-tag's opaque tag.
func opaqueTag(etag string) (string, bool) {
	tag, rest, ok := nextETag(etag)
	return tag, ok && rest == ""
}

// lastModified is the modification time a cache compares If-Modified-Since
// with (RFC 9111 section 4.3.2): the stored Last-Modified, else the stored
// Date, else the time the response was received.
func lastModified(e *entry) time.Time {
	if e.lastMod != "" {
		if t, err := http.ParseTime(e.lastMod); err == nil {
			return t
		}
	}
	return e.date // Date, or the time received (dateOf)
}

// ifRangeOK reports whether a Range request's If-Range (if any) matches the
// stored response, so the range applies.
func ifRangeOK(r *http.Request, e *entry) bool {
	ir := strings.TrimSpace(r.Header.Get("If-Range"))
	if ir == "" {
		return true
	}
	if strings.HasPrefix(ir, `"`) {
		return e.etag == ir // strong comparison
	}
	if strings.HasPrefix(ir, "W/") {
		return false
	}
	return e.lastMod != "" && ir == e.lastMod
}

// parseRange parses a single "bytes=" range against size. multi reports a
// range set with several ranges or a unit we don't serve (answered whole).
func parseRange(v string, size int64) (start, end int64, ok, multi bool) {
	v = strings.TrimSpace(v)
	if !strings.HasPrefix(v, "bytes=") {
		return 0, 0, false, true
	}
	spec := strings.TrimSpace(v[len("bytes="):])
	if strings.Contains(spec, ",") {
		return 0, 0, false, true
	}
	dash := strings.IndexByte(spec, '-')
	if dash < 0 {
		return 0, 0, false, true
	}
	a, b := strings.TrimSpace(spec[:dash]), strings.TrimSpace(spec[dash+1:])
	if a == "" { // suffix range
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, false, true
		}
		if n == 0 || size == 0 {
			return 0, 0, false, false
		}
		if n > size {
			n = size
		}
		return size - n, size - 1, true, false
	}
	s, err := strconv.ParseInt(a, 10, 64)
	if err != nil || s < 0 {
		return 0, 0, false, true
	}
	e := size - 1
	if b != "" {
		if e, err = strconv.ParseInt(b, 10, 64); err != nil || e < s {
			return 0, 0, false, true
		}
		if e >= size {
			e = size - 1
		}
	}
	if s >= size {
		return 0, 0, false, false
	}
	return s, e, true, false
}
