// Package cache is an HTTP cache that follows RFC 9111 (HTTP Caching) as a
// shared cache, with the stale-while-revalidate and stale-if-error
// extensions of RFC 5861 and the Cache-Status header of RFC 9211.
//
// A Cache is an http.Handler in front of an upstream http.RoundTripper (the
// origin). It stores only what section 3 allows, computes freshness
// (section 4.2: s-maxage, max-age, Expires, then a heuristic of 10% of the
// time since Last-Modified) and Age (section 4.2.3), honours request and
// response directives, validates stale responses with conditional requests
// and updates the stored header from a 304 (section 4.3.4), selects
// variants by Vary (section 4.1), invalidates after unsafe methods (section
// 4.4), answers HEAD and Range requests from a stored complete GET response,
// and coalesces concurrent misses for one URI into one origin request.
//
// Storage is a memory tier with a byte budget and LRU eviction, and an
// optional disk tier that survives restarts. Purge by URL or prefix and
// statistics are served by AdminHandler.
package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
)

// Config configures a Cache. Zero fields take the documented defaults.
type Config struct {
	// Name identifies this cache in Cache-Status. Default "applayer".
	Name string `json:"name,omitempty"`
	// MaxBytes is the memory tier's budget. Default 256 MiB.
	MaxBytes int64 `json:"max_bytes,omitempty"`
	// MaxObjectBytes is the largest body stored; larger ones are passed
	// through. Default 16 MiB.
	MaxObjectBytes int64 `json:"max_object_bytes,omitempty"`
	// Dir enables the disk tier in this directory. Default: none.
	Dir string `json:"dir,omitempty"`
	// MaxDiskBytes is the disk tier's budget. Default 1 GiB.
	MaxDiskBytes int64 `json:"max_disk_bytes,omitempty"`
	// HeuristicFraction of the time since Last-Modified is the heuristic
	// freshness lifetime. Default 0.1.
	HeuristicFraction float64 `json:"heuristic_fraction,omitempty"`
	// MaxHeuristic caps heuristic freshness. Default 24h.
	MaxHeuristic config.Duration `json:"max_heuristic,omitempty"`
	// FetchTimeout bounds one origin request, body included. Default 60s.
	FetchTimeout config.Duration `json:"fetch_timeout,omitempty"`
	// LinkRate is the access link's rate in bits/s, for the utilisation
	// statistic. Default 15.4e6 (the chapter's example).
	LinkRate float64 `json:"link_rate,omitempty"`
}

func (c *Config) defaults() {
	if c.Name == "" {
		c.Name = "applayer"
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 256 << 20
	}
	if c.MaxObjectBytes <= 0 {
		c.MaxObjectBytes = 16 << 20
	}
	if c.MaxDiskBytes <= 0 {
		c.MaxDiskBytes = 1 << 30
	}
	if c.HeuristicFraction <= 0 {
		c.HeuristicFraction = 0.1
	}
	if c.MaxHeuristic <= 0 {
		c.MaxHeuristic = config.Duration(24 * time.Hour)
	}
	if c.FetchTimeout <= 0 {
		c.FetchTimeout = config.Duration(60 * time.Second)
	}
	if c.LinkRate <= 0 {
		c.LinkRate = 15.4e6
	}
}

// Cache is an RFC 9111 shared HTTP cache in front of an upstream.
type Cache struct {
	cfg      Config
	deps     service.Deps
	log      *slog.Logger
	upstream http.RoundTripper
	mem      *memStore
	disk     *diskStore
	m        *metrics
	start    time.Time

	fmu     sync.Mutex
	flights map[string]*flight
	reval   map[string]bool // keys being revalidated in the background

	lmu   sync.Mutex
	large map[string]time.Time // objects found too large to store, when (passRange)

	bg     sync.WaitGroup
	bgCtx  context.Context
	cancel context.CancelFunc
	closed atomic.Bool

	st     counters
	chunks sync.Pool // 32 KiB copy buffers
}

type counters struct {
	requests, hits, misses, revalidated, stale, bypass atomic.Int64
	originRequests                                     atomic.Int64
	bytesCache, bytesOrigin                            atomic.Int64
}

// flight is one origin fetch that concurrent misses wait for. When the
// response is being stored, the fetching request publishes it (status,
// header and the body as it arrives) so waiters stream it too.
type flight struct {
	done    chan struct{}
	waiters atomic.Int32
	stored  bool
	err     error

	ready chan struct{} // closed by start: the response streams
	// set by start, then read-only:
	code  int
	hdr   http.Header // as sent upstream of us (without our Cache-Status)
	names []string    // the response's Vary
	vkey  string      // the fetching request's secondary key

	mu   sync.Mutex
	buf  []byte        // append-only: bytes below len never change
	more chan struct{} // closed and replaced when buf grows or the body ends
	end  int           // 0 while streaming, streamOK or streamFailed
}

const (
	streamOK = 1 + iota
	streamFailed
	// streamTooLarge: a body of unknown length outgrew MaxObjectBytes, so
	// it is not stored and no longer published; waiters fetch the rest
	// themselves (resume).
	streamTooLarge
)

func newFlight() *flight {
	return &flight{done: make(chan struct{}), ready: make(chan struct{}), more: make(chan struct{})}
}

// start publishes the response's head to the waiters.
func (f *flight) start(code int, h http.Header, r *http.Request) {
	f.code, f.hdr = code, h
	f.names, _ = varyNames(h)
	f.vkey = VaryKey(f.names, r.Header)
	close(f.ready)
}

// grow publishes the body received so far.
func (f *flight) grow(buf []byte) {
	f.mu.Lock()
	f.buf = buf
	close(f.more)
	f.more = make(chan struct{})
	f.mu.Unlock()
}

// finish ends the published body (a no-op once ended).
func (f *flight) finish(end int) {
	f.mu.Lock()
	if f.end == 0 {
		f.end = end
		close(f.more)
	}
	f.mu.Unlock()
}

// follow serves a waiter the response its flight is streaming. It returns
// false, having written nothing, when the response doesn't apply to r
// (another Vary selection).
func (c *Cache) follow(w http.ResponseWriter, r *http.Request, f *flight, status string) bool {
	if VaryKey(f.names, r.Header) != f.vkey {
		return false
	}
	h := w.Header()
	for k, v := range f.hdr {
		h[k] = v
	}
	h["Cache-Status"] = c.cacheStatus(f.hdr["Cache-Status"], status+"; "+csDetailColl)
	c.st.hits.Add(1)
	noSniff(h)
	w.WriteHeader(f.code)
	off := 0
	for {
		f.mu.Lock()
		b, end, more := f.buf[off:], f.end, f.more
		f.mu.Unlock()
		if len(b) > 0 {
			n, err := w.Write(b)
			c.st.bytesCache.Add(int64(n))
			if err != nil {
				return true
			}
			flush(w) // what arrived goes out now, not with the next part
			off += len(b)
			continue
		}
		switch end {
		case streamOK:
			return true
		case streamTooLarge:
			c.resume(w, r, f, off)
			return true
		case streamFailed:
			// The origin's body broke off: so does ours, so the client
			// sees a truncated response, not a short complete one.
			panic(http.ErrAbortHandler)
		}
		select {
		case <-more:
		case <-r.Context().Done():
			return true
		}
	}
}

// resume finishes a waiter's response whose flight stopped publishing
// after off bytes (a body of unknown length too large to store): the rest
// is fetched with a Range request made conditional on the response's
// strong ETag (If-Range), so the client gets one consistent
// representation. Without a strong ETag, or when the origin doesn't answer
// with exactly that range, the waiter's response is aborted (truncated,
// never short-but-complete).
func (c *Cache) resume(w http.ResponseWriter, r *http.Request, f *flight, off int) {
	etag := ""
	if vs := f.hdr["Etag"]; len(vs) == 1 && strings.HasPrefix(vs[0], `"`) {
		etag = vs[0]
	}
	if etag == "" {
		panic(http.ErrAbortHandler)
	}
	out, cancel := c.outbound(r)
	defer cancel()
	stripClientConditionals(out.Header)
	out.Header["Range"] = []string{"bytes=" + strconv.Itoa(off) + "-"}
	out.Header["If-Range"] = []string{etag}
	res, err := c.roundTrip(out)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	defer res.Body.Close()
	cr := res.Header.Get("Content-Range")
	if res.StatusCode != http.StatusPartialContent || !strings.HasPrefix(cr, "bytes "+strconv.Itoa(off)+"-") ||
		res.Header.Get("Etag") != etag {
		panic(http.ErrAbortHandler)
	}
	n, err := io.Copy(w, res.Body)
	c.st.bytesOrigin.Add(n)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
}

// New returns a cache in front of upstream, which receives every request
// the cache forwards (absolute URL in r.URL, hop-by-hop fields removed).
func New(cfg Config, upstream http.RoundTripper, deps service.Deps) (*Cache, error) {
	if upstream == nil {
		return nil, errors.New("cache: no upstream")
	}
	cfg.defaults()
	deps = deps.Defaults()
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	c := &Cache{cfg: cfg, deps: deps, log: deps.Logger, upstream: upstream, mem: newMemStore(cfg.MaxBytes),
		m: m, start: deps.Now(), flights: map[string]*flight{}, reval: map[string]bool{},
		large: map[string]time.Time{}}
	c.bgCtx, c.cancel = context.WithCancel(context.Background())
	c.chunks.New = func() any { b := make([]byte, 32<<10); return &b }
	if cfg.Dir != "" {
		d, err := openDisk(cfg.Dir, cfg.MaxDiskBytes)
		if err != nil {
			return nil, err
		}
		c.disk = d
		c.mem.clock = d
	}
	if err := m.register(c); err != nil {
		return nil, err
	}
	return c, nil
}

// Close stops background revalidations and waits for them.
func (c *Cache) Close() {
	c.closed.Store(true)
	c.cancel()
	c.bg.Wait()
}

// Purge removes every stored response for the URL; it returns how many.
func (c *Cache) Purge(rawURL string) int {
	k, ok := keyOfURL(rawURL)
	if !ok {
		return 0
	}
	n := c.mem.remove(k)
	if c.disk != nil {
		if d := c.disk.remove(k); d > n {
			n = d
		}
	}
	return n
}

// PurgePrefix removes every stored response whose URL starts with prefix.
func (c *Cache) PurgePrefix(prefix string) int {
	k, ok := keyOfURL(prefix)
	if !ok {
		k = prefix
	}
	if !strings.HasSuffix(prefix, "/") && strings.HasSuffix(k, "/") && !strings.HasSuffix(strings.SplitN(prefix, "?", 2)[0], "/") {
		k = strings.TrimSuffix(k, "/") // "http://h" must match "http://h2/..." only by prefix
	}
	n := c.mem.removePrefix(k)
	if c.disk != nil {
		if d := c.disk.removePrefix(k); d > n {
			n = d
		}
	}
	return n
}

func keyOfURL(raw string) (string, bool) {
	r, err := http.NewRequest(http.MethodGet, raw, nil)
	if err != nil || r.URL.Host == "" {
		return "", false
	}
	return Key(r), true
}

func (c *Cache) now() time.Time { return c.deps.Now() }

// status values for Cache-Status (RFC 9211).
const (
	csHit        = "hit"
	csURIMiss    = "fwd=uri-miss"
	csVaryMiss   = "fwd=vary-miss"
	csStale      = "fwd=stale"
	csRequest    = "fwd=request"
	csMethod     = "fwd=method"
	csBypass     = "fwd=bypass"
	csDetailColl = "collapsed"
)

// ServeHTTP answers r from the cache or the upstream.
func (c *Cache) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.st.requests.Add(1)
	now := c.now()
	reqCC := parseCC(r.Header["Cache-Control"])
	if _, ok := r.Header["Cache-Control"]; !ok && pragmaNoCache(r.Header) {
		reqCC.flags |= ccNoCache
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	default:
		c.forwardUnsafe(w, r)
		return
	}
	key := Key(r)
	e, anyVariant := c.lookup(key, r.Header)
	if e == nil {
		if reqCC.OnlyIfCached() {
			c.gatewayTimeout(w, csURIMiss)
			return
		}
		miss := csURIMiss
		if anyVariant {
			miss = csVaryMiss
		}
		c.miss(w, r, key, &reqCC, miss)
		return
	}
	age := e.currentAge(now)
	fresh := e.lifetime > age
	staleness := age - e.lifetime
	validate, why := false, csStale
	switch {
	case e.cc.NoCache():
		validate, why = true, csStale
	case reqCC.NoCache() && !(fresh && e.cc.Immutable()):
		validate, why = true, csRequest
	case reqCC.MaxAge >= 0 && age > time.Duration(reqCC.MaxAge)*time.Second:
		validate, why = true, csRequest
	case reqCC.MinFresh >= 0 && e.lifetime-age < time.Duration(reqCC.MinFresh)*time.Second:
		validate, why = true, csRequest
	case fresh:
	case !e.mustRevalidate() && (reqCC.MaxStaleAny() || reqCC.MaxStale >= 0 && staleness <= time.Duration(reqCC.MaxStale)*time.Second):
		// the client accepts it stale
	case !e.mustRevalidate() && e.cc.StaleWhileRevalidate >= 0 && staleness <= time.Duration(e.cc.StaleWhileRevalidate)*time.Second:
		c.revalidateInBackground(r, e)
		c.st.stale.Add(1)
		c.st.hits.Add(1)
		c.serveEntry(w, r, e, now, csHit+"; detail=stale-while-revalidate", true)
		return
	default:
		validate = true
	}
	if !validate {
		c.st.hits.Add(1)
		c.serveEntry(w, r, e, now, csHit, false)
		return
	}
	if reqCC.OnlyIfCached() {
		c.gatewayTimeout(w, why)
		return
	}
	c.validate(w, r, e, &reqCC, why, staleness)
}

func pragmaNoCache(h http.Header) bool {
	for _, v := range h["Pragma"] {
		if strings.Contains(strings.ToLower(v), "no-cache") {
			return true
		}
	}
	return false
}

// lookup finds the stored response for key selected by the request's
// header: memory tier first, then the disk tier (promoting a disk hit).
func (c *Cache) lookup(key string, h http.Header) (*entry, bool) {
	e, anyV := c.mem.get(key, h)
	if e != nil || c.disk == nil {
		return e, anyV
	}
	if e = c.disk.get(key, h); e != nil {
		c.derive(e)
		c.mem.put(e)
		return e, true
	}
	return nil, anyV
}

func (c *Cache) gatewayTimeout(w http.ResponseWriter, fwd string) {
	w.Header()["Cache-Status"] = []string{c.cfg.Name + "; " + fwd + "; detail=only-if-cached"}
	http.Error(w, "504 not in cache (only-if-cached)", http.StatusGatewayTimeout)
}

func (c *Cache) cacheStatus(prev []string, v string) []string {
	s := c.cfg.Name + "; " + v
	if len(prev) == 0 {
		return []string{s}
	}
	return append(prev[:len(prev):len(prev)], s)
}

// serveEntry writes a stored response, answering the request's own
// conditional and range headers from it.
func (c *Cache) serveEntry(w http.ResponseWriter, r *http.Request, e *entry, now time.Time, status string, stale bool) {
	h := w.Header()
	for k, v := range e.header {
		h[k] = v
	}
	age := e.currentAge(now)
	h["Age"] = []string{strconv.FormatInt(int64(age/time.Second), 10)}
	ttl := int64((e.lifetime - age) / time.Second)
	h["Cache-Status"] = c.cacheStatus(e.header["Cache-Status"], status+"; ttl="+strconv.FormatInt(ttl, 10))
	_ = stale
	code := e.status
	body := e.body
	if code == http.StatusOK && r.Header.Get("Range") == "" && notModified(r, e) {
		delete(h, "Content-Length")
		delete(h, "Content-Type")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if code == http.StatusOK {
		if rg := r.Header.Get("Range"); rg != "" && ifRangeOK(r, e) {
			start, end, ok, multi := parseRange(rg, int64(len(body)))
			switch {
			case multi:
				// serve the whole object: allowed (RFC 9110 section 14.2)
			case !ok:
				h["Content-Range"] = []string{"bytes */" + strconv.Itoa(len(body))}
				delete(h, "Content-Length")
				delete(h, "Content-Type")
				w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
				return
			default:
				h["Content-Range"] = []string{fmt.Sprintf("bytes %d-%d/%d", start, end, len(body))}
				body = body[start : end+1]
				code = http.StatusPartialContent
			}
		}
	}
	if code != http.StatusNoContent && code != http.StatusNotModified && code >= 200 {
		h["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	noSniff(h)
	w.WriteHeader(code)
	if r.Method == http.MethodHead {
		return
	}
	n, _ := w.Write(body)
	c.st.bytesCache.Add(int64(n))
}

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

// outbound builds the request sent upstream: r's method, URL and header
// (cloned), detached from the client's cancellation but bounded by the
// fetch timeout.
func (c *Cache) outbound(r *http.Request) (*http.Request, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), c.cfg.FetchTimeout.D())
	out := r.Clone(ctx)
	out.RequestURI = ""
	// The client's "Connection: close" (or HTTP/1.0) is about its own
	// connection, not ours to the origin (hop-by-hop).
	out.Close = false
	if out.URL.Scheme == "" {
		out.URL.Scheme = "http"
	}
	if out.URL.Host == "" {
		out.URL.Host = r.Host
	}
	RemoveHopByHop(out.Header)
	return out, cancel
}

func (c *Cache) roundTrip(out *http.Request) (*http.Response, error) {
	c.st.originRequests.Add(1)
	if c.deps.Trace.Enabled() {
		c.deps.Trace.Publish(trace.Event{From: "cache", To: out.URL.Host, Proto: "http", Summary: out.Method + " " + out.URL.String()})
	}
	res, err := c.upstream.RoundTrip(out)
	if err != nil {
		return nil, fmt.Errorf("cache: origin %s: %w", out.URL.Host, err)
	}
	if res.StatusCode < 200 || res.StatusCode > 599 {
		// No final status the client could be given (net/http's server
		// refuses to write one outside 100-999; a 1xx here, e.g. 101 to a
		// request whose Upgrade was removed, is no answer): a bad gateway.
		res.Body.Close()
		return nil, fmt.Errorf("cache: origin %s: invalid status %d", out.URL.Host, res.StatusCode)
	}
	RemoveHopByHop(res.Header)
	delete(res.Header, "Content-Length") // recomputed or streamed
	if res.ContentLength >= 0 {
		res.Header["Content-Length"] = []string{strconv.FormatInt(res.ContentLength, 10)}
	}
	return res, nil
}

func (c *Cache) badGateway(w http.ResponseWriter, status string, err error) {
	c.log.Debug("origin failed", "err", err)
	w.Header()["Cache-Status"] = []string{c.cfg.Name + "; " + status + "; detail=origin-error"}
	code := http.StatusBadGateway
	if errors.Is(err, context.DeadlineExceeded) {
		code = http.StatusGatewayTimeout
	}
	http.Error(w, fmt.Sprintf("%d %s", code, http.StatusText(code)), code)
}

// forwardUnsafe passes a request with any other method through and
// invalidates the target URI (and Location / Content-Location when of the
// same origin) on a non-error response (RFC 9111 section 4.4).
func (c *Cache) forwardUnsafe(w http.ResponseWriter, r *http.Request) {
	c.st.bypass.Add(1)
	out, cancel := c.outbound(r)
	defer cancel()
	out = out.WithContext(r.Context())
	res, err := c.roundTrip(out)
	if err != nil {
		c.badGateway(w, csMethod, err)
		return
	}
	defer res.Body.Close()
	if safe := r.Method == http.MethodOptions || r.Method == http.MethodTrace; !safe && res.StatusCode < 400 {
		key := Key(r)
		c.invalidate(key)
		for _, f := range []string{"Location", "Content-Location"} {
			if v := res.Header.Get(f); v != "" {
				if k, same := keyFromURL(key, v); same {
					c.invalidate(k)
				}
			}
		}
	}
	c.stream(w, r, res, csMethod, nil, nil)
}

func (c *Cache) invalidate(key string) {
	c.mem.remove(key)
	if c.disk != nil {
		c.disk.remove(key)
	}
}

// stream copies res to w, teeing the body into a buffer of at most
// MaxObjectBytes when keep is non-nil; *keep is set to the complete body,
// or nil when it was too large or the copy failed.
//
// When f is given (a coalesced fetch being stored) and the body's length
// is known, the response is published to f's waiters as it arrives.
func (c *Cache) stream(w http.ResponseWriter, r *http.Request, res *http.Response, status string, keep *[]byte, f *flight) {
	h := w.Header()
	for k, v := range res.Header {
		h[k] = v
	}
	if f != nil && (keep == nil || res.ContentLength > c.cfg.MaxObjectBytes) {
		f = nil
	}
	if f != nil {
		f.start(res.StatusCode, res.Header.Clone(), r)
		defer f.finish(streamFailed) // unless finished well below
	}
	h["Cache-Status"] = c.cacheStatus(res.Header["Cache-Status"], status)
	noSniff(h)
	w.WriteHeader(res.StatusCode)
	var buf []byte
	if keep != nil && res.ContentLength >= 0 && res.ContentLength <= c.cfg.MaxObjectBytes {
		buf = make([]byte, 0, res.ContentLength)
	}
	// Small objects of known length are read straight into the stored
	// body; larger ones are streamed to the client while they are stored.
	direct := buf != nil && res.ContentLength <= 64<<10
	storing := keep != nil && res.ContentLength <= c.cfg.MaxObjectBytes
	clientOK := r.Method != http.MethodHead
	var total int64
	var rerr error
	if direct {
		n, err := io.ReadFull(res.Body, buf[:cap(buf)])
		buf = buf[:n]
		total = int64(n)
		if err != nil {
			rerr = err
		} else if extra, _ := res.Body.Read(make([]byte, 1)); extra > 0 {
			// the client got the declared length; just don't store it
			storing = false
		}
		if f != nil {
			f.grow(buf)
		}
		if clientOK && n > 0 {
			w.Write(buf)
		}
	} else {
		cp := c.chunks.Get().(*[]byte)
		chunk := *cp
		for {
			n, err := res.Body.Read(chunk)
			if n > 0 {
				total += int64(n)
				if storing {
					if int64(len(buf)+n) > c.cfg.MaxObjectBytes {
						storing, buf = false, nil
						if f != nil {
							f.finish(streamTooLarge)
						}
					} else {
						buf = append(buf, chunk[:n]...)
						if f != nil {
							f.grow(buf)
						}
					}
				}
				if clientOK {
					if _, werr := w.Write(chunk[:n]); werr != nil {
						clientOK = false
						if !storing {
							break
						}
					} else {
						flush(w) // stream at the origin's pace
					}
				}
			}
			if err != nil {
				if err != io.EOF {
					rerr = err
				}
				break
			}
		}
		c.chunks.Put(cp)
	}
	c.st.bytesOrigin.Add(total)
	if rerr != nil && r.Method != http.MethodHead {
		// The origin's body broke off: so does the client's response, so
		// it sees a truncated response (a chunked one would otherwise end
		// cleanly, short but complete). The waiters' follow suit.
		if f != nil {
			f.finish(streamFailed)
		}
		panic(http.ErrAbortHandler)
	}
	if f != nil && storing && rerr == nil {
		f.finish(streamOK)
	}
	if keep != nil {
		if storing && rerr == nil {
			if buf == nil {
				buf = []byte{}
			}
			*keep = buf
		} else {
			*keep = nil
		}
	}
}

// noSniff keeps net/http from inventing a Content-Type for a response
// that has none (it sniffs the body otherwise): the field passes through
// untouched, as nginx and Varnish pass it, so hits and misses agree.
func noSniff(h http.Header) {
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil
	}
}

// flush sends what w has buffered, if it can.
func flush(w http.ResponseWriter) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

// waiting reports how many requests wait for an in-flight fetch of rawURL
// (for tests).
func (c *Cache) waiting(rawURL string) int {
	k, _ := keyOfURL(rawURL)
	c.fmu.Lock()
	defer c.fmu.Unlock()
	if f := c.flights[k]; f != nil {
		return int(f.waiters.Load())
	}
	return 0
}

// revalidating reports whether a background validation is running (for
// any key when key is empty).
func (c *Cache) revalidating(key string) bool {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	if key == "" {
		return len(c.reval) > 0
	}
	return c.reval[key]
}
