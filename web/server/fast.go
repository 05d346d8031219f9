package server

import (
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"

	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/web/fastpath"
)

// The HTTP/1.1 fast path (web/fastpath) on the cleartext port: GET and
// HEAD for files in a site's small-file cache are answered from
// precomputed header blocks, with conditional GET (If-None-Match,
// If-Modified-Since), single byte ranges, gzip variants (Vary) and
// Connection: close, and counted in the metrics, the access log and the
// trace like any other request. Everything else (other methods, bodies,
// If-Match and If-Range, multiple ranges, files too large for the cache,
// the shop, redirects, listings, ...) goes with its bytes to net/http.

const (
	protoHTTP11 = "HTTP/1.1"
	methodGet   = "GET"
	methodHead  = "HEAD"
)

// fastHandler answers fast-path requests for s.
type fastHandler struct{ s *Server }

// fastFields are the request fields the fast path acts on.
type fastFields struct {
	ae, inm, ims, rng, referer, ua []byte
	haveAE, haveINM, haveIMS       bool
	haveRange                      bool
}

// scan collects the fields; ok false when one needs the general path
// (If-Match, If-Unmodified-Since, If-Range, credentials in the access
// log, or a field the fast path acts on given twice).
func (f *fastFields) scan(r *fastpath.Request, logging bool) bool {
	for _, fl := range r.Fields {
		n, v := fl.Name, fl.Value
		switch {
		case fastpath.EqualFold(n, "accept-encoding"):
			if f.haveAE {
				return false
			}
			f.ae, f.haveAE = v, true
		case fastpath.EqualFold(n, "if-none-match"):
			if f.haveINM {
				return false
			}
			f.inm, f.haveINM = v, true
		case fastpath.EqualFold(n, "if-modified-since"):
			if f.haveIMS {
				return false
			}
			f.ims, f.haveIMS = v, true
		case fastpath.EqualFold(n, "range"):
			if f.haveRange {
				return false
			}
			f.rng, f.haveRange = v, true
		case fastpath.HasPrefixFold(n, "if-"):
			return false // If-Match, If-Unmodified-Since, If-Range: ServeContent
		case logging && fastpath.EqualFold(n, "authorization"):
			return false // the access log names the user: net/http parses it
		case fastpath.EqualFold(n, "referer"):
			if f.referer == nil {
				f.referer = v
			}
		case fastpath.EqualFold(n, "user-agent"):
			if f.ua == nil {
				f.ua = v
			}
		}
	}
	return true
}

// ServeFast implements fastpath.Handler.
func (h fastHandler) ServeFast(r *fastpath.Request, w *fastpath.Writer) bool {
	s := h.s
	if len(r.Path) == 0 {
		return false // absolute form: net/http takes the target's host
	}
	site := s.fastSite(r.Host)
	if site == nil || site.cache == nil {
		return false
	}
	var f fastFields
	if !f.scan(r, s.access != nil) {
		return false
	}
	start := w.Now()
	e := site.cache.getBytes(r.Path, start)
	if e == nil {
		if e = site.load(string(r.Path), w.CanSendFile()); e == nil {
			return false
		}
	}
	closeConn := r.Close || s.cfg.NonPersistent
	code, n, ok := s.fastEntry(r, w, &f, site, e, closeConn)
	if !ok {
		return false
	}
	if closeConn {
		w.CloseAfter()
	}
	method := methodGet
	if r.Head {
		method = methodHead
	}
	end := s.deps.Now()
	s.m.request(protoHTTP11, method, code, end.Sub(start), n)
	if s.deps.Trace.Enabled() {
		s.traceFast(r, w, e, method, code, n)
	}
	if s.access != nil {
		var buf [512]byte
		var hb [48]byte
		line := appendAccess(buf[:0], accessFields[[]byte]{
			host: w.Remote().Addr().AppendTo(hb[:0]), method: r.Method, uri: r.Target,
			referer: f.referer, ua: f.ua,
		}, protoHTTP11, code, n, start, s.access.combined)
		s.access.write(line)
	}
	return true
}

// traceFast publishes a fast-path request and its answer as observe
// does for net/http's (the same summaries and header excerpts).
func (s *Server) traceFast(r *fastpath.Request, w *fastpath.Writer, e *cacheEntry, method string, code int, n int64) {
	tr := s.deps.Trace
	remote, local := w.Remote().String(), w.LocalAddr().String()
	reqHdr := http.Header{}
	for _, f := range r.Fields {
		k := textproto.CanonicalMIMEHeaderKey(string(f.Name))
		reqHdr[k] = append(reqHdr[k], string(f.Value))
	}
	tr.Publish(trace.Event{From: remote, To: local, Proto: trace.HTTPProto(protoHTTP11),
		Summary: method + " " + string(r.Target) + " " + protoHTTP11 + " Host: " + string(r.Host) + HeaderSummary(reqHdr, traceRequestHeaders)})
	respHdr := http.Header{}
	if code == http.StatusOK || code == http.StatusPartialContent {
		respHdr["Last-Modified"] = e.lastMod
	}
	tr.Publish(trace.Event{From: local, To: remote, Proto: trace.HTTPProto(protoHTTP11),
		Summary: fmt.Sprintf("%s %d %s", protoHTTP11, code, http.StatusText(code)) + HeaderSummary(respHdr, traceResponseHeaders), Bytes: int(n)})
}

// fastSite returns the file site serving host (a Host value), nil when
// the fast path can't tell (an unusual host form) or it is not a file
// site.
func (s *Server) fastSite(host []byte) *fileSite {
	if len(s.byHost) == 0 {
		return s.fastDeflt
	}
	// HostName without allocating: strip a port, a trailing dot, lower
	// case. Bracketed IPv6 literals and other forms go the general way.
	var buf [256]byte
	if len(host) > len(buf) {
		return nil
	}
	colon := -1
	for i, c := range host {
		switch c {
		case ':':
			if colon >= 0 {
				return nil
			}
			colon = i
		case '[', ']':
			return nil
		}
	}
	if colon >= 0 {
		host = host[:colon]
	}
	if len(host) > 0 && host[len(host)-1] == '.' {
		host = host[:len(host)-1]
	}
	b := buf[:len(host)]
	for i, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	if fs, ok := s.fastByHost[string(b)]; ok {
		return fs
	}
	if _, ok := s.byHost[string(b)]; ok {
		return nil // a shop
	}
	return s.fastDeflt
}

// fastEntry appends the response to a GET or HEAD for e (code and body
// bytes sent), or reports false for a request serveEntry would hand to
// http.ServeContent in a way the fast path does not reproduce (having
// appended nothing). Bodies of sendfileMin bytes and more, and every
// body of a large entry, are sent with sendfile from the site's file.
func (s *Server) fastEntry(r *fastpath.Request, w *fastpath.Writer, f *fastFields, site *fileSite, e *cacheEntry, closeConn bool) (code int, n int64, ok bool) {
	gz := false
	if e.zip && f.haveAE {
		acc, known := acceptsGzipFast(f.ae)
		if !known {
			return 0, 0, false
		}
		gz = acc
	}
	if gz && e.large {
		return 0, 0, false // net/http compresses it
	}
	v := e.variant(gz)
	if v == nil {
		return 0, 0, false
	}
	size := e.size
	if gz {
		size = int64(len(v.body))
	}
	first, last := int64(0), size-1
	switch {
	case f.haveRange:
		if f.haveINM || f.haveIMS {
			return 0, 0, false
		}
		var ok bool
		if first, last, ok = singleRange(f.rng, size); !ok {
			return 0, 0, false
		}
		code = http.StatusPartialContent
	case f.haveINM && etagListMatches(f.inm, v.etag) || !f.haveINM && f.haveIMS && e.notModifiedSince(f.ims):
		code = http.StatusNotModified
	default:
		code = http.StatusOK
	}
	send := code != http.StatusNotModified && !r.Head && last >= first
	var sf *sendFile
	if send && (e.large || !gz && last-first+1 >= sendfileMin && w.CanSendFile()) {
		if !w.CanSendFile() {
			return 0, 0, false
		}
		if sf = site.sendFileFor(e); sf == nil {
			if e.large {
				return 0, 0, false
			}
		}
	}
	switch code {
	case http.StatusPartialContent:
		w.B = append(w.B, "HTTP/1.1 206 Partial Content\r\n"...)
		w.B = append(w.B, v.common...)
		w.B = append(w.B, "Content-Range: bytes "...)
		w.B = strconv.AppendInt(w.B, first, 10)
		w.B = append(w.B, '-')
		w.B = strconv.AppendInt(w.B, last, 10)
		w.B = append(w.B, '/')
		w.B = strconv.AppendInt(w.B, size, 10)
		w.B = append(w.B, "\r\nContent-Length: "...)
		w.B = strconv.AppendInt(w.B, last-first+1, 10)
		w.B = append(w.B, "\r\nLast-Modified: "...)
		w.B = append(w.B, e.lastMod[0]...)
		w.B = append(w.B, "\r\n"...)
	case http.StatusNotModified:
		w.B = append(w.B, v.notMod...)
	default:
		w.B = append(w.B, v.ok...)
	}
	w.B = append(w.B, s.altSvc...)
	w.B = w.AppendDate(w.B)
	if closeConn {
		w.B = append(w.B, "Connection: close\r\n"...)
	}
	w.B = append(w.B, "\r\n"...)
	if !send {
		return code, 0, true
	}
	if sf != nil {
		w.SendFile(sf.fd, first, last-first+1, sf)
	} else {
		w.Body(v.body[first : last+1])
	}
	return code, last - first + 1, true
}

// singleRange parses a Range value naming one satisfiable byte range of
// a body of size bytes ("bytes=a-b", "bytes=a-", "bytes=-n"); anything
// else (several ranges, unsatisfiable, odd spacing) is not ok.
func singleRange(v []byte, size int64) (first, last int64, ok bool) {
	const p = "bytes="
	if size == 0 || len(v) <= len(p) || string(v[:len(p)]) != p {
		return 0, 0, false
	}
	v = v[len(p):]
	dash := -1
	for i, c := range v {
		switch {
		case c == '-' && dash < 0:
			dash = i
		case c < '0' || c > '9':
			return 0, 0, false
		}
	}
	if dash < 0 || len(v) > 30 {
		return 0, 0, false
	}
	a, b := v[:dash], v[dash+1:]
	num := func(d []byte) int64 {
		var n int64
		for _, c := range d {
			n = n*10 + int64(c-'0')
		}
		return n
	}
	switch {
	case len(a) == 0 && len(b) == 0:
		return 0, 0, false
	case len(a) == 0: // suffix
		n := num(b)
		if n == 0 {
			return 0, 0, false
		}
		return max(size-n, 0), size - 1, true
	}
	first = num(a)
	if first >= size {
		return 0, 0, false
	}
	last = size - 1
	if len(b) > 0 {
		if l := num(b); l < first {
			return 0, 0, false
		} else if l < last {
			last = l
		}
	}
	return first, last, true
}

// acceptsGzipFast is AcceptsGzip for the fast path: known false when the
// value has a form it does not parse (the general path then decides).
func acceptsGzipFast(ae []byte) (gzip, known bool) {
	for _, c := range ae {
		if c >= 0x80 || !(c == ',' || c == ';' || c == '=' || c == '.' || c == ' ' || c == '\t' || c == '*' || c == '-' ||
			'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false, false
		}
	}
	return acceptsGzip(ae), true
}
