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
			name:    "starts in order and stops in reverse",
			failAt:  -1,
			wantLog: []string{"start a", "start b", "start c", "stop c", "stop b", "stop a"},
		},
		{
			name:      "rolls back on the first failure",
			failAt:    2,
			wantLog:   []string{"start a", "start b", "start c", "stop b", "stop a"},
			wantError: "service: start c: boom",
		},
		{
			name:      "first service failing starts nothing else",
			failAt:    0,
			wantLog:   []string{"start a"},
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
	err := g.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown of a stuck service = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Shutdown took %v despite a 50ms deadline", d)
	}
	close(stuck.block)
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
