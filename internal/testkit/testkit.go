// Package testkit holds helpers shared by applayer's tests: a goroutine-leak
// check, a logger that writes to the test log, a short-lived context, a
// service started for the length of a test, peer lookup, a settable clock.
package testkit

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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

// Peer returns the path of an external test peer (dig, nc, curl...). When it
// is missing the test is skipped, or fails when APPLAYER_REQUIRE_PEERS is set
// (make test sets it, after installing the peers).
func Peer(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin", goBin()} {
			if p := filepath.Join(dir, name); dir != "" && isExecutable(p) {
				return p
			}
		}
		Skip(t, "test peer %s is not installed (make test installs it: see scripts/peers.txt)", name)
	}
	return path
}

// goBin is where go install puts programs (scripts/install-peers.sh builds
// the Go test peers there): $GOBIN, else the first $GOPATH's bin, else
// ~/go/bin (the go command's defaults).
func goBin() string {
	if d := os.Getenv("GOBIN"); d != "" {
		return d
	}
	if gp := filepath.SplitList(os.Getenv("GOPATH")); len(gp) > 0 && gp[0] != "" {
		return filepath.Join(gp[0], "bin")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, "go", "bin")
	}
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// FreePort returns a port that was free on addr a moment ago, for peers
// that cannot be told to use port 0.
func FreePort(t testing.TB, network, addr string) int {
	t.Helper()
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp", net.JoinHostPort(addr, "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	default:
		l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
}

// Clock is a settable clock for service.Deps.Now, so tests move time
// instead of sleeping. It is safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock reading t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Buffer collects a peer process's output while the test reads it: safe
// for the writer goroutine of exec.Cmd and the test at once.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write appends p.
func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Server is what Start runs: an internal/service.Service (declared here so
// that service's own tests may use testkit).
type Server interface {
	Start(ctx context.Context) error
	Shutdown(ctx context.Context) error
}

// StopTimeout bounds Start's start-up and the shutdown at test end.
const StopTimeout = 10 * time.Second

// Start starts s, configured by the caller to listen on 127.0.0.1:0 (or a
// test's own loopback address), failing the test at once if it does not
// start within StopTimeout, and shuts it down when the test ends
// (t.Cleanup), reporting a shutdown that fails or outlasts StopTimeout. It
// returns s, for s.Addrs().
func Start[S Server](t testing.TB, s S) S {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), StopTimeout)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), StopTimeout)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}
