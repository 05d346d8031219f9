// Package edge is a CDN edge server: the web cache in reverse mode
// (web/proxy with web/cache) in front of the content provider's origin,
// or of a shield cache that fronts the origin for a whole cluster.
//
// What it adds to the reverse proxy:
//
//   - Pull and push: objects are pulled on demand (a miss fetches from
//     upstream, and concurrent misses for one object are coalesced into
//     one fetch, web/cache's collapsing), or pushed ahead: the prefetch
//     list (config, or POST /cdn/prefetch) is loaded into the cache
//     before clients ask, like Netflix's off-peak fill.
//   - An origin shield: an edge in a cluster fetches through the shield
//     (Upstreams names it), so the origin sees one request per object for
//     the whole CDN rather than one per edge. A shield is an edge with
//     Shield set.
//   - RFC 9213: CDN-Cache-Control (and the CDN's own targeted field,
//     e.g. KingCDN-Cache-Control, listed first) overrides Cache-Control
//     for the CDN's caches; client-facing edges do not forward those
//     fields downstream, shields keep them for their edges.
//   - Ranges: an edge fetches whole objects and answers ranges from the
//     stored copy (web/cache's choice): DASH segments are small (a few
//     MB), so one whole copy answers every range a player asks for, where
//     stored 206 parts would need merging and would miss on overlaps.
//     Objects over the cache's max_object_bytes are not stored and
//     their ranges pass through to upstream.
//   - 1xx interim responses (103 Early Hints) are forwarded as they come;
//     stale-if-error (RFC 5861) serves a stored copy when upstream fails.
//   - A control listener for the request router: GET /cdn/health (a
//     Report: healthy, load, hit and byte counts), POST /cdn/purge?url=U
//     or ?prefix=P, POST /cdn/prefetch, /metrics and /cache/stats.
//
// Load is the open client connections over Capacity: the router stops
// sending new clients to an edge above its cluster's max_load.
package edge

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/web/cache"
	"github.com/applayer/applayer/web/proxy"
)

// DefaultControlPort is the control listener's customary port in the lab.
const DefaultControlPort = 8081

// Config configures an edge. Zero fields take the documented defaults.
type Config struct {
	// Name is the edge's name in Via, Cache-Status and reports. Default
	// "edge".
	Name string `json:"name,omitempty"`
	// Addr is the HTTP listen address. Default "127.0.0.1:80".
	Addr string `json:"addr,omitempty"`
	// Control is the control listener (loopback): health, load, purge,
	// prefetch, metrics. Default: none (the router cannot check it).
	Control string `json:"control,omitempty"`
	// Upstreams are where misses go, host:port: the cluster's shield, or
	// the origin itself. Several are balanced with health checks.
	Upstreams []string `json:"upstreams"`
	// Shield marks a shield cache: it keeps the targeted cache-control
	// fields in its responses, for the edges behind it.
	Shield bool `json:"shield,omitempty"`
	// Capacity is how many open client connections count as full load.
	// Default 512.
	Capacity int `json:"capacity,omitempty"`
	// Prefetch are URLs loaded into the cache at start (push).
	Prefetch []string `json:"prefetch,omitempty"`
	// AllowedClients are the client networks (CIDR). Default loopback.
	AllowedClients []string `json:"allowed_clients,omitempty"`
	// Cache configures the cache. Defaults differ from the web cache's:
	// targeted_cache_control ["CDN-Cache-Control"], max_object_bytes
	// 64 MiB, max_bytes 512 MiB.
	Cache cache.Config `json:"cache,omitempty"`
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if len(c.Upstreams) == 0 {
		return errors.New("upstreams: at least one (the shield or the origin) is needed")
	}
	for i, u := range c.Upstreams {
		if _, _, err := net.SplitHostPort(u); err != nil {
			return fmt.Errorf("upstreams[%d]: %w", i, err)
		}
	}
	if c.Capacity < 0 {
		return fmt.Errorf("capacity: %d is negative", c.Capacity)
	}
	if c.Control != "" {
		if err := (obs.AdminConfig{Addr: c.Control}).Validate(); err != nil {
			return fmt.Errorf("control: %w", err)
		}
	}
	return nil
}

func (c *Config) defaults() {
	if c.Name == "" {
		c.Name = "edge"
	}
	if c.Addr == "" {
		c.Addr = "127.0.0.1:80"
	}
	if c.Capacity == 0 {
		c.Capacity = 512
	}
	if len(c.Cache.TargetedCacheControl) == 0 {
		c.Cache.TargetedCacheControl = []string{"CDN-Cache-Control"}
	}
	c.Cache.StripTargeted = !c.Shield
	if c.Cache.MaxObjectBytes == 0 {
		c.Cache.MaxObjectBytes = 64 << 20
	}
	if c.Cache.MaxBytes == 0 {
		c.Cache.MaxBytes = 512 << 20
	}
	if c.Cache.Name == "" {
		c.Cache.Name = c.Name
	}
}

// Server is one edge (or shield).
type Server struct {
	cfg   Config
	deps  service.Deps
	log   *slog.Logger
	px    *proxy.Server
	ctl   *obs.Admin
	m     *metrics
	drain atomic.Bool

	wg   sync.WaitGroup
	once service.Once
}

type metrics struct {
	prefetch *prometheus.CounterVec
	purged   *prometheus.CounterVec
}

// New returns an edge for cfg; Start binds it.
func New(cfg Config, deps service.Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	cfg.defaults()
	deps = deps.Defaults()
	fwd := false
	px, err := proxy.New(proxy.Config{
		Addr: cfg.Addr, Name: cfg.Name, Forward: &fwd, AllowedClients: cfg.AllowedClients,
		Sites: []proxy.Site{{Host: "*", Origins: cfg.Upstreams}},
		Cache: cfg.Cache,
	}, deps)
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger.With("service", "cdn-edge", "edge", cfg.Name), px: px}
	const ns, sub = "applayer", "cdn_edge"
	s.m = &metrics{
		prefetch: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "prefetches_total", Help: "Objects pushed into the cache ahead of clients, by result."}, []string{"result"}),
		purged:   prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "purges_total", Help: "Purge requests, by kind (url, prefix)."}, []string{"kind"}),
	}
	for _, c := range []prometheus.Collector{s.m.prefetch, s.m.purged} {
		if err := deps.Metrics.Register(c); err != nil {
			return nil, fmt.Errorf("edge: metrics: %w", err)
		}
	}
	if cfg.Control != "" {
		a, err := obs.NewServiceAdmin(obs.AdminConfig{Addr: cfg.Control}, deps.Metrics, s.log)
		if err != nil {
			return nil, fmt.Errorf("edge: control: %w", err)
		}
		a.Handle("/cdn/", s.Handler())
		a.Handle("/cache/", px.Cache().AdminHandler())
		s.ctl = a
	}
	return s, nil
}

// Name implements service.Service.
func (s *Server) Name() string { return "cdn-edge " + s.cfg.Name }

// Cache returns the edge's cache.
func (s *Server) Cache() *cache.Cache { return s.px.Cache() }

// Start binds the HTTP and control listeners, then loads the prefetch
// list in the background.
func (s *Server) Start(ctx context.Context) error {
	if err := s.px.Start(ctx); err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	if s.ctl != nil {
		if err := s.ctl.Start(ctx); err != nil {
			s.px.Shutdown(ctx)
			return fmt.Errorf("edge: %w", err)
		}
		s.ctl.SetReady(true)
	}
	if len(s.cfg.Prefetch) > 0 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.Prefetch(context.Background(), s.cfg.Prefetch)
		}()
	}
	s.log.Info("cdn edge listening", "addr", s.Addr(), "control", s.ControlAddr(), "upstreams", s.cfg.Upstreams, "shield", s.cfg.Shield)
	return nil
}

// Addr returns the HTTP address bound ("" before Start).
func (s *Server) Addr() string {
	if a := s.px.Addrs(); len(a) > 0 {
		return a[0].String()
	}
	return ""
}

// ControlAddr returns the control listener's address ("" without one).
func (s *Server) ControlAddr() string {
	if s.ctl == nil {
		return ""
	}
	if a := s.ctl.Addrs(); len(a) > 0 {
		return a[0].String()
	}
	return ""
}

// Addrs implements service.Addresser: HTTP, then control.
func (s *Server) Addrs() []net.Addr {
	out := s.px.Addrs()
	if s.ctl != nil {
		out = append(out, s.ctl.Addrs()...)
	}
	return out
}

// Shutdown reports unhealthy, then stops the listeners and the prefetch.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.once.Do(ctx, func(ctx context.Context) error {
		s.drain.Store(true)
		var err error
		if s.ctl != nil {
			err = s.ctl.Shutdown(ctx)
		}
		err = errors.Join(err, s.px.Shutdown(ctx))
		s.wg.Wait()
		return err
	})
}

// Report is the edge's state for the router.
func (s *Server) Report() Report {
	st := s.px.Cache().Stats()
	conns := s.px.Conns()
	return Report{
		Name: s.cfg.Name, Healthy: !s.drain.Load(),
		Load: float64(conns) / float64(s.cfg.Capacity), InFlight: conns, Capacity: s.cfg.Capacity,
		Requests: st.Requests, Hits: st.Hits, BytesCache: st.BytesFromCache, BytesUpstream: st.BytesFromOrigin,
		UpstreamFetches: st.OriginRequests,
	}
}

// Prefetch loads each URL into the cache as a client's GET would (a miss
// fetched from upstream and stored; a fresh copy left alone), returning
// how many are now stored. Pushed objects count as the cache's requests.
func (s *Server) Prefetch(ctx context.Context, urls []string) int {
	n := 0
	for _, u := range urls {
		if ctx.Err() != nil || s.drain.Load() {
			break
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil || req.URL.Host == "" {
			s.m.prefetch.WithLabelValues("bad-url").Inc()
			continue
		}
		// Through the proxy's handler, as a request from a local client
		// for the site: origin-form URI, Host from the URL.
		req.RemoteAddr = "127.0.0.1:0"
		req.RequestURI = req.URL.RequestURI()
		origin := *req.URL
		origin.Scheme, origin.Host = "", ""
		req.URL = &origin
		w := &discard{h: http.Header{}}
		s.px.ServeHTTP(w, req)
		if w.code == http.StatusOK {
			n++
			s.m.prefetch.WithLabelValues("ok").Inc()
		} else {
			s.m.prefetch.WithLabelValues("failed").Inc()
			s.log.Warn("prefetch failed", "url", u, "status", w.code)
		}
	}
	return n
}

// discard is a ResponseWriter that keeps the status only.
type discard struct {
	h    http.Header
	code int
}

func (d *discard) Header() http.Header { return d.h }
func (d *discard) WriteHeader(code int) {
	if d.code == 0 || d.code < 200 {
		d.code = code
	}
}
func (d *discard) Write(b []byte) (int, error) {
	if d.code == 0 {
		d.code = http.StatusOK
	}
	return len(b), nil
}

// maxPrefetchBody bounds a POST /cdn/prefetch list.
const maxPrefetchBody = 1 << 20

// Handler serves the control endpoints: GET /cdn/health (a Report; 503
// while draining), POST /cdn/purge?url=U or ?prefix=P ({"removed": n}),
// POST /cdn/prefetch (a body of URLs, one per line; {"stored": n}).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cdn/health", func(w http.ResponseWriter, r *http.Request) {
		rep := s.Report()
		w.Header().Set("Content-Type", "application/json")
		if !rep.Healthy {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(rep)
	})
	mux.HandleFunc("POST /cdn/purge", func(w http.ResponseWriter, r *http.Request) {
		u, p := r.URL.Query().Get("url"), r.URL.Query().Get("prefix")
		var n int
		switch {
		case u != "" && p == "":
			n = s.px.Cache().Purge(u)
			s.m.purged.WithLabelValues("url").Inc()
		case p != "" && u == "":
			n = s.px.Cache().PurgePrefix(p)
			s.m.purged.WithLabelValues("prefix").Inc()
		default:
			http.Error(w, "purge: give url= or prefix=", http.StatusBadRequest)
			return
		}
		s.log.Info("purged", "url", u, "prefix", p, "removed", n)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"removed\": %d}\n", n)
	})
	mux.HandleFunc("POST /cdn/prefetch", func(w http.ResponseWriter, r *http.Request) {
		var urls []string
		sc := bufio.NewScanner(io.LimitReader(r.Body, maxPrefetchBody))
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
				urls = append(urls, l)
			}
		}
		n := s.Prefetch(r.Context(), urls)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"stored\": %s, \"asked\": %d}\n", strconv.Itoa(n), len(urls))
	})
	return mux
}
