// Package proxy is the chapter's web cache as a running server: a caching
// forward proxy (browsers and curl configured to use it send absolute-URI
// requests, and CONNECT for https, tunnelled without caching) and a
// caching reverse proxy (origins chosen by Host, with health checks and
// round-robin or least-loaded choice among replicas). Both cache through
// package web/cache (RFC 9111).
//
// Safety defaults: only loopback clients may use it (no open proxy),
// CONNECT only to port 443, hop-by-hop fields are removed, Via is added
// and a request already carrying our own Via pseudonym is refused with 508
// (a forwarding loop), and a client's X-Forwarded-For is replaced by the
// real peer unless the peer is a configured trusted proxy.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/internal/transport"
	"github.com/applayer/applayer/web/cache"
	"github.com/applayer/applayer/web/fastpath"
)

// DefaultPort is the customary port of a web cache (Squid's).
const DefaultPort = 3128

// Config configures a proxy Server. Zero fields take the documented defaults.
type Config struct {
	// Addr is the listen address. Default "127.0.0.1:3128".
	Addr string `json:"addr,omitempty"`
	// Name is the pseudonym in Via and Cache-Status. Default "applayer".
	Name string `json:"name,omitempty"`
	// Forward accepts absolute-URI requests and CONNECT. Default: on when
	// no sites are configured.
	Forward *bool `json:"forward,omitempty"`
	// ConnectPorts are the ports CONNECT may reach. Default [443].
	ConnectPorts []int `json:"connect_ports,omitempty"`
	// AllowedClients are the client networks (CIDR) that may use the
	// proxy. Default loopback only.
	AllowedClients []string `json:"allowed_clients,omitempty"`
	// AllowDestinations are the networks (CIDR) that forward requests and
	// CONNECT may reach even though they are loopback, link-local,
	// unspecified or one of the proxy's own addresses (refused otherwise:
	// a client must not reach the proxy host's own services through it).
	// The lab lists its own block.
	AllowDestinations []string `json:"allow_destinations,omitempty"`
	// TrustForwardedFrom lists proxies (CIDR) whose X-Forwarded-For is
	// kept and appended to; from anyone else it is replaced.
	TrustForwardedFrom []string `json:"trust_forwarded_from,omitempty"`
	// Sites are the reverse-proxied sites, by Host.
	Sites []Site `json:"sites,omitempty"`
	// Cache configures the cache.
	Cache cache.Config `json:"cache,omitempty"`
	// Admin, when set, is a loopback listener for /metrics and the cache's
	// /cache/stats and /cache/purge.
	Admin string `json:"admin,omitempty"`
	// ReadHeaderTimeout bounds reading a request's header. Default 10s.
	ReadHeaderTimeout config.Duration `json:"read_header_timeout,omitempty"`
	// IdleTimeout closes idle client connections and tunnels. Default 2m.
	IdleTimeout config.Duration `json:"idle_timeout,omitempty"`
	// MaxHeaderBytes bounds a request header. Default 64 KiB.
	MaxHeaderBytes int `json:"max_header_bytes,omitempty"`
	// MaxConns caps concurrent client connections; more are answered 503
	// and closed. Default 10000.
	MaxConns int `json:"max_conns,omitempty"`
	// MaxConnsPerClient caps concurrent connections from one client
	// address (trusted proxies are exempt); more are answered 503 and
	// closed. Default 1000 (at most MaxConns).
	MaxConnsPerClient int `json:"max_conns_per_client,omitempty"`
	// HealthInterval is how often origins are checked. Default 5s.
	HealthInterval config.Duration `json:"health_interval,omitempty"`
}

// Site is one reverse-proxied site.
type Site struct {
	// Host is the Host header it answers (port ignored); "*" is the default site.
	Host string `json:"host"`
	// Origins are the replicas, host:port.
	Origins []string `json:"origins"`
	// Balance is "round-robin" (default) or "least-loaded".
	Balance string `json:"balance,omitempty"`
	// HealthPath is requested by the health check. Default "/".
	HealthPath string `json:"health_path,omitempty"`
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	for i, s := range c.Sites {
		f := fmt.Sprintf("sites[%d]", i)
		if s.Host == "" {
			return config.Errorf(f+".host", "missing")
		}
		if len(s.Origins) == 0 {
			return config.Errorf(f+".origins", "at least one origin is needed")
		}
		for j, o := range s.Origins {
			if _, _, err := net.SplitHostPort(o); err != nil {
				return config.Errorf(fmt.Sprintf("%s.origins[%d]", f, j), "%v", err)
			}
		}
		switch s.Balance {
		case "", "round-robin", "least-loaded":
		default:
			return config.Errorf(f+".balance", "%q is not round-robin or least-loaded", s.Balance)
		}
	}
	for i, n := range append(append([]string(nil), c.AllowedClients...), c.TrustForwardedFrom...) {
		if _, err := netip.ParsePrefix(n); err != nil {
			return config.Errorf(fmt.Sprintf("allowed_clients/trust_forwarded_from[%d]", i), "%v", err)
		}
	}
	for i, n := range c.AllowDestinations {
		if _, err := netip.ParsePrefix(n); err != nil {
			return config.Errorf(fmt.Sprintf("allow_destinations[%d]", i), "%v", err)
		}
	}
	for i, p := range c.ConnectPorts {
		if p <= 0 || p > 65535 {
			return config.Errorf(fmt.Sprintf("connect_ports[%d]", i), "%d is not a port", p)
		}
	}
	return nil
}

func (c *Config) defaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:" + strconv.Itoa(DefaultPort)
	}
	if c.Name == "" {
		c.Name = "applayer"
	}
	if c.Cache.Name == "" {
		c.Cache.Name = c.Name
	}
	if c.Forward == nil {
		f := len(c.Sites) == 0
		c.Forward = &f
	}
	if len(c.ConnectPorts) == 0 {
		c.ConnectPorts = []int{443}
	}
	if len(c.AllowedClients) == 0 {
		c.AllowedClients = []string{"127.0.0.0/8", "::1/128"}
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = config.Duration(10 * time.Second)
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = config.Duration(2 * time.Minute)
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 10000
	}
	if c.MaxConnsPerClient <= 0 {
		c.MaxConnsPerClient = min(1000, c.MaxConns)
	}
	if c.HealthInterval <= 0 {
		c.HealthInterval = config.Duration(5 * time.Second)
	}
}

// Server is a caching forward and reverse proxy.
type Server struct {
	cfg     Config
	deps    service.Deps
	log     *slog.Logger
	cache   *cache.Cache
	tr      *http.Transport
	via     string
	allowed []netip.Prefix
	trusted []netip.Prefix
	dests   []netip.Prefix  // allow_destinations
	fwd     *http.Transport // forward requests: destinations checked
	sites   map[string]*site
	admin   *obs.Admin

	mu      sync.Mutex
	own     []netip.Addr // the proxy's own addresses, set by Start
	ln      net.Listener
	srv     *http.Server
	tunnels map[net.Conn]struct{}
	front   *transport.StreamServer // accepts; runs the fast path
	handoff *transport.Handoff      // connections the fast path hands to net/http
	fast    *fastpath.Server        // the HTTP/1.1 fast path (cache hits)
	conns   atomic.Int64            // open client connections

	wg   sync.WaitGroup
	stop chan struct{}
	once service.Once
}

// New returns a proxy for cfg; Start binds it.
func New(cfg Config, deps service.Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	cfg.defaults()
	deps = deps.Defaults()
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger.With("service", "web-cache"), via: "1.1 " + cfg.Name,
		sites: map[string]*site{}, tunnels: map[net.Conn]struct{}{}, stop: make(chan struct{})}
	for _, n := range cfg.AllowedClients {
		s.allowed = append(s.allowed, netip.MustParsePrefix(n))
	}
	for _, n := range cfg.TrustForwardedFrom {
		s.trusted = append(s.trusted, netip.MustParsePrefix(n))
	}
	s.tr = &http.Transport{
		DialContext:           deps.Dialer.DialContext,
		DisableCompression:    true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}
	for _, n := range cfg.AllowDestinations {
		s.dests = append(s.dests, netip.MustParsePrefix(n))
	}
	s.fwd = s.tr.Clone()
	s.fwd.DialContext = s.dialForward
	for _, sc := range cfg.Sites {
		st := newSite(sc)
		s.sites[strings.ToLower(sc.Host)] = st
	}
	c, err := cache.New(cfg.Cache, &router{s: s}, deps)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	s.cache = c
	if cfg.Admin != "" {
		a, err := obs.NewServiceAdmin(obs.AdminConfig{Addr: cfg.Admin}, deps.Metrics, s.log)
		if err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
		a.Handle("/cache/", c.AdminHandler())
		s.admin = a
	}
	return s, nil
}

// Name implements service.Service.
func (s *Server) Name() string { return "web-cache" }

// Conns returns the client connections open now (an edge's load).
func (s *Server) Conns() int64 { return s.conns.Load() }

// Cache returns the proxy's cache (for its AdminHandler and Stats).
func (s *Server) Cache() *cache.Cache { return s.cache }

// Addrs returns the proxy's listening address (then the admin listener's).
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Addr
	if s.ln != nil {
		out = append(out, s.ln.Addr())
	}
	if s.admin != nil {
		out = append(out, s.admin.Addrs()...)
	}
	return out
}

// Start binds the listener and starts serving and health checks.
func (s *Server) Start(ctx context.Context) error {
	ln, err := transport.ListenConfig{}.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("proxy: listen: %w", err)
	}
	if s.admin != nil {
		if err := s.admin.Start(ctx); err != nil {
			ln.Close()
			return fmt.Errorf("proxy: %w", err)
		}
		s.admin.SetReady(true)
	}
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout.D(),
		IdleTimeout:       s.cfg.IdleTimeout.D(),
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	own := ownAddrs(ln.Addr())
	if s.admin != nil {
		for _, a := range s.admin.Addrs() {
			own = append(own, ownAddrs(a)...)
		}
	}
	s.mu.Lock()
	s.own = own
	s.ln, s.srv = ln, srv
	s.handoff = transport.NewHandoff(ln.Addr())
	s.fast = s.newFast()
	s.front = s.newFront(ln.Addr().String())
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := srv.Serve(s.handoff); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve failed", "err", err)
		}
	}()
	s.front.Start(ln)
	for _, st := range s.sites {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.healthLoop(st) }()
	}
	s.log.Info("web cache listening", "addr", ln.Addr().String(), "forward", *s.cfg.Forward, "sites", len(s.sites))
	return nil
}

// Shutdown stops accepting, drains requests, closes tunnels and waits for
// every goroutine.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.once.Do(ctx, func(ctx context.Context) error {
		close(s.stop)
		s.mu.Lock()
		srv, front := s.srv, s.front
		for c := range s.tunnels {
			c.Close()
		}
		s.mu.Unlock()
		var err error
		if front != nil {
			// Stop accepting; idle fast-path connections close, a response
			// being written finishes; hand-overs in progress reach srv.
			err = front.Shutdown(ctx)
		}
		if srv != nil {
			serr := srv.Shutdown(ctx)
			if serr != nil {
				srv.Close()
			}
			err = errors.Join(err, serr)
		}
		if s.admin != nil {
			err = errors.Join(err, s.admin.Shutdown(ctx))
		}
		s.wg.Wait()
		s.cache.Close()
		s.tr.CloseIdleConnections()
		s.fwd.CloseIdleConnections()
		return err
	})
}

// ServeHTTP handles one client request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic in handler", "panic", v)
			s.refuse(w, http.StatusInternalServerError, "internal error")
		}
	}()
	peer := peerAddr(r)
	if !s.allowedPeer(peer) {
		s.refuse(w, http.StatusForbidden, "this proxy serves only its own clients")
		return
	}
	if s.looped(r.Header) {
		s.refuse(w, http.StatusLoopDetected, "forwarding loop: request already passed through "+s.cfg.Name)
		return
	}
	if s.deps.Trace.Enabled() {
		to := s.cfg.Name
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			to = la.String()
		}
		s.deps.Trace.Publish(trace.Event{From: r.RemoteAddr, To: to, Proto: trace.HTTPProto(r.Proto), Summary: r.Method + " " + r.RequestURI})
	}
	if s.deps.Trace.Enabled() && r.Method != http.MethodConnect { // a tunnel hijacks w
		to := s.cfg.Name
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			to = la.String()
		}
		tw := &traceWriter{ResponseWriter: w}
		defer func() {
			status := tw.status
			if status == 0 {
				status = http.StatusOK
			}
			summary := fmt.Sprintf("%s %d %s", r.Proto, status, http.StatusText(status))
			if cs := tw.Header().Get("Cache-Status"); cs != "" {
				summary += " Cache-Status: " + cs
			}
			s.deps.Trace.Publish(trace.Event{From: to, To: r.RemoteAddr, Proto: trace.HTTPProto(r.Proto), Summary: summary, Bytes: int(tw.n)})
		}()
		w = tw
	}
	if r.Method == http.MethodConnect {
		s.connect(w, r)
		return
	}
	// The request is ours to change: no copy on the hot path.
	out := r
	if r.URL.IsAbs() {
		if !*s.cfg.Forward {
			s.refuse(w, http.StatusForbidden, "forward proxying is disabled")
			return
		}
		if r.URL.Scheme != "http" {
			s.refuse(w, http.StatusBadRequest, "only http:// URLs are proxied; use CONNECT for https")
			return
		}
		out.Host = r.URL.Host
		if a, ok := literalAddr(r.URL.Hostname()); ok && !s.destinationAllowed(a) {
			s.refuse(w, http.StatusForbidden, "forwarding to "+a.String()+" is not allowed")
			return
		}
	} else {
		if s.siteFor(r.Host) == nil {
			if *s.cfg.Forward {
				s.refuse(w, http.StatusBadRequest, "this is a forward proxy: send an absolute URI")
			} else {
				s.refuse(w, http.StatusNotFound, "no such site")
			}
			return
		}
		u := *r.URL
		u.Scheme, u.Host = "http", r.Host
		out.URL = &u
	}
	cache.RemoveHopByHop(out.Header)
	out.Header["Via"] = appendList(out.Header["Via"], s.via)
	s.forwardedFor(out.Header, peer)
	s.cache.ServeHTTP(&viaWriter{ResponseWriter: w, via: s.via}, out)
}

// refuse answers a request the proxy handles itself, with Cache-Status
// saying the cache was bypassed.
func (s *Server) refuse(w http.ResponseWriter, code int, msg string) {
	w.Header()["Cache-Status"] = []string{s.cfg.Name + "; fwd=bypass; detail=" + strconv.Itoa(code)}
	w.Header()["Via"] = []string{s.via}
	http.Error(w, strconv.Itoa(code)+" "+msg, code)
}

func appendList(vs []string, v string) []string {
	if len(vs) == 0 {
		return []string{v}
	}
	return append(vs[:len(vs):len(vs)], v)
}

func peerAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func (s *Server) allowedPeer(a netip.Addr) bool {
	for _, p := range s.allowed {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// trustedPeer reports whether a is a trusted proxy (trust_forwarded_from).
func (s *Server) trustedPeer(a netip.Addr) bool {
	for _, p := range s.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// looped reports whether a Via entry carries our own pseudonym.
func (s *Server) looped(h http.Header) bool {
	for _, line := range h["Via"] {
		for _, hop := range strings.Split(line, ",") {
			f := strings.Fields(hop)
			if len(f) >= 2 && strings.EqualFold(f[1], s.cfg.Name) {
				return true
			}
		}
	}
	return false
}

// untrustedForwarding are the fields by which a proxy tells the origin
// about the original request. From a peer that is not a trusted proxy they
// are dropped: the origin may build the response from them (links,
// redirects, routing) and they are not part of the cache key, so one
// client could poison the response stored for everyone.
var untrustedForwarding = [...]string{"Forwarded", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port",
	"X-Forwarded-Server", "X-Forwarded-Prefix", "X-Forwarded-Scheme", "X-Original-Url", "X-Rewrite-Url",
	"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

// forwardedFor sets X-Forwarded-For: the peer appended to the client's
// value when the peer is a trusted proxy, else the peer alone.
func (s *Server) forwardedFor(h http.Header, peer netip.Addr) {
	if s.trustedPeer(peer) {
		if prior := strings.Join(h["X-Forwarded-For"], ", "); prior != "" {
			h["X-Forwarded-For"] = []string{prior + ", " + peer.String()}
			return
		}
	} else {
		for _, f := range untrustedForwarding {
			delete(h, f)
		}
	}
	h["X-Forwarded-For"] = []string{peer.String()}
}

// viaWriter adds our Via entry to every response.
// traceWriter learns a response's status and body size for its trace event.
type traceWriter struct {
	http.ResponseWriter
	status int
	n      int64
}

func (t *traceWriter) WriteHeader(code int) {
	if t.status == 0 && code >= 200 {
		t.status = code
	}
	t.ResponseWriter.WriteHeader(code)
}

func (t *traceWriter) Write(b []byte) (int, error) {
	if t.status == 0 {
		t.status = http.StatusOK
	}
	n, err := t.ResponseWriter.Write(b)
	t.n += int64(n)
	return n, err
}

// Flush passes through to the underlying writer.
func (t *traceWriter) Flush() {
	if f, ok := t.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the underlying writer.
func (t *traceWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }

type viaWriter struct {
	http.ResponseWriter
	via   string
	wrote bool
}

func (v *viaWriter) WriteHeader(code int) {
	if !v.wrote && code >= 200 { // a 1xx (103 Early Hints) goes before the final header
		v.wrote = true
		h := v.ResponseWriter.Header()
		h["Via"] = appendList(h["Via"], v.via)
	}
	v.ResponseWriter.WriteHeader(code)
}

func (v *viaWriter) Write(b []byte) (int, error) {
	if !v.wrote {
		v.WriteHeader(http.StatusOK)
	}
	return v.ResponseWriter.Write(b)
}

// Flush passes through to the underlying writer.
func (v *viaWriter) Flush() {
	if f, ok := v.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// connect opens a CONNECT tunnel: bytes are relayed both ways, uncached.
func (s *Server) connect(w http.ResponseWriter, r *http.Request) {
	host, portStr, err := net.SplitHostPort(r.Host)
	if err != nil {
		s.refuse(w, http.StatusBadRequest, "CONNECT needs host:port")
		return
	}
	port, _ := strconv.Atoi(portStr)
	ok := false
	for _, p := range s.cfg.ConnectPorts {
		ok = ok || p == port
	}
	if !ok {
		s.refuse(w, http.StatusForbidden, "CONNECT to port "+portStr+" is not allowed")
		return
	}
	if a, ok := literalAddr(host); ok && !s.destinationAllowed(a) {
		s.refuse(w, http.StatusForbidden, "CONNECT to "+a.String()+" is not allowed")
		return
	}
	dctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	up, err := s.dialForward(dctx, "tcp", net.JoinHostPort(host, portStr))
	cancel()
	if errors.Is(err, errDestination) {
		s.refuse(w, http.StatusForbidden, err.Error())
		return
	}
	if err != nil {
		s.refuse(w, http.StatusBadGateway, "cannot reach "+r.Host)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		s.refuse(w, http.StatusInternalServerError, "cannot tunnel on this connection")
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		up.Close()
		return
	}
	s.mu.Lock()
	select {
	case <-s.stop:
		s.mu.Unlock()
		conn.Close()
		up.Close()
		return
	default:
	}
	s.tunnels[conn] = struct{}{}
	s.tunnels[up] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.tunnels, conn)
		delete(s.tunnels, up)
		s.mu.Unlock()
		conn.Close()
		up.Close()
		s.wg.Done()
	}()
	conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\nVia: "+s.via+"\r\nCache-Status: "+s.cfg.Name+"; fwd=bypass\r\n\r\n"); err != nil {
		return
	}
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		if _, err := up.Write(b); err != nil {
			return
		}
	}
	idle := s.cfg.IdleTimeout.D()
	done := make(chan struct{}, 2)
	relay := func(dst, src net.Conn) {
		io.Copy(dst, &idleReader{c: src, d: idle})
		if tc, ok := dst.(interface{ CloseWrite() error }); ok {
			tc.CloseWrite()
		} else {
			dst.Close()
		}
		done <- struct{}{}
	}
	go relay(up, conn)
	go relay(conn, up)
	<-done
	<-done
}

// errDestination is a forward request's destination that is refused.
var errDestination = errors.New("proxy: destination not allowed")

// dialForward dials a forward request's (or CONNECT's) destination and
// checks the address actually connected to, so a name that resolves to
// the proxy host itself (or changes to, between a check and the dial) is
// refused too; nothing is sent on a refused connection.
func (s *Server) dialForward(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := s.deps.Dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	ap, perr := netip.ParseAddrPort(c.RemoteAddr().String())
	if perr != nil || !s.destinationAllowed(ap.Addr()) {
		c.Close()
		return nil, fmt.Errorf("%w: %s is %s", errDestination, addr, c.RemoteAddr())
	}
	return c, nil
}

// destinationAllowed reports whether a forward request may reach a: not
// loopback, link-local, unspecified or one of the proxy's own addresses
// unless allow_destinations lists it (Squid's default configuration
// denies to_localhost and to_linklocal the same way).
func (s *Server) destinationAllowed(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.dests {
		if p.Contains(a) {
			return true
		}
	}
	if a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsUnspecified() || !a.IsValid() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.own {
		if o == a {
			return false
		}
	}
	return true
}

// literalAddr parses host as an IP address (the forms a URL may carry).
func literalAddr(host string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.WithZone("").Unmap(), true
}

// ownAddrs are the addresses a listener on la answers on: its own, or
// every interface's when it listens on the unspecified address.
func ownAddrs(la net.Addr) []netip.Addr {
	ap, err := netip.ParseAddrPort(la.String())
	if err != nil {
		return nil
	}
	if !ap.Addr().Unmap().IsUnspecified() {
		return []netip.Addr{ap.Addr().Unmap()}
	}
	ifs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, ia := range ifs {
		if p, err := netip.ParsePrefix(ia.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out
}

// idleReader refreshes a read deadline before each read, so a tunnel idle
// for d is closed.
type idleReader struct {
	c net.Conn
	d time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	r.c.SetReadDeadline(time.Now().Add(r.d))
	return r.c.Read(p)
}
