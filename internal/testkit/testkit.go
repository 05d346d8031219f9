// Package testkit holds helpers shared by applayer's tests: a goroutine-leak
// check, a logger that writes to the test log, and a short-lived context.
package testkit

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// VerifyNoLeaks runs the package's tests and then fails if goroutines are
// left over. Call it from TestMain: func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }.
func VerifyNoLeaks(m *testing.M, opts ...goleak.Option) {
	goleak.VerifyTestMain(m, opts...)
}

// Logger returns a slog logger that writes through t.Log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Context returns a context cancelled at the end of the test or after d.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
