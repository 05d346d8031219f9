package server

import (
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/net/http2/hpack"

	"github.com/applayer/applayer/web/h2"
)

// The HTTP/2 counterpart of the fast path: body-less GET and HEAD for
// files in a site's small-file cache are answered on the HTTP/2
// connection's goroutine (web/h2), with the same conditional GET, single
// range and gzip rules as fastEntry, counted in the metrics and the
// access log. Pages the site pushes for, traced requests and everything
// the rules do not cover go to the http.Handler.

const protoHTTP2 = "HTTP/2.0"

// fastH2 answers h2.Fast requests for s.
type fastH2 struct{ s *Server }

// Static header fields of the fast answers.
var (
	hfAcceptRanges = hpack.HeaderField{Name: "accept-ranges", Value: "bytes"}
	hfVary         = hpack.HeaderField{Name: "vary", Value: "Accept-Encoding"}
	hfGzip         = hpack.HeaderField{Name: "content-encoding", Value: "gzip"}
)

// ServeH2 implements h2.Fast.
func (h fastH2) ServeH2(r *h2.Request, w *h2.Response) bool {
	s := h.s
	if s.deps.Trace.Enabled() || !strings.HasPrefix(r.Path, "/") || strings.ContainsAny(r.Path, "?%#") {
		return false
	}
	site := s.fastSite([]byte(r.Authority))
	if site == nil || site.cache == nil || site.cfg.Push != nil {
		return false
	}
	var f fastFields
	for _, fl := range r.Fields {
		v := []byte(fl.Value)
		switch fl.Name {
		case "accept-encoding":
			if f.haveAE {
				return false
			}
			f.ae, f.haveAE = v, true
		case "if-none-match":
			if f.haveINM {
				return false
			}
			f.inm, f.haveINM = v, true
		case "if-modified-since":
			if f.haveIMS {
				return false
			}
			f.ims, f.haveIMS = v, true
		case "range":
			if f.haveRange {
				return false
			}
			f.rng, f.haveRange = v, true
		case "if-match", "if-unmodified-since", "if-range":
			return false
		case "authorization":
			if s.access != nil {
				return false
			}
		case "referer":
			f.referer = v
		case "user-agent":
			f.ua = v
		}
	}
	start := s.deps.Now()
	e := site.cache.getBytes([]byte(r.Path), start)
	if e == nil {
		if e = site.load(r.Path, false); e == nil {
			return false
		}
	}
	if e.large {
		return false // its body is not in memory: net/http sends it
	}
	gz := false
	if e.zip && f.haveAE {
		acc, known := acceptsGzipFast(f.ae)
		if !known {
			return false
		}
		gz = acc
	}
	v := e.variant(gz)
	if v == nil {
		return false
	}
	body := v.body
	common := func() {
		w.Fields = append(w.Fields, hfAcceptRanges)
		if gz {
			w.Fields = append(w.Fields, hfGzip)
		}
		w.Fields = append(w.Fields, hpack.HeaderField{Name: "content-type", Value: e.ctype[0]},
			hpack.HeaderField{Name: "etag", Value: v.etag})
		if e.zip {
			w.Fields = append(w.Fields, hfVary)
		}
	}
	switch {
	case f.haveRange:
		if f.haveINM || f.haveIMS {
			return false
		}
		first, last, ok := singleRange(f.rng, int64(len(body)))
		if !ok {
			return false
		}
		w.Status = http.StatusPartialContent
		common()
		w.Fields = append(w.Fields,
			hpack.HeaderField{Name: "content-range", Value: "bytes " + strconv.FormatInt(first, 10) + "-" +
				strconv.FormatInt(last, 10) + "/" + strconv.Itoa(len(body))},
			hpack.HeaderField{Name: "content-length", Value: strconv.FormatInt(last-first+1, 10)},
			hpack.HeaderField{Name: "last-modified", Value: e.lastMod[0]})
		body = body[first : last+1]
	case f.haveINM && etagListMatches(f.inm, v.etag) || !f.haveINM && f.haveIMS && e.notModifiedSince(f.ims):
		w.Status = http.StatusNotModified
		w.Block = v.h2notMod
		body = nil
	default:
		w.Status = http.StatusOK
		w.Block = v.h2ok
	}
	if s.altSvcValue != "" {
		w.Fields = append(w.Fields, hpack.HeaderField{Name: "alt-svc", Value: s.altSvcValue})
	}
	w.Body = body
	n := int64(len(body))
	if r.Method == methodHead {
		n = 0
	}
	s.m.request(protoHTTP2, r.Method, w.Status, s.deps.Now().Sub(start), n)
	if s.access != nil {
		var buf [512]byte
		host := r.Remote.String()
		if i := strings.LastIndexByte(host, ':'); i >= 0 {
			host = strings.Trim(host[:i], "[]")
		}
		line := appendAccess(buf[:0], accessFields[[]byte]{
			host: []byte(host), method: []byte(r.Method), uri: []byte(r.Path), referer: f.referer, ua: f.ua,
		}, protoHTTP2, w.Status, n, start, s.access.combined)
		s.access.write(line)
	}
	return true
}
