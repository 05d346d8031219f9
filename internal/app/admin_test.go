package app

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
)

// command is an applayer command line running in the test.
type command struct {
	out  *testkit.Buffer
	done chan struct{} // closed when it returned
	err  error
}

// wait returns the command's result once it has returned.
func (c *command) wait() error { <-c.done; return c.err }

// runCommand runs the applayer command line args until the test ends (or
// it returns).
func runCommand(t *testing.T, args ...string) *command {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &command{out: &testkit.Buffer{}, done: make(chan struct{})}
	root := NewRoot(strings.NewReader(""), c.out, c.out)
	root.SetArgs(append([]string{"--log-level", "warn"}, args...))
	go func() { defer close(c.done); c.err = root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%v did not stop", args)
		}
	})
	return c
}

var adminLine = regexp.MustCompile(`admin listening on tcp (\S+)`)

// TestAdminOnEveryServerCommand starts every server command with --admin
// on 127.0.0.1:0 and checks the shared endpoints and the system's own.
func TestAdminOnEveryServerCommand(t *testing.T) {
	dir := t.TempDir()
	zoneFile := filepath.Join(dir, "db.example.com")
	os.WriteFile(zoneFile, []byte("$ORIGIN example.com.\n@ 3600 IN SOA ns hostmaster 1 3600 600 86400 300\n@ 3600 IN NS ns\nns 3600 IN A 127.0.0.1\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("hi"), 0o644)
	tests := []struct {
		name    string
		args    []string
		metric  string
		own     string // "METHOD path" of the system's own admin endpoint
		ownWant string
	}{
		{"udp-server", []string{"sockets", "udp-server", "--listen", "127.0.0.1:0"}, "applayer_sockets_", "", ""},
		{"tcp-server", []string{"sockets", "tcp-server", "--listen", "127.0.0.1:0"}, "applayer_sockets_", "", ""},
		{"dns serve", []string{"dns", "serve", "--listen", "127.0.0.1:0", "--zone", "example.com=" + zoneFile}, "applayer_dns_authority_", "POST /dns/authority/reload", "reloaded"},
		{"dns resolver", []string{"dns", "resolver", "--listen", "127.0.0.1:0", "--root-hint", "127.0.0.1"}, "applayer_dns_resolver_", "POST /dns/resolver/flush", "flushed"},
		{"http serve", []string{"http", "serve", "--listen", "127.0.0.1:0", "--root", dir}, "applayer_http_server_", "", ""},
		{"http proxy", []string{"http", "proxy", "--listen", "127.0.0.1:0", "--gc-percent", "0"}, "applayer_web_cache_", "GET /cache/stats", `"requests"`},
		{"torrent tracker", []string{"torrent", "tracker", "--http", "127.0.0.1:0", "--udp", "127.0.0.1:0"}, "applayer_torrent_", "GET /torrent/tracker/stats", "torrents"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := runCommand(t, append(tc.args, "--admin", "127.0.0.1:0")...)
			out := c.out
			var admin string
			deadline := time.Now().Add(10 * time.Second)
			for admin == "" {
				if m := adminLine.FindStringSubmatch(out.String()); m != nil {
					admin = "http://" + m[1]
					break
				}
				select {
				case <-c.done:
					t.Fatalf("command ended: %v\n%s", c.err, out.String())
				case <-time.After(10 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("no admin listener announced:\n%s", out.String())
				}
			}
			defer http.DefaultClient.CloseIdleConnections()
			get := func(method, path string) (int, string) {
				req, _ := http.NewRequest(method, admin+path, nil)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", method, path, err)
				}
				defer res.Body.Close()
				b, _ := io.ReadAll(res.Body)
				return res.StatusCode, string(b)
			}
			if code, body := get("GET", "/healthz"); code != 200 || body != "ok\n" {
				t.Errorf("/healthz: %d %q", code, body)
			}
			// Ready once every service started (the announcement comes
			// just before).
			for i := 0; ; i++ {
				code, body := get("GET", "/readyz")
				if code == 200 && body == "ready\n" {
					break
				}
				if i == 200 {
					t.Fatalf("/readyz: %d %q", code, body)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if code, body := get("GET", "/metrics"); code != 200 || !strings.Contains(body, tc.metric) || !strings.Contains(body, "go_goroutines") {
				t.Errorf("/metrics: %d, lacks %s:\n%.500s", code, tc.metric, body)
			}
			if tc.own != "" {
				method, path, _ := strings.Cut(tc.own, " ")
				if code, body := get(method, path); code != 200 || !strings.Contains(body, tc.ownWant) {
					t.Errorf("%s: %d %q, want 200 with %q", tc.own, code, body, tc.ownWant)
				}
			}
		})
	}
}

// TestAdminLoopbackOnly: a non-loopback --admin address is refused before
// anything is bound, unless --admin-allow-remote.
func TestAdminLoopbackOnly(t *testing.T) {
	dir := t.TempDir()
	zoneFile := filepath.Join(dir, "db.example.com")
	os.WriteFile(zoneFile, []byte("$ORIGIN example.com.\n@ 3600 IN SOA ns hostmaster 1 3600 600 86400 300\n@ 3600 IN NS ns\nns 3600 IN A 127.0.0.1\n"), 0o644)
	topo := filepath.Join(dir, "lab.yaml")
	os.WriteFile(topo, []byte("lab: {block: 127.93.0.0/16, port_offset: 30000, state_dir: "+filepath.Join(dir, "state")+"}\nhosts:\n  - name: sockets.lab\n    services: [{kind: udp-upper}]\n"), 0o644)
	for _, cmd := range [][]string{
		{"lab", "up", "--topology", topo},
		{"sockets", "udp-server", "--listen", "127.0.0.1:0"},
		{"dns", "serve", "--listen", "127.0.0.1:0", "--zone", "example.com=" + zoneFile},
		{"dns", "resolver", "--listen", "127.0.0.1:0", "--root-hint", "127.0.0.1"},
		{"http", "serve", "--listen", "127.0.0.1:0"},
		{"http", "proxy", "--listen", "127.0.0.1:0", "--gc-percent", "0"},
		{"torrent", "tracker", "--http", "127.0.0.1:0", "--udp", "127.0.0.1:0"},
	} {
		t.Run(strings.Join(cmd[:2], " "), func(t *testing.T) {
			// lab up reports the lab's admin error for the same address.
			// 192.0.2.1 (TEST-NET-1) is not on this machine: with the
			// override the bind fails instead of the check.
			if err := runCommand(t, append(cmd, "--admin", "192.0.2.1:9900")...).wait(); err == nil || !strings.Contains(err.Error(), "not a loopback address") {
				t.Errorf("non-loopback --admin: %v, want a loopback refusal", err)
			}
			if err := runCommand(t, append(cmd, "--admin", "192.0.2.1:9900", "--admin-allow-remote")...).wait(); err == nil || strings.Contains(err.Error(), "not a loopback address") || !strings.Contains(err.Error(), "admin") {
				t.Errorf("non-loopback --admin with --admin-allow-remote: %v, want the bind to fail", err)
			}
		})
	}
}
