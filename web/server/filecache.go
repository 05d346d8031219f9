package server

import (
	"bytes"
	"compress/gzip"
	"io/fs"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/applayer/applayer/web/h2"
)

// The small-file cache: the hot path of a static server. A GET or HEAD for
// a URL path seen before is answered from memory with precomputed header
// values (Content-Type, Content-Length, ETag, Last-Modified), without
// opening the file; the entry is revalidated by one stat (size and
// modification time) at most every Site.FileCacheValid, and dropped when
// the file changes, disappears or is replaced by a PUT.
const (
	cacheMaxFile  = 256 << 10 // larger files go through sendfile
	cacheMaxTotal = 64 << 20
)

// Shared header values: assigned into response headers, never modified.
var (
	hvBytes    = []string{"bytes"}
	hvVary     = []string{"Accept-Encoding"}
	hvGzip     = []string{"gzip"}
	condFields = []string{"Range", "If-Match", "If-Unmodified-Since", "If-Range"}
)

// cacheEntry is one cached file, immutable once published except for the
// validation time and the lazily built gzip body.
type cacheEntry struct {
	name    string // path relative to the root that was opened (index files too)
	size    int64
	mod     time.Time
	body    []byte
	ctype   []string
	etag    []string
	lastMod []string
	clen    []string
	zip     bool // compressible: Vary, and gzip when accepted

	checked atomic.Int64 // unix nanoseconds of the last stat

	push pushRefs // an HTML page's references, for server push

	gzOnce sync.Once
	gz     []byte
	gzEtag []string
	gzLen  []string

	key  string                         // the URL path it is cached under
	wire [2]atomic.Pointer[wireVariant] // the fast path's header blocks: identity, gzip

	// large: a file above cacheMaxFile, body not in memory (nil): only
	// the HTTP/1.1 fast path serves it, with sendfile(2).
	large bool
	// file is the open file the fast path sends the body from (see
	// sendFileFor), nil until needed; dropped is set once the entry has
	// left the cache (or never entered it), and its file is released.
	file    atomic.Pointer[sendFile]
	dropped atomic.Bool
}

// cost is what an entry counts against cacheMaxTotal: its body, or for a
// large file (no body in memory) a nominal 4 KiB.
func (e *cacheEntry) cost() int64 {
	if e.large {
		return 4 << 10
	}
	return e.size
}

// retire marks an entry as out of the cache and releases its file.
func (e *cacheEntry) retire() {
	e.dropped.Store(true)
	if f := e.file.Swap(nil); f != nil {
		f.Release()
	}
}

// wireVariant is one representation of a cache entry (identity or gzip)
// with its precomputed HTTP/1.1 header blocks for the fast path, each
// lacking only Date (and Connection, Alt-Svc) and the blank line.
type wireVariant struct {
	body   []byte
	etag   string
	common []byte // Content-Type, Accept-Ranges, Vary, Content-Encoding, Etag
	ok     []byte // 200 status line, common, Last-Modified, Content-Length
	notMod []byte // 304 status line, Accept-Ranges, Vary, Etag
	// The same fields for HTTP/2 (web/h2's Response.Block: HPACK
	// literals, valid on every connection): h2ok the 200's fields,
	// h2notMod the 304's.
	h2ok, h2notMod []byte
}

// variant returns the entry's identity or gzip representation (nil when
// compression failed), building its header blocks once.
func (e *cacheEntry) variant(gz bool) *wireVariant {
	i := 0
	if gz {
		i = 1
	}
	if v := e.wire[i].Load(); v != nil {
		return v
	}
	v := &wireVariant{body: e.body, etag: e.etag[0]}
	clen := e.clen[0]
	if gz {
		body, etag, gzLen := e.gzipped()
		if body == nil {
			return nil
		}
		v.body, v.etag, clen = body, etag[0], gzLen[0]
	}
	field := func(b []byte, name, value string) []byte {
		return append(append(append(append(b, name...), ": "...), value...), "\r\n"...)
	}
	var vary []byte
	if e.zip {
		vary = field(nil, "Vary", hvVary[0])
	}
	c := field(nil, "Accept-Ranges", hvBytes[0])
	if gz {
		c = field(c, "Content-Encoding", hvGzip[0])
	}
	c = field(c, "Content-Type", e.ctype[0])
	c = field(c, "Etag", v.etag)
	v.common = append(c, vary...)
	v.ok = append([]byte("HTTP/1.1 200 OK\r\n"), v.common...)
	v.ok = field(v.ok, "Last-Modified", e.lastMod[0])
	v.ok = field(v.ok, "Content-Length", clen)
	v.notMod = field([]byte("HTTP/1.1 304 Not Modified\r\n"), "Accept-Ranges", hvBytes[0])
	v.notMod = field(v.notMod, "Etag", v.etag)
	v.notMod = append(v.notMod, vary...)
	b := h2.AppendLiteral(nil, "accept-ranges", hvBytes[0])
	if gz {
		b = h2.AppendLiteral(b, "content-encoding", hvGzip[0])
	}
	b = h2.AppendLiteral(b, "content-type", e.ctype[0])
	b = h2.AppendLiteral(b, "etag", v.etag)
	if e.zip {
		b = h2.AppendLiteral(b, "vary", hvVary[0])
	}
	b = h2.AppendLiteral(b, "last-modified", e.lastMod[0])
	v.h2ok = h2.AppendLiteral(b, "content-length", clen)
	b = h2.AppendLiteral(nil, "accept-ranges", hvBytes[0])
	b = h2.AppendLiteral(b, "etag", v.etag)
	if e.zip {
		b = h2.AppendLiteral(b, "vary", hvVary[0])
	}
	v.h2notMod = b
	e.wire[i].CompareAndSwap(nil, v)
	return e.wire[i].Load()
}

// notModifiedSince applies an If-Modified-Since value.
func (e *cacheEntry) notModifiedSince(ims []byte) bool {
	if string(ims) == e.lastMod[0] {
		return true // the common case: the client sends back Last-Modified
	}
	t, err := http.ParseTime(string(ims))
	return err == nil && !e.mod.Truncate(time.Second).After(t)
}

type fileCache struct {
	valid int64 // nanoseconds an entry is trusted without a stat
	stat  func(name string) (fs.FileInfo, error)

	mu    sync.RWMutex
	m     map[string]*cacheEntry // by request URL path
	bytes int64

	open atomic.Int32 // files open for sendfile (see sendFile)
}

func newFileCache(valid time.Duration, stat func(string) (fs.FileInfo, error)) *fileCache {
	return &fileCache{valid: int64(valid), stat: stat, m: map[string]*cacheEntry{}}
}

// get returns the entry for a URL path, revalidating it when it is due.
func (c *fileCache) get(key string) *cacheEntry {
	c.mu.RLock()
	e := c.m[key]
	c.mu.RUnlock()
	return c.check(e, time.Now())
}

// getBytes is get for a key in a request's buffer (no allocation), at
// time t.
func (c *fileCache) getBytes(key []byte, t time.Time) *cacheEntry {
	c.mu.RLock()
	e := c.m[string(key)]
	c.mu.RUnlock()
	return c.check(e, t)
}

// check returns e (nil stays nil) unless a due revalidation at time t
// drops it.
func (c *fileCache) check(e *cacheEntry, t time.Time) *cacheEntry {
	if e == nil {
		return nil
	}
	now := t.UnixNano()
	if now-e.checked.Load() < c.valid {
		return e
	}
	fi, err := c.stat(e.name)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != e.size || !fi.ModTime().Equal(e.mod) {
		c.drop(e)
		return nil
	}
	e.checked.Store(now)
	return e
}

func (c *fileCache) drop(e *cacheEntry) {
	c.mu.Lock()
	if c.m[e.key] == e {
		delete(c.m, e.key)
		c.bytes -= e.cost()
	}
	c.mu.Unlock()
	e.retire()
}

// forget drops every entry read from the file name (after a PUT).
func (c *fileCache) forget(name string) {
	c.mu.Lock()
	for k, e := range c.m {
		if e.name == name {
			delete(c.m, k)
			c.bytes -= e.cost()
			e.retire()
		}
	}
	c.mu.Unlock()
}

// put publishes an entry unless the cache is full.
func (c *fileCache) put(key string, e *cacheEntry) {
	e.key = key
	e.checked.Store(time.Now().UnixNano())
	c.mu.Lock()
	if old := c.m[key]; old != nil {
		c.bytes -= old.cost()
		delete(c.m, key)
		old.retire()
	}
	in := c.bytes+e.cost() <= cacheMaxTotal
	if in {
		c.m[key] = e
		c.bytes += e.cost()
	}
	c.mu.Unlock()
	if !in {
		e.retire()
	}
}

// close releases every entry's open file.
func (c *fileCache) close() {
	c.mu.Lock()
	for k, e := range c.m {
		delete(c.m, k)
		e.retire()
	}
	c.bytes = 0
	c.mu.Unlock()
}

func newCacheEntry(name string, fi fs.FileInfo, body []byte, ctype string, zip bool) *cacheEntry {
	return &cacheEntry{
		name:    name,
		size:    fi.Size(),
		mod:     fi.ModTime(),
		body:    body,
		ctype:   []string{ctype},
		etag:    []string{ETag(fi)},
		lastMod: []string{fi.ModTime().UTC().Format(http.TimeFormat)},
		clen:    []string{strconv.FormatInt(fi.Size(), 10)},
		zip:     zip,
	}
}

// gzipped returns the compressed body and its validators, building them
// once.
func (e *cacheEntry) gzipped() (body []byte, etag, clen []string) {
	e.gzOnce.Do(func() {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
		zw.Write(e.body)
		if zw.Close() != nil {
			return
		}
		t := e.etag[0]
		e.gz = buf.Bytes()
		e.gzEtag = []string{t[:len(t)-1] + `-gz"`}
		e.gzLen = []string{strconv.Itoa(len(e.gz))}
	})
	return e.gz, e.gzEtag, e.gzLen
}

// serveEntry answers a GET or HEAD from a cache entry. Plain and
// If-None-Match / If-Modified-Since requests are answered here without
// allocating; ranges and the other preconditions go through
// http.ServeContent over the cached bytes.
func (s *fileSite) serveEntry(w http.ResponseWriter, r *http.Request, e *cacheEntry) {
	h := w.Header()
	h["Content-Type"] = e.ctype
	h["Accept-Ranges"] = hvBytes
	body, etag, clen := e.body, e.etag, e.clen
	if e.zip {
		h["Vary"] = hvVary
		if ae := r.Header["Accept-Encoding"]; len(ae) > 0 && AcceptsGzip(ae[0]) {
			if gz, gzEtag, gzLen := e.gzipped(); gz != nil {
				body, etag, clen = gz, gzEtag, gzLen
				h["Content-Encoding"] = hvGzip
			}
		}
	}
	h["Etag"] = etag
	for _, f := range condFields {
		if _, ok := r.Header[f]; ok {
			h.Del("Content-Length")
			ServeContent(w, r, e.name, e.mod, bytes.NewReader(body))
			return
		}
	}
	if notModified(r, etag[0], e.mod) {
		delete(h, "Content-Type")
		delete(h, "Content-Encoding")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if s.cfg.Push != nil {
		s.pushFor(w, r, e, e.ctype[0])
	}
	h["Last-Modified"] = e.lastMod
	h["Content-Length"] = clen
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// notModified applies If-None-Match (weak comparison) or, without it,
// If-Modified-Since, as RFC 9110 section 13.2.2 orders them.
func notModified(r *http.Request, etag string, mod time.Time) bool {
	if inm, ok := r.Header["If-None-Match"]; ok {
		for _, v := range inm {
			if etagListMatches(v, etag) {
				return true
			}
		}
		return false
	}
	ims, ok := r.Header["If-Modified-Since"]
	if !ok || len(ims) == 0 {
		return false
	}
	t, err := http.ParseTime(ims[0])
	if err != nil {
		return false
	}
	return !mod.Truncate(time.Second).After(t)
}

// etagListMatches reports whether a comma-separated If-None-Match value
// contains "*" or etag, comparing weakly (a W/ prefix is ignored).
func etagListMatches[S ~string | ~[]byte](list S, etag string) bool {
	for len(list) > 0 {
		for len(list) > 0 && (list[0] == ' ' || list[0] == '\t' || list[0] == ',') {
			list = list[1:]
		}
		if len(list) == 0 {
			break
		}
		if list[0] == '*' {
			return true
		}
		if len(list) >= 2 && list[0] == 'W' && list[1] == '/' {
			list = list[2:]
		}
		if len(list) == 0 || list[0] != '"' {
			return false // malformed: no match
		}
		end := 1
		for end < len(list) && list[end] != '"' {
			end++
		}
		if end == len(list) {
			return false
		}
		tag := list[:end+1]
		if string(tag) == etag || (len(etag) > 2 && etag[0] == 'W' && etag[2:] == string(tag)) {
			return true
		}
		list = list[end+1:]
	}
	return false
}
