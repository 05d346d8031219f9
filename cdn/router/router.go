// Package router is the CDN's request router: the authoritative DNS
// server of the CDN's domain (kingcdn.com in the lab), a handler on the
// shared DNS seam (dns/dnsserver). The content provider's zone aliases a
// name into the domain (video.netcinema.com CNAME video.kingcdn.com); the
// router answers every name under the domain with the address of one edge
// chosen per query:
//
//  1. The client is the subnet of the query's EDNS Client Subnet option
//     (RFC 7871) when present, else the querying resolver's address.
//  2. The network map (Map) gives the client's network (longest prefix)
//     and the clusters in order of distance.
//  3. The nearest cluster with an eligible edge wins: an edge is eligible
//     when the active health checks find it up and its reported load is
//     at most the cluster's max_load. A cluster skipped is logged with
//     why ("down", "overloaded").
//  4. Within the cluster the content name picks the edge by rendezvous
//     hashing, so each object lives on one edge.
//  5. No cluster at all: the origin's addresses, the last resort.
//
// Answers carry a short TTL (default 20 s) so clients follow changes of
// health quickly, and, when the query had ECS, the option echoed with the
// scope prefix length of the network matched (RFC 7871 section 7.2.1),
// so resolvers cache per client network. Every decision goes on the
// trace bus (proto "cdn/route"), into metrics
// (applayer_cdn_router_decisions_total{cluster,reason},
// applayer_cdn_router_skips_total{cluster,why}) and into the recent
// decisions of the status endpoint (GET /cdn/status).
package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/dnsserver"
	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
)

// Config configures a router. Zero fields take the documented defaults.
type Config struct {
	// Addr is where DNS is served (UDP and TCP). Default "127.0.0.1:53".
	Addr string `json:"addr,omitempty"`
	// Domain is the CDN's zone, e.g. "kingcdn.com".
	Domain string `json:"domain"`
	// NS are the zone's name servers (its apex NS records). Default
	// ["ns.<domain>"].
	NS []string `json:"ns,omitempty"`
	// TTL of the answers (short, so clients follow health changes).
	// Default 20s.
	TTL config.Duration `json:"ttl,omitempty"`
	// Map is the network map inline; MapFile a file holding it (YAML or
	// JSON). One of the two.
	Map     *Map   `json:"map,omitempty"`
	MapFile string `json:"map_file,omitempty"`
	// CheckInterval is how often each edge's health is checked; a check
	// times out after CheckTimeout. Defaults 2s and 1s.
	CheckInterval config.Duration `json:"check_interval,omitempty"`
	CheckTimeout  config.Duration `json:"check_timeout,omitempty"`
	// Fall is how many failed checks in a row mark an edge down. Default 2.
	Fall int `json:"fall,omitempty"`
	// Control, when set, is a loopback listener for /metrics,
	// GET /cdn/status and POST /cdn/purge.
	Control string `json:"control,omitempty"`
	// Decisions is how many recent decisions the status keeps. Default 64.
	Decisions int `json:"decisions,omitempty"`
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.Domain == "" {
		return config.Errorf("domain", "missing")
	}
	if _, ok := dns.IsDomainName(c.Domain); !ok {
		return config.Errorf("domain", "%q is not a domain name", c.Domain)
	}
	for i, n := range c.NS {
		if _, ok := dns.IsDomainName(n); !ok {
			return config.Errorf(fmt.Sprintf("ns[%d]", i), "%q is not a domain name", n)
		}
	}
	if c.Map == nil && c.MapFile == "" {
		return config.Errorf("map", "a network map (map or map_file) is needed")
	}
	if c.Map != nil {
		if err := c.Map.Validate(); err != nil {
			return fmt.Errorf("map.%w", err)
		}
	}
	if c.Fall < 0 {
		return config.Errorf("fall", "%d is negative", c.Fall)
	}
	return nil
}

func (c *Config) defaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:53"
	}
	c.Domain = dns.Fqdn(strings.ToLower(c.Domain))
	if len(c.NS) == 0 {
		c.NS = []string{"ns." + c.Domain}
	}
	if c.TTL <= 0 {
		c.TTL = config.Duration(20 * time.Second)
	}
	if c.CheckInterval <= 0 {
		c.CheckInterval = config.Duration(2 * time.Second)
	}
	if c.CheckTimeout <= 0 {
		c.CheckTimeout = config.Duration(time.Second)
	}
	if c.Fall == 0 {
		c.Fall = 2
	}
	if c.Decisions <= 0 {
		c.Decisions = 64
	}
}

// Server is the request router: a DNS handler and its health checker.
type Server struct {
	cfg  Config
	deps service.Deps
	log  *slog.Logger
	t    *table
	srv  *dnsserver.Server
	m    *metrics
	hc   *http.Client
	tr   *http.Transport
	zone zoneWire
	ctl  *obs.Admin

	recent recentRing

	mu      sync.Mutex
	started bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    service.Once
}

// New returns a router for cfg; Start binds it.
func New(cfg Config, deps service.Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	cfg.defaults()
	deps = deps.Defaults()
	if cfg.Map == nil {
		m, err := LoadMap(cfg.MapFile)
		if err != nil {
			return nil, err
		}
		cfg.Map = m
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger.With("service", "cdn-router"), t: compile(cfg.Map)}
	var err error
	if s.zone, err = newZoneWire(cfg.Domain, cfg.NS, uint32(cfg.TTL.D()/time.Second)); err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	if s.m, err = newMetrics(deps.Metrics, s.t); err != nil {
		return nil, err
	}
	s.recent.init(cfg.Decisions)
	s.tr = &http.Transport{DialContext: deps.Dialer.DialContext, MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second,
		ResponseHeaderTimeout: cfg.CheckTimeout.D(), DisableCompression: true}
	s.hc = &http.Client{Transport: s.tr, Timeout: cfg.CheckTimeout.D(),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	s.srv = dnsserver.New(dnsserver.Config{
		Addr: cfg.Addr, MaxUDPSize: 1232, BlockingReads: true, MaxTCPConns: 1000, DropIdle: true,
		IdleTimeout: 10 * time.Second, QueryTimeout: 5 * time.Second, MaxTCPQueries: 1000,
		Now: deps.Now, Logger: s.log, Trace: deps.Trace,
		OnPanic: func(any) { s.m.panics.Inc() },
	}, s)
	if cfg.Control != "" {
		a, err := obs.NewServiceAdmin(obs.AdminConfig{Addr: cfg.Control}, deps.Metrics, s.log)
		if err != nil {
			return nil, fmt.Errorf("router: control: %w", err)
		}
		a.Handle("/cdn/", s.Handler())
		s.ctl = a
	}
	return s, nil
}

// Name implements service.Service.
func (s *Server) Name() string { return "cdn-router " + s.cfg.Domain }

// Start checks every edge once (so the first answers know their health),
// binds DNS and starts the periodic checks.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("router: already started")
	}
	s.checkAll(ctx)
	if err := s.srv.Start(ctx); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	if s.ctl != nil {
		if err := s.ctl.Start(ctx); err != nil {
			s.srv.Shutdown(ctx)
			return fmt.Errorf("router: %w", err)
		}
		s.ctl.SetReady(true)
	}
	bg, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.started = true
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.healthLoop(bg) }()
	s.log.Info("cdn router listening", "addr", s.srv.Local(), "domain", s.cfg.Domain, "clusters", len(s.t.clusters))
	return nil
}

// Local returns the DNS address bound ("" before Start).
func (s *Server) Local() string { return s.srv.Local() }

// Addrs returns the DNS addresses (TCP, UDP), then the control listener's.
func (s *Server) Addrs() []net.Addr {
	out := s.srv.Addrs()
	if s.ctl != nil {
		out = append(out, s.ctl.Addrs()...)
	}
	return out
}

// Shutdown stops the health checks and the listeners.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.once.Do(ctx, func(ctx context.Context) error {
		s.mu.Lock()
		started, cancel := s.started, s.cancel
		s.mu.Unlock()
		if !started {
			return nil
		}
		cancel()
		err := s.srv.Shutdown(ctx)
		if s.ctl != nil {
			err = errors.Join(err, s.ctl.Shutdown(ctx))
		}
		s.wg.Wait()
		s.tr.CloseIdleConnections()
		return err
	})
}

// Respond answers one query without sockets (fuzz targets, tests).
func (s *Server) Respond(req *dnsserver.Request, out []byte) []byte { return s.srv.Respond(req, out) }
