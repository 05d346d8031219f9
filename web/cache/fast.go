package cache

import (
	"net/http"
	"sort"
	"strconv"
)

// FastHit is the allocation-free hit path for servers that parse requests
// themselves. key is the primary key (as Key returns it). If a stored
// response for key can be served as is to a plain GET or HEAD (no request
// directives, validators, ranges or Vary), FastHit appends the complete
// response header to dst (status line through the blank line, with Age,
// Cache-Status and a Via entry added) and returns it with the body to send
// (nil for HEAD). Otherwise ok is false and the caller takes the general
// path (ServeHTTP).
func (c *Cache) FastHit(key []byte, head bool, via string, dst []byte) (hdr, body []byte, ok bool) {
	e := c.mem.getFast(key)
	if e == nil || e.cc.NoCache() {
		return dst, nil, false
	}
	now := c.now()
	age := e.currentAge(now)
	if e.lifetime <= age {
		return dst, nil, false
	}
	w := e.wirePrefix(c)
	c.st.requests.Add(1)
	c.st.hits.Add(1)
	dst = append(dst, w.prefix...)
	dst = append(dst, "Age: "...)
	dst = strconv.AppendInt(dst, int64(age/1e9), 10)
	dst = append(dst, "\r\nCache-Status: "...)
	if w.priorStatus != "" {
		dst = append(dst, w.priorStatus...)
		dst = append(dst, ", "...)
	}
	dst = append(dst, c.cfg.Name...)
	dst = append(dst, "; hit; ttl="...)
	dst = strconv.AppendInt(dst, int64((e.lifetime-age)/1e9), 10)
	if via != "" {
		dst = append(dst, "\r\nVia: "...)
		if w.priorVia != "" {
			dst = append(dst, w.priorVia...)
			dst = append(dst, ", "...)
		}
		dst = append(dst, via...)
	}
	dst = append(dst, "\r\n\r\n"...)
	if head {
		return dst, nil, true
	}
	c.st.bytesCache.Add(int64(len(e.body)))
	return dst, e.body, true
}

// wire is an entry's precomputed response header for FastHit.
type wire struct {
	prefix      []byte // status line, stored fields, Content-Length
	priorStatus string // stored Cache-Status members (from upstream caches)
	priorVia    string
}

func (e *entry) wirePrefix(c *Cache) *wire {
	if w := e.wire.Load(); w != nil {
		return w
	}
	w := &wire{}
	b := append([]byte("HTTP/1.1 "), strconv.Itoa(e.status)...)
	b = append(b, ' ')
	b = append(b, http.StatusText(e.status)...)
	b = append(b, "\r\n"...)
	keys := make([]string, 0, len(e.header))
	for k := range e.header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vs := e.header[k]
		if c.isStripped(k) {
			continue
		}
		switch k {
		case "Age", "Content-Length":
			continue
		case "Cache-Status":
			w.priorStatus = joinValues(vs)
			continue
		case "Via":
			w.priorVia = joinValues(vs)
			continue
		}
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	if e.status != http.StatusNoContent && e.status != http.StatusNotModified {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(e.body)), 10)
		b = append(b, "\r\n"...)
	}
	w.prefix = b
	e.wire.CompareAndSwap(nil, w)
	return e.wire.Load()
}

func joinValues(vs []string) string {
	s := ""
	for i, v := range vs {
		if i > 0 {
			s += ", "
		}
		s += v
	}
	return s
}

// getFast returns the only stored variant of key when it has no Vary.
func (s *memStore) getFast(key []byte) *entry {
	s.mu.Lock()
	vs := s.m[string(key)]
	var e *entry
	if len(vs) == 1 && len(vs[0].varyNames) == 0 {
		e = vs[0]
		if s.head.next != e {
			s.unlink(e)
			s.pushFront(e)
		}
	}
	s.mu.Unlock()
	if e != nil && s.clock != nil {
		if it := e.disk.Load(); it != nil {
			s.clock.touch(it)
		}
	}
	return e
}
