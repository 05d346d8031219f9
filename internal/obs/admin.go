package obs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/applayer/applayer/internal/service"
)

// AdminConfig configures the admin listener.
type AdminConfig struct {
	// Addr is the listen address, e.g. "127.0.0.1:9900". Port 0 picks one.
	Addr string `json:"addr"`
	// AllowRemote permits a non-loopback Addr. Off by default: the admin
	// listener exposes purge and flush endpoints and must stay local.
	AllowRemote bool `json:"allow_remote,omitempty"`
}

// Validate checks that Addr parses and is loopback unless AllowRemote.
func (c AdminConfig) Validate() error {
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("addr: %w", err)
	}
	if c.AllowRemote {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("addr: %q is not a loopback address (admin listeners are loopback-only unless allow_remote is set)", c.Addr)
	}
	return nil
}

// NewRegistry returns a fresh registry with the Go runtime and process
// collectors, one per applayer instance (never the global one).
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Admin is the admin HTTP listener: /metrics, /healthz, /readyz, plus any
// handlers the services add with Handle before Start.
type Admin struct {
	cfg    AdminConfig
	reg    prometheus.Gatherer
	logger *slog.Logger
	mux    *http.ServeMux
	ready  atomic.Bool

	mu   sync.Mutex
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
	once service.Once
}

// NewAdmin returns an admin listener serving reg's metrics.
func NewAdmin(cfg AdminConfig, reg prometheus.Gatherer, logger *slog.Logger) (*Admin, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("obs: admin %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &Admin{cfg: cfg, reg: reg, logger: logger, mux: http.NewServeMux()}
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	a.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return a, nil
}

// Handle adds a handler to the admin mux (e.g. "POST /cache/purge").
// Call it before Start.
func (a *Admin) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

// SetReady sets what /readyz reports.
func (a *Admin) SetReady(ok bool) { a.ready.Store(ok) }

// Name implements service.Service.
func (a *Admin) Name() string { return "admin" }

// Start binds the admin listener.
func (a *Admin) Start(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", a.cfg.Addr)
	if err != nil {
		return fmt.Errorf("obs: admin listen: %w", err)
	}
	srv := &http.Server{
		Handler:           a.mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelDebug),
	}
	a.mu.Lock()
	a.srv, a.ln, a.done = srv, ln, make(chan struct{})
	a.mu.Unlock()
	go func() {
		defer close(a.done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.logger.Error("admin listener stopped", "err", err)
		}
	}()
	a.logger.Info("admin listening", "addr", ln.Addr().String())
	return nil
}

// Addrs returns the bound address after Start.
func (a *Admin) Addrs() []net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ln == nil {
		return nil
	}
	return []net.Addr{a.ln.Addr()}
}

// Shutdown stops the listener and waits for in-flight requests.
func (a *Admin) Shutdown(ctx context.Context) error {
	return a.once.Do(ctx, func(ctx context.Context) error {
		a.mu.Lock()
		srv, done := a.srv, a.done
		a.mu.Unlock()
		if srv == nil {
			return nil
		}
		err := srv.Shutdown(ctx)
		if err != nil {
			srv.Close()
		}
		<-done
		return err
	})
}

// NewServiceAdmin returns a service's own admin listener (a proxy's
// --admin, an edge's control listener) serving the metrics the service
// registers in reg: reg itself when it is a registry (a Gatherer), else an
// empty registry's.
func NewServiceAdmin(cfg AdminConfig, reg prometheus.Registerer, logger *slog.Logger) (*Admin, error) {
	g, ok := reg.(prometheus.Gatherer)
	if !ok {
		g = prometheus.NewRegistry()
	}
	return NewAdmin(cfg, g, logger)
}
