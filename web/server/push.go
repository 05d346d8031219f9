package server

import (
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/applayer/applayer/web/htmlrefs"
)

// pushHost stands for the page's own site when its references are
// resolved once per cached version (the request's Host varies).
const pushHost = "push.invalid"

// pushRefs are the same-site references of a cached HTML page, found once.
type pushRefs struct {
	once sync.Once
	refs []*url.URL
}

// pushFor pushes the objects configured for (or referenced by) an HTML page
// before its 200 answer, over HTTP/2 to clients that allow push. e is the
// page's cache entry (nil when it is not cached: then only configured
// paths are pushed).
func (s *fileSite) pushFor(w http.ResponseWriter, r *http.Request, e *cacheEntry, ctype string) {
	pc := s.cfg.Push
	if pc == nil || r.ProtoMajor != 2 || r.Method != http.MethodGet || !strings.HasPrefix(ctype, "text/html") {
		return
	}
	p, ok := w.(http.Pusher)
	if !ok {
		return
	}
	targets, listed := pc.Paths[r.URL.Path]
	if !listed && pc.Refs && e != nil {
		targets = e.sameSiteRefs(r)
	}
	if len(targets) == 0 {
		return
	}
	var opts *http.PushOptions
	if ae, ok := r.Header["Accept-Encoding"]; ok {
		// The pushed requests negotiate gzip as the page's did.
		opts = &http.PushOptions{Header: http.Header{"Accept-Encoding": ae}}
	}
	for i, t := range targets {
		if i == pc.Max {
			return
		}
		if t == r.URL.Path {
			continue
		}
		// ErrNotSupported (push disabled by the client, or a push on a
		// pushed stream), or the client's stream limit: stop either way.
		if err := p.Push(t, opts); err != nil {
			return
		}
		if s.pushes != nil {
			s.pushes.Inc()
		}
	}
}

// sameSiteRefs returns the paths (with query) of the objects a cached HTML
// page references on its own site: relative references, and absolute ones
// naming the request's host.
func (e *cacheEntry) sameSiteRefs(r *http.Request) []string {
	e.push.once.Do(func() {
		base := &url.URL{Scheme: "http", Host: pushHost, Path: r.URL.Path}
		e.push.refs = htmlrefs.Extract(base, e.body)
	})
	host := HostName(r.Host)
	var out []string
	for _, u := range e.push.refs {
		if u.Host != pushHost && HostName(u.Host) != host {
			continue
		}
		if t := u.RequestURI(); strings.HasPrefix(t, "/") {
			out = append(out, t)
		}
	}
	return out
}

// hasCondFields reports whether r carries a range or precondition field
// that http.ServeContent must judge.
func hasCondFields(r *http.Request) bool {
	for _, f := range condFields {
		if _, ok := r.Header[f]; ok {
			return true
		}
	}
	return false
}
