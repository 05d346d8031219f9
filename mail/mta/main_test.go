package mta

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/mail/smtpd"
)

// childEnv makes the test binary a mail server (the kill -9 test's own
// process): it serves the directory the variable names until killed.
const childEnv = "APPLAYER_MTA_TEST_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(runChild(dir))
	}
	testkit.VerifyNoLeaks(m)
}

func runChild(dir string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg := Config{
		SMTP:  smtpd.Config{Addr: "127.0.0.1:0", Domains: []string{"hamburger.edu"}},
		DB:    filepath.Join(dir, "mail.db"),
		Spool: filepath.Join(dir, "spool"),
	}
	// A "relay" file ("RESOLVER PORT") makes it crepes.fr's server,
	// relaying through that resolver to that SMTP port.
	if b, err := os.ReadFile(filepath.Join(dir, "relay")); err == nil {
		var port int
		if _, err := fmt.Sscan(string(b), &cfg.Resolver, &port); err != nil {
			fmt.Fprintln(os.Stderr, "relay file:", err)
			return 1
		}
		cfg.SMTP.Domains, cfg.RelayPort, cfg.RelayTimeout = []string{"crepes.fr"}, port, 10*time.Second
		cfg.Queue.RetryMin, cfg.Queue.RetryMax = 100*time.Millisecond, time.Second
	}
	srv, err := New(ctx, cfg, service.Deps{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := srv.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The address, for the parent, written whole (rename).
	tmp := filepath.Join(dir, "addr.tmp")
	os.WriteFile(tmp, []byte(srv.Addrs()[0].String()), 0o600)
	os.Rename(tmp, filepath.Join(dir, "addr"))
	<-ctx.Done()
	srv.Shutdown(context.Background())
	return 0
}
