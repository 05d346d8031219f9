// Package pgtest runs a PostgreSQL server for tests: Debian's postgresql
// package (initdb and postgres from /usr/lib/postgresql/<version>/bin), a
// fresh cluster in a temporary directory, listening on a Unix socket in
// that directory only (no TCP), run as the test's own child process and
// stopped by its PID. As root it runs as the postgres system user (the
// server refuses root). A missing package skips the test, or fails it
// naming the package under APPLAYER_REQUIRE_PEERS.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/applayer/applayer/internal/testkit"
)

// Package is the Debian package the server comes from.
const Package = "postgresql"

// Server is a running PostgreSQL server.
type Server struct {
	dir     string // removed by Stop
	sockDir string
	cmd     *exec.Cmd
	dbs     atomic.Int64
}

// BinDir returns the newest /usr/lib/postgresql/*/bin holding initdb and
// postgres, or "".
func BinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if fileExists(filepath.Join(d, "initdb")) && fileExists(filepath.Join(d, "postgres")) {
			return d
		}
	}
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Require skips t (fails it under APPLAYER_REQUIRE_PEERS) when PostgreSQL is
// not installed.
func Require(t testing.TB) {
	t.Helper()
	if BinDir() == "" {
		testkit.Skip(t, "PostgreSQL (initdb, postgres under /usr/lib/postgresql/*/bin) is missing: install Debian package %s (make test does: scripts/peers.txt)", Package)
	}
}

// Start starts a server for the length of the test.
func Start(t testing.TB) *Server {
	t.Helper()
	Require(t)
	s, err := StartServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// StartServer starts a server; the caller stops it with Stop (a package's
// TestMain shares one among its tests). It fails when PostgreSQL is
// missing: call Skip first.
func StartServer() (*Server, error) {
	bin := BinDir()
	if bin == "" {
		return nil, fmt.Errorf("pgtest: PostgreSQL is not installed (Debian package %s)", Package)
	}
	dir, err := os.MkdirTemp("", "applayer-pg-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	s := &Server{dir: dir, sockDir: filepath.Join(dir, "sock")}
	if err := s.start(bin); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) start(bin string) error {
	data := filepath.Join(s.dir, "data")
	for _, d := range []string{data, s.sockDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
	}
	var uid, gid = -1, -1
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root: run as its system user.
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("pgtest: running as root, and no postgres user to run the server as: %w", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		for _, d := range []string{s.dir, data, s.sockDir} {
			if err := os.Chown(d, uid, gid); err != nil {
				return fmt.Errorf("pgtest: %w", err)
			}
		}
		os.Chmod(s.dir, 0o755)
	}
	logPath := filepath.Join(s.dir, "server.log")
	log, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer log.Close()
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	initdb.Stdout, initdb.Stderr = log, log
	initdb.SysProcAttr = sysProcAttr(uid, gid)
	if err := initdb.Run(); err != nil {
		return fmt.Errorf("pgtest: initdb: %w\n%s", err, readLog(logPath))
	}
	// Unix socket only (no TCP listener), and durability traded for
	// speed: the cluster is thrown away with the test.
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-k", s.sockDir,
		"-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "shared_buffers=16MB")
	s.cmd.Stdout, s.cmd.Stderr = log, log
	s.cmd.SysProcAttr = sysProcAttr(uid, gid)
	if err := s.cmd.Start(); err != nil {
		s.cmd = nil
		return fmt.Errorf("pgtest: postgres: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		c, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err == nil {
			c.Close(ctx)
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("pgtest: server did not come up: %w\n%s", err, readLog(logPath))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func readLog(p string) string {
	b, _ := os.ReadFile(p)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// DSN returns the connection string of a database of the server.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("host=%s port=5432 user=postgres dbname=%s sslmode=disable", s.sockDir, db)
}

// URL returns a database's postgres:// URL (what --store takes).
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres:///%s?host=%s&port=5432&user=postgres&sslmode=disable", db, s.sockDir)
}

// NewDatabase creates an empty database and returns its name.
func (s *Server) NewDatabase(ctx context.Context) (string, error) {
	name := fmt.Sprintf("test_%d", s.dbs.Add(1))
	c, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("pgtest: create database: %w", err)
	}
	return name, nil
}

// Stop stops the server (fast shutdown, then SIGKILL after 10 seconds)
// and removes its directory.
func (s *Server) Stop() error {
	var err error
	if s.cmd != nil && s.cmd.Process != nil {
		done := make(chan error, 1)
		go func() { done <- s.cmd.Wait() }()
		s.cmd.Process.Signal(os.Interrupt) // SIGINT: fast shutdown
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
			<-done
			err = errors.New("pgtest: postgres did not stop in 10s: killed")
		}
		s.cmd = nil
	}
	return errors.Join(err, os.RemoveAll(s.dir))
}
