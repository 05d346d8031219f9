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
	"log/slog"
	"net"
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
	// TargetedCacheControl is the cache's target list of RFC 9213: the
	// targeted fields it obeys, first match wins (a CDN's edges list
	// ["KingCDN-Cache-Control", "CDN-Cache-Control"]). A response with a
	// valid, non-empty one of them is cached by that field's directives,
	// its Cache-Control and Expires ignored. Default: none.
	TargetedCacheControl []string `json:"targeted_cache_control,omitempty"`
	// StripTargeted removes the fields of the target list from responses
	// sent downstream: a CDN's client-facing edges set it (the directives
	// were for the CDN), its shield does not (its edges need them).
	StripTargeted bool `json:"strip_targeted,omitempty"`
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
	for i, f := range c.TargetedCacheControl {
		c.TargetedCacheControl[i] = http.CanonicalHeaderKey(f)
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
		c.traceDecision(r, trace.CacheMiss, key)
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
		c.traceDecision(r, trace.CacheHit, key+" stale-while-revalidate")
		c.serveEntry(w, r, e, now, csHit+"; detail=stale-while-revalidate", true)
		return
	default:
		validate = true
	}
	if !validate {
		c.st.hits.Add(1)
		c.traceDecision(r, trace.CacheHit, key)
		c.serveEntry(w, r, e, now, csHit, false)
		return
	}
	if reqCC.OnlyIfCached() {
		c.gatewayTimeout(w, why)
		return
	}
	c.traceDecision(r, trace.CacheRevalidate, key)
	c.validate(w, r, e, &reqCC, why, staleness)
}

// traceDecision publishes the cache's decision on r (client to cache).
func (c *Cache) traceDecision(r *http.Request, typ, key string) {
	if !c.deps.Trace.Enabled() {
		return
	}
	to := r.Host
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		to = a.String()
	}
	c.deps.Trace.Publish(trace.Event{Type: typ, From: r.RemoteAddr, To: to, Proto: trace.HTTPProto(r.Proto), Summary: key})
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
	c.stripTargeted(h)
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
