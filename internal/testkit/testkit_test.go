package testkit

import (
	"context"
	"errors"
	"net"
	"testing"
)

// listener is a real service for Start's test: a TCP listener on
// 127.0.0.1:0 that accepts nothing.
type listener struct {
	ln      net.Listener
	stopErr error
}

func (l *listener) Start(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	l.ln = ln
	return err
}

func (l *listener) Shutdown(context.Context) error {
	return errors.Join(l.ln.Close(), l.stopErr)
}

// TestStart: the service listens during the test and is shut down at its
// end; a failing shutdown fails the test.
func TestStart(t *testing.T) {
	var l *listener
	t.Run("inner", func(t *testing.T) {
		l = Start(t, &listener{})
		c, err := net.Dial("tcp", l.ln.Addr().String())
		if err != nil {
			t.Fatalf("not listening during the test: %v", err)
		}
		c.Close()
	})
	if _, err := net.Dial("tcp", l.ln.Addr().String()); err == nil {
		t.Error("still listening after the test")
	}
	failed := false
	t.Run("shutdown error", func(t *testing.T) {
		// A recorder stands for the test, so the expected failure does
		// not fail this one.
		ft := &recorder{TB: t}
		Start[*listener](ft, &listener{stopErr: errors.New("boom")})
		ft.cleanup()
		failed = ft.failed
	})
	if !failed {
		t.Error("a failing shutdown did not fail the test")
	}
}

// recorder is a testing.TB that records failures and cleanups instead of
// acting on them.
type recorder struct {
	testing.TB
	failed   bool
	cleanups []func()
}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true }
func (r *recorder) Cleanup(f func())      { r.cleanups = append(r.cleanups, f) }
func (r *recorder) cleanup() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}
