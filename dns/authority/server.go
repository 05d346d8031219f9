// Package authority is applayer's authoritative DNS server: zones from
// RFC 1035 master files (several per server), answered as NSD and Knot
// answer them (AA, referrals with glue, NXDOMAIN/NODATA with the SOA, CNAME
// chains, RFC 4592 wildcards, additional addresses, A-record rotation,
// REFUSED outside its zones), EDNS0 (RFC 6891: 1232-byte ceiling, DO,
// BADVERS, NSID RFC 5001, cookies RFC 7873/9018), truncation over UDP and
// full answers over TCP, AXFR/IXFR out (RFC 5936, RFC 1995) to allowed
// addresses, NOTIFY (RFC 1996), secondary zones, and DNSSEC (RFC 4033-4035,
// NSEC3 RFC 5155) for pre-signed or self-signed zones.
//
// The read path takes no locks: the zones live in an atomic.Pointer that a
// reload swaps.
package authority

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/dnsserver"
	"github.com/applayer/applayer/dns/zone"
	"github.com/applayer/applayer/internal/service"
)

// Server is an authoritative DNS server.
type Server struct {
	// beforeAnswer, when set (by tests), runs before each query is
	// answered.
	beforeAnswer func(*dns.Msg)

	cfg  Config
	deps service.Deps
	log  *slog.Logger
	m    *metrics
	acl  []aclEntry
	rrl  *rrl // nil when off
	tsig map[string]tsigKey

	zones atomic.Pointer[zoneSet]
	// recursion is the lab's recursive mode (recursion.go); nil: off.
	recursion atomic.Pointer[Recursion]
	cache     *answerCache // nil: off
	rotate    atomic.Uint32
	secret    [16]byte

	reloadMu sync.Mutex // serialises writers of zones
	sources  map[string]*source
	// tables are the answer tables of the zones served, kept across
	// installs (under reloadMu).
	tables map[*zone.Zone]*zoneTable

	// srv serves the Server (a dnsserver.Handler) over UDP and TCP.
	srv *dnsserver.Server

	mu      sync.Mutex
	local   string
	stop    chan struct{}
	wg      sync.WaitGroup
	started bool
	once    service.Once
}

// New returns a server for cfg with its zones loaded (and signed, where
// asked); Start binds it.
func New(cfg Config, deps service.Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	cfg.defaults()
	deps = deps.Defaults()
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger.With("service", "dns-authority"), sources: map[string]*source{}}
	s.tsig, _ = parseTSIGKeys(cfg.TSIGKeys)
	for _, a := range cfg.AllowTransfer {
		e, _ := parseACL(a, s.tsig)
		s.acl = append(s.acl, e)
	}
	if _, err := rand.Read(s.secret[:]); err != nil {
		return nil, fmt.Errorf("authority: cookie secret: %w", err)
	}
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	s.m = m
	if s.rrl, err = newRRL(cfg.RateLimit, deps.Now, deps.Metrics); err != nil {
		return nil, err
	}
	udpSockets := cfg.UDPSockets
	if udpSockets <= 0 {
		udpSockets = runtime.GOMAXPROCS(0)
	}
	s.srv = dnsserver.New(dnsserver.Config{
		Addr: cfg.Addr, Network: cfg.Network, UDPSockets: udpSockets, BlockingReads: cfg.BlockingReads,
		MaxUDPSize: cfg.MaxUDPSize, EDNSSize: uint16(cfg.MaxUDPSize),
		MaxTCPConns: cfg.MaxTCPConns, DropIdle: true,
		IdleTimeout: cfg.IdleTimeout.D(), QueryTimeout: cfg.ReadTimeout.D(), MaxTCPQueries: 1000,
		TSIGSecrets: s.secrets(),
		Now:         deps.Now, Logger: s.log, Trace: deps.Trace,
		OnPanic: func(any) { s.m.panics.Inc() },
	}, s)
	if cfg.AnswerCacheBytes > 0 {
		s.cache = newAnswerCache(cfg.AnswerCacheBytes, cfg.AnswerCacheAge.D())
	}
	s.zones.Store(&zoneSet{zones: map[string]*zone.Zone{}})
	s.cleanState()
	for _, zc := range cfg.Zones {
		src := &source{cfg: zc, key: zone.Key(zc.Origin), kick: make(chan struct{}, 1)}
		s.sources[src.key] = src
		if zc.Primary != "" {
			// Transferred after Start; meanwhile the copy on disk, if any.
			z, at, err := s.restoreSecondary(src)
			switch {
			case err != nil:
				s.log.Warn("secondary zone: copy on disk not served", "zone", src.key, "err", err)
			case z != nil:
				s.install(src.key, z)
				src.records, src.refreshed = z.Records(), at
				s.log.Info("secondary zone served from disk until the primary answers", "zone", src.key, "serial", z.SOA.Serial,
					"refreshed", at, "expires", at.Add(time.Duration(z.SOA.Expire)*time.Second))
			}
			continue
		}
		src.prev = s.restoreJournal(src)
		z, err := s.loadSource(src)
		if err != nil {
			return nil, err
		}
		s.install(src.key, z)
		s.record(src, src.prev, z)
		src.prev = nil
	}
	return s, nil
}

// Name implements service.Service.
func (s *Server) Name() string { return "dns-authority " + s.cfg.Addr }

// Zone returns the zone with the given origin as currently served, or nil.
func (s *Server) Zone(origin string) *zone.Zone {
	return s.zones.Load().zones[zone.Key(origin)]
}

// SetZone serves z in place of the zone with the same origin (or adds
// it), as a reload would. Tests use it to serve doctored zones.
func (s *Server) SetZone(z *zone.Zone) { s.install(z.Origin, z) }

// install swaps in a zone set with z at key (nil removes it).
func (s *Server) install(key string, z *zone.Zone) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.zones.Load()
	next := &zoneSet{zones: make(map[string]*zone.Zone, len(old.zones)+1)}
	for k, v := range old.zones {
		next.zones[k] = v
	}
	if z == nil {
		delete(next.zones, key)
	} else {
		next.zones[key] = z
	}
	next.fast, s.tables = s.buildTable(next, s.tables)
	s.zones.Store(next)
}

// Start binds the UDP sockets and the TCP listener and starts serving.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("authority: already started")
	}
	s.stop = make(chan struct{})
	if err := s.srv.Start(ctx); err != nil {
		return fmt.Errorf("authority: %w", err)
	}
	s.local = s.srv.Local()
	addr := s.local
	if err := s.writeDS(); err != nil {
		s.srv.Shutdown(ctx)
		return err
	}
	s.started = true
	s.startBackground()
	if s.cache != nil && strings.Contains(s.cfg.Network, "udp") {
		s.wg.Add(1)
		go s.sweepCache()
	}
	// Tell the secondaries the zones are (re)loaded, as Knot does at start.
	for _, src := range s.sources {
		if z := s.zones.Load().zones[src.key]; z != nil && src.cfg.Primary == "" {
			s.notifyLocked(z)
		}
	}
	s.log.Info("dns authority listening", "addr", addr, "network", s.cfg.Network, "zones", len(s.cfg.Zones))
	return nil
}

// sweepCache removes aged answers from the answer cache until Shutdown.
func (s *Server) sweepCache() {
	defer s.wg.Done()
	t := time.NewTicker(max(s.cfg.AnswerCacheAge.D()/2, time.Second))
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.cache.sweep(s.deps.Now())
		}
	}
}

// Addrs returns the bound addresses after Start: TCP first, then UDP.
func (s *Server) Addrs() []net.Addr { return s.srv.Addrs() }

// Shutdown stops the listeners and waits for the serving goroutines.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.once.Do(ctx, func(ctx context.Context) error {
		s.mu.Lock()
		if !s.started {
			s.mu.Unlock()
			return nil
		}
		close(s.stop)
		s.mu.Unlock()
		err := s.srv.Shutdown(ctx)
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		}
		return err
	})
}
