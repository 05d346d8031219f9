package service

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// fake records lifecycle calls in a shared log.
type fake struct {
	name     string
	startErr error
	log      *[]string
	mu       *sync.Mutex
	block    chan struct{} // Shutdown waits on it (or ctx)
	once     Once
}

func (f *fake) Name() string { return f.name }
func (f *fake) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	*f.log = append(*f.log, s)
}
func (f *fake) Start(context.Context) error {
	f.record("start " + f.name)
	return f.startErr
}
func (f *fake) Shutdown(ctx context.Context) error {
	return f.once.Do(ctx, func(ctx context.Context) error {
		f.record("stop " + f.name)
		if f.block != nil {
			select {
			case <-f.block:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
}

func TestGroup(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name      string
		failAt    int // index of the service whose Start fails; -1 for none
		wantLog   []string
		wantError string
	}{
		{
			name:    "starts in order and stops every one",
			failAt:  -1,
			wantLog: []string{"start a", "start b", "start c", "stop a", "stop b", "stop c"},
		},
		{
			name:      "rolls back on the first failure",
			failAt:    2,
			wantLog:   []string{"start a", "start b", "start c", "stop a", "stop b", "stop c"},
			wantError: "service: start c: boom",
		},
		{
			name:      "first service failing starts nothing else; all are shut down",
			failAt:    0,
			wantLog:   []string{"start a", "stop a", "stop b", "stop c"},
			wantError: "service: start a: boom",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log []string
			var mu sync.Mutex
			var svcs []Service
			for i, n := range []string{"a", "b", "c"} {
				f := &fake{name: n, log: &log, mu: &mu}
				if i == tt.failAt {
					f.startErr = boom
				}
				svcs = append(svcs, f)
			}
			g := NewGroup(testkit.Logger(t), svcs...)
			err := g.Start(context.Background())
			if tt.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantError) || !errors.Is(err, boom) {
					t.Fatalf("Start error = %v, want %q wrapping boom", err, tt.wantError)
				}
			} else {
				if err != nil {
					t.Fatalf("Start: %v", err)
				}
				if err := g.Shutdown(context.Background()); err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
				// A second Shutdown is a no-op.
				if err := g.Shutdown(context.Background()); err != nil {
					t.Fatalf("second Shutdown: %v", err)
				}
			}
			// Starts happen in order; stops at once, in any order.
			first := slices.IndexFunc(log, func(s string) bool { return strings.HasPrefix(s, "stop ") })
			if first >= 0 {
				slices.Sort(log[first:])
			}
			if !slices.Equal(log, tt.wantLog) {
				t.Errorf("calls = %q, want %q", log, tt.wantLog)
			}
		})
	}
}

func TestGroupShutdownBounded(t *testing.T) {
	var log []string
	var mu sync.Mutex
	stuck := &fake{name: "stuck", log: &log, mu: &mu, block: make(chan struct{})}
	g := NewGroup(nil, stuck)
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	// Cut off at the end of its grace period: a warning, not a failure.
	if err := g.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown of a service cut off at its deadline = %v, want nil", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Shutdown took %v despite a 50ms deadline", d)
	}
	close(stuck.block)
}

// ctxProbe records, when its Shutdown is called, whether the context it was
// given had already ended, then returns err.
type ctxProbe struct {
	name string
	err  error
	mu   sync.Mutex
	late bool // Shutdown was called with an ended context
	seen bool
}

func (p *ctxProbe) Name() string                { return p.name }
func (p *ctxProbe) Start(context.Context) error { return nil }
func (p *ctxProbe) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.seen, p.late = true, ctx.Err() != nil
	p.mu.Unlock()
	return p.err
}

// TestGroupShutdownParallel: one service slow to drain (it uses its whole
// grace period and is cut off) must not leave the others an ended context,
// and only a real failure is reported. Stopping one after another under one
// deadline gave every service after the slow one an expired context, and the
// lab reported them all as failed ("context deadline exceeded").
func TestGroupShutdownParallel(t *testing.T) {
	var log []string
	var mu sync.Mutex
	first := &ctxProbe{name: "first"}
	failing := &ctxProbe{name: "db", err: errors.New("close db: disk full")}
	slow := &fake{name: "slow", log: &log, mu: &mu, block: make(chan struct{})}
	defer close(slow.block)
	// Started first..slow, so a reverse-order stop reaches slow first.
	g := NewGroup(testkit.Logger(t), first, failing, slow)
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := g.Shutdown(ctx)
	for _, p := range []*ctxProbe{first, failing} {
		if !p.seen || p.late {
			t.Errorf("%s: Shutdown called %v, with an ended context %v; want called within its grace period", p.name, p.seen, p.late)
		}
	}
	if err == nil || !strings.Contains(err.Error(), "service: shutdown db: close db: disk full") {
		t.Fatalf("Shutdown = %v, want the db's failure", err)
	}
	if strings.Contains(err.Error(), "slow") || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v: the slow service cut off at its deadline is not a failure", err)
	}
}

// TestOnceDoneAtDeadline: when f has finished by the time ctx ends, Do
// returns f's result, not ctx's error (select picks at random among ready
// cases, which made a service that stopped cleanly report a deadline).
func TestOnceDoneAtDeadline(t *testing.T) {
	for range 200 {
		var o Once
		ctx, cancel := context.WithCancel(context.Background())
		err := o.Do(ctx, func(context.Context) error { cancel(); return nil })
		if err != nil {
			t.Fatalf("Do = %v, want f's nil", err)
		}
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	var log []string
	var mu sync.Mutex
	g := NewGroup(nil, &fake{name: "a", log: &log, mu: &mu})
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- Run(ctx, g, time.Second, func() { close(ready) }) }()
	<-ready
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if want := []string{"start a", "stop a"}; !slices.Equal(log, want) {
		t.Errorf("calls = %q, want %q", log, want)
	}
}

func TestOnceConcurrent(t *testing.T) {
	var o Once
	var calls int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			err := o.Do(context.Background(), func(context.Context) error {
				mu.Lock()
				calls++
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
				return errors.New("x")
			})
			if err == nil || err.Error() != "x" {
				t.Errorf("Do = %v, want the first call's error", err)
			}
		})
	}
	wg.Wait()
	if calls != 1 {
		t.Fatalf("f ran %d times, want 1", calls)
	}
}
