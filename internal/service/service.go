// Package service defines the lifecycle every applayer server shares and a
// Group that starts several services in order, rolls back on the first
// failure and stops them in reverse order.
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

// Group starts services in order and stops them in reverse order.
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

// Start starts every service in order. If one fails, those already started
// are shut down in reverse order and the returned error names the failing
// service (joined with any error from the rollback).
func (g *Group) Start(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.started) > 0 {
		return errors.New("service: group already started")
	}
	for _, s := range g.services {
		if err := s.Start(ctx); err != nil {
			startErr := fmt.Errorf("service: start %s: %w", s.Name(), err)
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultGrace)
			rbErr := g.shutdownLocked(sctx)
			cancel()
			return errors.Join(startErr, rbErr)
		}
		g.logger.Debug("service started", "service", s.Name())
		g.started = append(g.started, s)
	}
	return nil
}

// Shutdown stops the started services in reverse order. Each service gets
// what is left of ctx; errors are joined. Safe to call more than once.
func (g *Group) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.shutdownLocked(ctx)
}

func (g *Group) shutdownLocked(ctx context.Context) error {
	var errs []error
	for i := len(g.started) - 1; i >= 0; i-- {
		s := g.started[i]
		if err := s.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("service: shutdown %s: %w", s.Name(), err))
		}
		g.logger.Debug("service stopped", "service", s.Name())
	}
	g.started = nil
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
		return ctx.Err()
	}
}
