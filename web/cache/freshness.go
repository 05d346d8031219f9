package cache

import (
	"net/http"
	"strings"
	"time"
)

// heuristicStatus lists the status codes that are heuristically cacheable
// (RFC 9110 section 15.1).
func heuristicStatus(code int) bool {
	switch code {
	case 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// understoodStatus lists the final status codes this cache knows how to
// store (206 and 304 are never stored as such).
func understoodStatus(code int) bool {
	switch {
	case code == 206 || code == 304:
		return false
	case code >= 200 && code < 600:
		return true
	}
	return false
}

// hopByHop are the connection-specific fields that a proxy never forwards
// and a cache never stores (RFC 9110 section 7.6.1, RFC 9111 section 3.1).
var hopByHop = [...]string{"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Proxy-Authenticate", "Proxy-Authorization"}

// RemoveHopByHop deletes from h the hop-by-hop fields and every field named
// in Connection.
func RemoveHopByHop(h http.Header) {
	for _, c := range h["Connection"] {
		for _, f := range strings.Split(c, ",") {
			if f = strings.TrimSpace(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, f := range hopByHop {
		delete(h, f)
	}
}

// derive fills the fields of e computed from its stored header: the
// parsed Cache-Control, validators and the freshness lifetime.
func (c *Cache) derive(e *entry) {
	e.cc, e.targeted = c.responseCC(e.header)
	e.etag = e.header.Get("Etag")
	e.lastMod = e.header.Get("Last-Modified")
	e.date = dateOf(e.header, e.respTime)
	e.lifetime = c.lifetime(e)
}

// lifetime is the freshness lifetime of RFC 9111 section 4.2.1 for a shared
// cache: s-maxage, then max-age, then Expires minus Date, then a heuristic
// of a fraction of the time since Last-Modified.
func (c *Cache) lifetime(e *entry) time.Duration {
	switch {
	case e.cc.SMaxAge >= 0:
		return time.Duration(e.cc.SMaxAge) * time.Second
	case e.cc.MaxAge >= 0:
		return time.Duration(e.cc.MaxAge) * time.Second
	}
	date := e.respTime
	if ds := e.header["Date"]; len(ds) > 0 {
		if t, err := http.ParseTime(ds[0]); err == nil {
			date = t
		}
	}
	if exps, ok := e.header["Expires"]; ok && !e.targeted {
		if len(exps) != 1 {
			return 0
		}
		t, err := http.ParseTime(exps[0])
		if err != nil {
			return 0 // invalid Expires, e.g. "0": already expired (section 5.3)
		}
		if d := t.Sub(date); d > 0 {
			return d
		}
		return 0
	}
	if e.lastMod != "" && (heuristicStatus(e.status) || e.cc.Public()) {
		if lm, err := http.ParseTime(e.lastMod); err == nil {
			if d := date.Sub(lm); d > 0 {
				// capped in floating point: a large fraction of an old
				// Last-Modified overflows a Duration
				h := float64(d) * c.cfg.HeuristicFraction
				if max := c.cfg.MaxHeuristic.D(); h > float64(max) {
					return max
				}
				return time.Duration(h)
			}
		}
	}
	return 0
}

// storable reports whether a response to a GET request may be stored
// (RFC 9111 section 3), given the parsed directives of both.
// targeted says cc came from a targeted field (RFC 9213): Expires is
// then ignored.
func storable(req *http.Request, reqCC *Directives, status int, h http.Header, cc *Directives, targeted bool) bool {
	if req.Method != http.MethodGet || !understoodStatus(status) {
		return false
	}
	if reqCC.NoStore() {
		return false
	}
	if cc.NoStore() && !(cc.flags&ccMustUnderstand != 0 && heuristicStatus(status)) {
		return false
	}
	if cc.Private() {
		return false // a shared cache
	}
	if _, ok := req.Header["Authorization"]; ok && !(cc.Public() || cc.MustRevalidate() || cc.SMaxAge >= 0) {
		return false
	}
	if _, star := varyNames(h); star {
		return false // can never be selected
	}
	if _, ok := h["Set-Cookie"]; ok && !cc.excludes("Set-Cookie") {
		// A shared cache never replays one client's cookie to another:
		// like Varnish's builtin VCL and nginx's proxy_cache, a response
		// setting a cookie is not stored, unless it says the cookie is not
		// to be stored (no-cache="Set-Cookie" or private="Set-Cookie"),
		// when it is stored without it.
		return false
	}
	if _, ok := h["Expires"]; ok && !targeted {
		return true
	}
	return cc.MaxAge >= 0 || cc.SMaxAge >= 0 || cc.Public() || heuristicStatus(status)
}
