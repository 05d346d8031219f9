// Package service defines the lifecycle every applayer server shares and a
// Group that starts several services in order, rolls back on the first
// failure and stops them all at once, each within its grace period.
//
// The lifecycle, for every server in the project:
//
//  1. construct from a config struct and Deps (New(cfg, deps));
//  2. Start(ctx) binds every listener and returns once the service is ready,
//     so port 0 works and the bound addresses can be read back (Addrs);
//  3. Shutdown(ctx) stops accepting, drains in-flight work and returns when
//     done or when ctx ends; calling it twice is safe.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Service is a server with the shared lifecycle.
type Service interface {
	// Name identifies the service instance in logs and errors.
	Name() string
	// Start binds the service's listeners and returns once it is ready to
	// serve. The context bounds start-up only; it does not stop the service.
	Start(ctx context.Context) error
	// Shutdown stops the service, draining in-flight work until ctx ends.
	// It is safe to call more than once and on a service never started.
	Shutdown(ctx context.Context) error
}

// Addresser is implemented by services that can report the addresses they
// are bound to after Start.
type Addresser interface {
	Addrs() []net.Addr
}

// DefaultGrace is how long a Group gives its services to drain on shutdown
// when the caller's context has no deadline.
const DefaultGrace = 5 * time.Second

// Group starts services in order and stops them in parallel.
type Group struct {
	logger *slog.Logger

	mu       sync.Mutex
	services []Service
	started  []Service
}

// NewGroup returns a group of the given services, started in that order.
func NewGroup(logger *slog.Logger, services ...Service) *Group {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Group{logger: logger, services: services}
}

// Add appends a service; it is started after those added before it.
func (g *Group) Add(s Service) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.services = append(g.services, s)
}

// Services returns the group's services in start order.
func (g *Group) Services() []Service {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Service(nil), g.services...)
}

// Start starts every service in order. If one fails, every service of the
// group is shut down (those started, the one that failed and those never
// started: constructing a service may already hold resources, such as a
// database, that only Shutdown releases) and the returned error names the
// failing service (joined with any error from the rollback).
func (g *Group) Start(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.started) > 0 {
		return errors.New("service: group already started")
	}
	for _, s := range g.services {
		if err := s.Start(ctx); err != nil {
			startErr := fmt.Errorf("service: start %s: %w", s.Name(), err)
			g.started = append([]Service(nil), g.services...)
			rbErr := g.shutdownLocked(context.WithoutCancel(ctx))
			return errors.Join(startErr, rbErr)
		}
		g.logger.Debug("service started", "service", s.Name())
		g.started = append(g.started, s)
	}
	return nil
}

// Shutdown stops the started services, all at once: they are independent
// (each drains its own connections), so one slow to drain does not eat into
// the others' time. Each gets ctx as its grace period, or DefaultGrace when
// ctx has no deadline. A service that is still draining when its grace
// period ends closes what is left (that is what the grace period is for):
// it is logged as a warning, not reported as a failure. Other errors are
// joined, each naming its service. Safe to call more than once.
func (g *Group) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.shutdownLocked(ctx)
}

func (g *Group) shutdownLocked(ctx context.Context) error {
	started := g.started
	g.started = nil
	errs := make([]error, len(started))
	var wg sync.WaitGroup
	for i, s := range started {
		wg.Go(func() {
			sctx, cancel := ctx, context.CancelFunc(func() {})
			if _, ok := ctx.Deadline(); !ok {
				sctx, cancel = context.WithTimeout(ctx, DefaultGrace)
			}
			defer cancel()
			err := s.Shutdown(sctx)
			switch {
			case err == nil:
				g.logger.Debug("service stopped", "service", s.Name())
			case sctx.Err() != nil && errors.Is(err, sctx.Err()):
				g.logger.Warn("service stopped: it did not drain within its grace period, so its remaining work was cut off", "service", s.Name())
			default:
				errs[i] = fmt.Errorf("service: shutdown %s: %w", s.Name(), err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Run starts the group, waits for ctx to end (a signal, typically) and then
// shuts the group down within grace. It returns the start error, or the
// shutdown error.
func Run(ctx context.Context, g *Group, grace time.Duration, ready func()) error {
	if err := g.Start(ctx); err != nil {
		return err
	}
	if ready != nil {
		ready()
	}
	<-ctx.Done()
	if grace <= 0 {
		grace = DefaultGrace
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	return g.Shutdown(sctx)
}

// Once makes Shutdown idempotent: the first call runs f, later calls return
// its result.
type Once struct {
	once sync.Once
	err  error
	done chan struct{}
	mu   sync.Mutex
}

// Do runs f the first time it is called and returns f's error every time.
// Concurrent callers wait for the first call to finish or for ctx to end.
func (o *Once) Do(ctx context.Context, f func(context.Context) error) error {
	o.mu.Lock()
	if o.done == nil {
		o.done = make(chan struct{})
	}
	done := o.done
	o.mu.Unlock()
	o.once.Do(func() {
		o.err = f(ctx)
		close(done)
	})
	select {
	case <-done:
		return o.err
	case <-ctx.Done():
		select {
		case <-done: // finished as ctx ended: its own result counts
			return o.err
		default:
			return ctx.Err()
		}
	}
}
