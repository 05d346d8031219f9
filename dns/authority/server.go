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
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/internal/udpbatch"
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

	zones  atomic.Pointer[zoneSet]
	rotate atomic.Uint32
	secret [16]byte

	reloadMu sync.Mutex // serialises writers of zones
	sources  map[string]*source

	mu      sync.Mutex
	udp     []*net.UDPConn
	raw     []*udpbatch.Sock
	tcpLn   net.Listener
	tcp     *dns.Server
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
	s.zones.Store(next)
}

func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// Start binds the UDP sockets and the TCP listener and starts serving.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("authority: already started")
	}
	// TCP binds without SO_REUSEPORT, so that another process already on
	// the address makes Start fail instead of silently sharing the port.
	// The UDP sockets share the port among themselves.
	var plain net.ListenConfig
	lc := net.ListenConfig{Control: reusePort}
	addr := s.cfg.Addr
	s.stop = make(chan struct{})
	var err error
	if strings.Contains(s.cfg.Network, "tcp") {
		s.tcpLn, err = plain.Listen(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("authority: tcp listen: %w", err)
		}
		addr = s.tcpLn.Addr().String()
	}
	if strings.Contains(s.cfg.Network, "udp") {
		n := s.cfg.UDPSockets
		if n <= 0 {
			n = runtime.GOMAXPROCS(0)
		}
		ulc := lc
		if n == 1 {
			ulc = plain
		}
		for i := 0; i < n; i++ {
			pc, err := ulc.ListenPacket(ctx, "udp", addr)
			if err != nil {
				s.closeListeners()
				return fmt.Errorf("authority: udp listen: %w", err)
			}
			s.udp = append(s.udp, pc.(*net.UDPConn))
			addr = pc.LocalAddr().String()
		}
	}
	s.local = addr
	if err := s.writeDS(); err != nil {
		s.closeListeners()
		return err
	}
	for _, c := range s.udp {
		s.wg.Add(1)
		if r, err := udpbatch.Open(c); err == nil {
			s.raw = append(s.raw, r)
			go s.serveRaw(r, c.LocalAddr().String())
			continue
		}
		go s.serveUDP(c)
	}
	if s.tcpLn != nil {
		started := make(chan struct{})
		s.tcp = &dns.Server{
			Listener:          &limitListener{Listener: s.tcpLn, sem: make(chan struct{}, s.cfg.MaxTCPConns)},
			Handler:           dns.HandlerFunc(s.serveTCP),
			ReadTimeout:       s.cfg.ReadTimeout.D(),
			WriteTimeout:      s.cfg.ReadTimeout.D(),
			IdleTimeout:       func() time.Duration { return s.cfg.IdleTimeout.D() },
			MaxTCPQueries:     1000,
			TsigSecret:        s.secrets(),
			NotifyStartedFunc: func() { close(started) },
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.tcp.ActivateAndServe(); err != nil {
				s.log.Debug("tcp server stopped", "err", err)
			}
		}()
		<-started
	}
	s.started = true
	s.startBackground()
	// Tell the secondaries the zones are (re)loaded, as Knot does at start.
	for _, src := range s.sources {
		if z := s.zones.Load().zones[src.key]; z != nil && src.cfg.Primary == "" {
			s.notifyLocked(z)
		}
	}
	s.log.Info("dns authority listening", "addr", addr, "network", s.cfg.Network, "zones", len(s.cfg.Zones))
	return nil
}

func (s *Server) closeListeners() {
	for _, c := range s.udp {
		c.Close()
	}
	s.udp = nil
	if s.tcpLn != nil {
		s.tcpLn.Close()
		s.tcpLn = nil
	}
}

// Addrs returns the bound addresses after Start: TCP first, then UDP.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Addr
	if s.tcpLn != nil {
		out = append(out, s.tcpLn.Addr())
	}
	if len(s.udp) > 0 {
		out = append(out, s.udp[0].LocalAddr())
	}
	return out
}

// Shutdown stops the listeners and waits for the serving goroutines.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.once.Do(ctx, func(ctx context.Context) error {
		s.mu.Lock()
		if !s.started {
			s.mu.Unlock()
			return nil
		}
		close(s.stop)
		for _, c := range s.udp {
			c.Close()
		}
		for _, r := range s.raw {
			r.Wake()
		}
		tcp := s.tcp
		s.mu.Unlock()
		var err error
		if tcp != nil {
			err = tcp.ShutdownContext(ctx)
		}
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

// soReusePort is SO_REUSEPORT on Linux (the syscall package lacks it).
const soReusePort = 0xf
