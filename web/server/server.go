// Package server is applayer's web server: static files with validators,
// ranges and compression, virtual hosts, redirects, uploads, the cookie
// shop, over HTTP/1.1 (persistent or not), HTTP/2 (TLS and h2c) and HTTP/3,
// with access logs, metrics and trace events.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/internal/transport"
	"github.com/applayer/applayer/web/fastpath"
	"github.com/applayer/applayer/web/h2"
	"github.com/applayer/applayer/web/labca"
	"github.com/applayer/applayer/web/shop"
)

// parkIdleAbove is the connection count above which the cleartext
// port's idle keep-alive connections are parked (transport.Conn.Park).
const parkIdleAbove = 64

// parkBareAfter is how long a parked connection keeps its net.Conn: one
// idle longer waits as a bare descriptor (transport.StreamConfig
// ParkBareAfter), a few hundred bytes instead of about 1.5 KB.
const parkBareAfter = 100 * time.Millisecond

// Server is the web server service.
type Server struct {
	cfg  Config
	deps service.Deps
	log  *slog.Logger
	m    *metrics

	handler http.Handler
	byHost  map[string]http.Handler
	deflt   http.Handler
	// The fast path's view of the sites: file sites by host name and the
	// default one (nil when it is the shop).
	fastByHost map[string]*fileSite
	fastDeflt  *fileSite
	// altSvc is the Alt-Svc field line advertising HTTP/3 (empty without).
	altSvc      []byte
	altSvcValue string
	// h2 serves HTTP/2: TLS connections that negotiate h2, h2c with
	// prior knowledge and h2c Upgrades.
	h2      *h2.Server
	closers []func() error
	access  *accessLog

	mu    sync.Mutex
	addrs []net.Addr
	h1    []*http.Server
	h3    *http3.Server
	pc    net.PacketConn
	front *transport.StreamServer // the cleartext port: fast path, h2c diverted
	wg    sync.WaitGroup
	once  service.Once
}

// New builds a server from cfg; Start binds it.
func New(cfg Config, deps service.Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	cfg.defaults()
	deps = deps.Defaults()
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger.With("service", "http"), m: m, byHost: map[string]http.Handler{},
		fastByHost: map[string]*fileSite{}}
	for i, site := range cfg.Sites {
		var h http.Handler
		if site.Handler != nil {
			h = site.Handler
		} else if site.Shop != "" {
			sh, err := shop.Open(site.Shop, s.log)
			if err != nil {
				s.closeAll()
				return nil, err
			}
			s.closers = append(s.closers, sh.Close)
			h = sh
		} else {
			fsite, err := newFileSite(site)
			if err != nil {
				s.closeAll()
				return nil, err
			}
			s.closers = append(s.closers, fsite.close)
			fsite.pushes = m.pushes
			h = fsite
			if i == 0 {
				s.fastDeflt = fsite
			}
			for _, name := range site.Hosts {
				s.fastByHost[strings.ToLower(strings.TrimSuffix(name, "."))] = fsite
			}
		}
		if i == 0 {
			s.deflt = h
		}
		for _, name := range site.Hosts {
			s.byHost[strings.ToLower(strings.TrimSuffix(name, "."))] = h
		}
	}
	if cfg.AccessLog != "" {
		al, err := newAccessLog(cfg.AccessLog, cfg.AccessLogFile, s.log)
		if err != nil {
			s.closeAll()
			return nil, err
		}
		s.access = al
		s.closers = append(s.closers, al.close)
	}
	s.handler = s.observe(http.HandlerFunc(s.route))
	return s, nil
}

func (s *Server) closeAll() error {
	var errs []error
	for _, c := range s.closers {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}

// Handler returns the server's complete handler (for in-process use).
func (s *Server) Handler() http.Handler { return s.handler }

// Name implements service.Service.
func (s *Server) Name() string {
	if s.cfg.Addr != "" {
		return "http " + s.cfg.Addr
	}
	return "https " + s.cfg.TLSAddr
}

// Addrs implements service.Addresser: the cleartext TCP, TLS TCP and QUIC
// UDP addresses, those configured.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]net.Addr(nil), s.addrs...)
}

// HostName strips the port and a trailing dot from a Host header value and
// lowercases it.
func HostName(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	if len(s.byHost) == 0 {
		s.deflt.ServeHTTP(w, r)
		return
	}
	h, ok := s.byHost[HostName(r.Host)]
	if !ok {
		h = s.deflt
	}
	h.ServeHTTP(w, r)
}

func (s *Server) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case s.cfg.TLS.CertFile != "":
		c, err := tls.LoadX509KeyPair(s.cfg.TLS.CertFile, s.cfg.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("server: tls: %w", err)
		}
		tc.Certificates = []tls.Certificate{c}
	default:
		ca, err := labca.LoadOrCreate(s.cfg.TLS.CADir)
		if err != nil {
			return nil, err
		}
		names := append([]string{"localhost", "127.0.0.1", "::1"}, s.cfg.TLS.Names...)
		for _, site := range s.cfg.Sites {
			names = append(names, site.Hosts...)
		}
		if h, _, err := net.SplitHostPort(s.cfg.TLSAddr); err == nil && h != "" {
			names = append(names, h)
		}
		c, err := ca.Issue(names...)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{c}
	}
	return tc, nil
}

// httpServer returns an http.Server for h speaking p. counted says it
// counts its connections in the metrics itself (those the fast path's
// front hands over are counted there).
func (s *Server) httpServer(h http.Handler, p *http.Protocols, counted bool) *http.Server {
	hs := &http.Server{
		Handler:           h,
		Protocols:         p,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout.D(),
		ReadTimeout:       s.cfg.ReadTimeout.D(),
		WriteTimeout:      s.cfg.WriteTimeout.D(),
		IdleTimeout:       s.cfg.IdleTimeout.D(),
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ConnState: func(c net.Conn, st http.ConnState) {
			if !counted {
				return
			}
			switch st {
			case http.StateNew:
				s.m.conns.Inc()
				s.m.open.Inc()
				s.traceConn(c, trace.ConnOpen, "TCP connection opened")
			case http.StateClosed, http.StateHijacked:
				s.m.open.Dec()
				s.traceConn(c, trace.ConnClose, "TCP connection closed")
			}
		},
	}
	if s.cfg.NonPersistent {
		hs.SetKeepAlivesEnabled(false)
	}
	return hs
}

// Start binds every configured listener and starts serving.
func (s *Server) Start(ctx context.Context) error {
	var lc net.ListenConfig
	var lns []net.Listener
	var servers []*http.Server
	var pc net.PacketConn
	fail := func(err error) error {
		for _, ln := range lns {
			ln.Close()
		}
		if pc != nil {
			pc.Close()
		}
		return err
	}
	var addrs []net.Addr
	handler := s.handler
	if s.cfg.Addr != "" {
		// No TCP keep-alive probes on the cleartext port: idle connections
		// end at IdleTimeout anyway, and enabling them costs every accepted
		// connection four setsockopt calls.
		plain := net.ListenConfig{KeepAlive: -1}
		ln, err := plain.Listen(ctx, "tcp", s.cfg.Addr)
		if err != nil {
			return fail(fmt.Errorf("server: listen: %w", err))
		}
		ln = transport.WrapListener(ctx, ln) // a lab link, if any
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr())
	}
	var tc *tls.Config
	if s.cfg.TLSAddr != "" {
		var err error
		if tc, err = s.tlsConfig(); err != nil {
			return fail(err)
		}
		ln, err := lc.Listen(ctx, "tcp", s.cfg.TLSAddr)
		if err != nil {
			return fail(fmt.Errorf("server: listen tls: %w", err))
		}
		ln = transport.WrapListener(ctx, ln)
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr())
		if s.cfg.HTTP3 {
			// The UDP port is the TLS listener's (which may have been 0).
			pc, err = lc.ListenPacket(ctx, "udp", ln.Addr().String())
			if err != nil {
				return fail(fmt.Errorf("server: listen quic: %w", err))
			}
			addrs = append(addrs, pc.LocalAddr())
			s.h3 = &http3.Server{
				Handler:        s.handler,
				TLSConfig:      http3.ConfigureTLSConfig(s.traceHandshakes(tc.Clone(), "quic")),
				MaxHeaderBytes: s.cfg.MaxHeaderBytes,
				IdleTimeout:    s.cfg.IdleTimeout.D(),
				Port:           pc.LocalAddr().(*net.UDPAddr).Port,
				Logger:         s.log,
			}
			h3 := s.h3
			handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h3.SetQUICHeaders(w.Header())
				s.handler.ServeHTTP(w, r)
			})
		}
	}
	if s.h3 != nil {
		// The value quic-go's SetQUICHeaders gives once serving (Port set).
		s.altSvcValue = fmt.Sprintf("%s=\":%d\"; ma=2592000", http3.NextProtoH3, s.h3.Port)
		s.altSvc = []byte("Alt-Svc: " + s.altSvcValue + "\r\n")
	}
	maxHdr := uint32(s.cfg.MaxHeaderBytes)
	s.h2 = h2.New(h2.Config{
		MaxHeaderListSize: maxHdr,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout.D(),
		ReadTimeout:       s.cfg.ReadTimeout.D(),
		IdleTimeout:       s.cfg.IdleTimeout.D(),
		Logger:            s.log,
	}, handler, fastH2{s})
	h2srv := s.h2
	type serving struct {
		hs *http.Server
		ln net.Listener
	}
	var serve []serving
	var front *transport.StreamServer
	if s.cfg.Addr != "" {
		// One port, HTTP/1.1 on the fast path and, unless NoH2C, h2c with
		// prior knowledge: the first bytes decide per connection.
		var p1 http.Protocols
		p1.SetHTTP1(true)
		h1 := transport.NewHandoff(lns[0].Addr())
		h1handler := handler
		if !s.cfg.NoH2C {
			// An HTTP/1.1 request asking to upgrade to h2c (the fast
			// path hands Upgrade requests to net/http).
			h1handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if h2.IsUpgrade(r) && h2srv.ServeUpgrade(w, r) {
					return
				}
				handler.ServeHTTP(w, r)
			})
		}
		serve = append(serve, serving{s.httpServer(h1handler, &p1, false), h1})
		fc := fastpath.Config{
			ReadHeaderTimeout: s.cfg.ReadHeaderTimeout.D(),
			IdleTimeout:       s.cfg.IdleTimeout.D(),
			MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
			HandOver:          h1.Deliver,
		}
		if !s.cfg.NoH2C {
			fc.Preface = preface
			fc.Divert = func(c net.Conn) bool {
				s.wg.Go(func() { h2srv.ServeConn(c, false) })
				return true
			}
		}
		local := lns[0].Addr().String()
		front = transport.NewStreamServer(transport.StreamConfig{
			Logger: s.log,
			// Beyond this many connections idle keep-alive ones wait in
			// the server's epoll instead of a goroutine each.
			ParkIdleAbove: parkIdleAbove,
			ParkBareAfter: parkBareAfter,
			// accept4 and plain system calls until one would block: a
			// Connection: close request costs four of them
			// (transport/direct.go).
			DirectAccept: true,
			// and each new connection served on the accepting goroutine
			// (the fast path waits on nothing but its connection).
			DirectInline: true,
			// The kernel hands a connection over once its request has
			// arrived (nginx's "listen ... deferred"): the first read
			// finds it instead of waiting in the poller.
			DeferAccept: time.Second,
			OnPanic: func(c net.Conn, _ any) {
				s.m.panics.Inc()
				io.WriteString(c, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			},
			Observe: func(e transport.Event) {
				switch e.Kind {
				case transport.EventAccepted:
					s.m.conns.Inc()
					s.m.open.Inc()
					s.traceRemote(e.Remote, local, trace.ConnOpen, "TCP connection opened")
				case transport.EventClosed:
					s.m.open.Dec()
					s.traceRemote(e.Remote, local, trace.ConnClose, "TCP connection closed")
				}
			},
		}, fastpath.New(fc, fastHandler{s}))
	}
	if s.cfg.TLSAddr != "" {
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetHTTP2(true)
		hs := s.httpServer(handler, &p, true)
		hs.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){
			"h2": func(_ *http.Server, c *tls.Conn, _ http.Handler) { h2srv.ServeConn(c, true) },
		}
		// ALPN as ServeTLS would set it, explicit so that a traced
		// handshake's own config (traceHandshakes) offers it too.
		tc.NextProtos = []string{"h2", "http/1.1"}
		hs.TLSConfig = s.traceHandshakes(tc, "tls")
		serve = append(serve, serving{hs, lns[len(lns)-1]})
	}
	for _, sv := range serve {
		servers = append(servers, sv.hs)
	}
	s.mu.Lock()
	s.addrs, s.h1, s.pc, s.front = addrs, servers, pc, front
	s.mu.Unlock()
	for _, sv := range serve {
		hs, ln := sv.hs, sv.ln
		s.wg.Go(func() {
			var err error
			if hs.TLSConfig != nil {
				err = hs.ServeTLS(ln, "", "") // sets up ALPN for h2
			} else {
				err = hs.Serve(ln)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("serve", "err", err)
			}
		})
	}
	if front != nil {
		front.Start(lns[0])
	}
	if s.h3 != nil {
		h3 := s.h3
		s.wg.Go(func() {
			if err := h3.Serve(pc); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("serve quic", "err", err)
			}
		})
	}
	for _, a := range addrs {
		s.log.Info("http server listening", "network", a.Network(), "addr", a.String())
	}
	return nil
}

// Shutdown stops accepting, lets requests in flight finish within ctx and
// closes every connection, database and log file.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.once.Do(ctx, func(ctx context.Context) error {
		s.mu.Lock()
		servers, h3, pc, front := s.h1, s.h3, s.pc, s.front
		s.mu.Unlock()
		var errs []error
		if front != nil {
			// Stop accepting; idle fast-path connections close, a batch
			// being written finishes; hand-overs in progress reach the
			// http.Servers, which drain below.
			if err := front.Shutdown(ctx); err != nil {
				front.Close()
				errs = append(errs, err)
			}
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		if s.h2 != nil {
			wg.Go(func() {
				err := s.h2.Shutdown(ctx)
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			})
		}
		for _, hs := range servers {
			wg.Go(func() {
				err := hs.Shutdown(ctx)
				if err != nil {
					hs.Close()
				}
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			})
		}
		if h3 != nil {
			wg.Go(func() {
				err := h3.Shutdown(ctx)
				if err != nil {
					h3.Close()
				}
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			})
		}
		wg.Wait()
		if pc != nil {
			pc.Close()
		}
		s.wg.Wait()
		errs = append(errs, s.closeAll())
		return errors.Join(errs...)
	})
}
