package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/applayer/applayer/internal/app"
	"github.com/applayer/applayer/internal/testkit"
)

// The test binary doubles as applayer: with APPLAYER_TEST_MAIN set it runs
// the real main, so the tests drive the CLI as a user would, signals and all.
func TestMain(m *testing.M) {
	if os.Getenv("APPLAYER_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func applayer(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "APPLAYER_TEST_MAIN=1")
	return cmd
}

func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx := testkit.Context(t, 30*time.Second)
	cmd := applayer(ctx, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	badTopo := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badTopo, []byte("hosts:\n- name: x\n  services:\n  - kind: udp-upper\n    port: 70000\n"), 0o600)
	unknownField := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknownField, []byte("hosts:\n- name: x\n  sevices: []\n"), 0o600)
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"version", []string{"version"}, 0, "applayer ", ""},
		{"help", []string{"--help"}, 0, "applayer lab up", ""},
		{"bad flag", []string{"lab", "up", "--bogus"}, 1, "", "unknown flag: --bogus"},
		{"unknown command", []string{"nosuch"}, 1, "", `unknown command "nosuch"`},
		{"default topology is valid", []string{"lab", "up", "--check"}, 0, "topology OK", ""},
		{"bad topology names the field", []string{"lab", "up", "--check", "-f", badTopo}, 1, "", "hosts[0].services[0].port: 70000 is out of range"},
		{"unknown topology field", []string{"lab", "up", "--check", "-f", unknownField}, 1, "", `unknown field "sevices"`},
		{"missing topology file", []string{"lab", "up", "-f", filepath.Join(dir, "nope.yaml")}, 1, "", "no such file"},
		{"bad log format", []string{"--log-format", "xml", "sockets", "udp-server", "--listen", "127.0.0.1:0"}, 1, "", "unknown log format"},
		{"udp client, no server", []string{"sockets", "udp-client", "--server", "127.0.0.1:9", "--timeout", "300ms", "hi"}, 1, "", "is the server running?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := run(t, tt.args...)
			if code != tt.wantCode || !strings.Contains(out, tt.wantStdout) || !strings.Contains(errOut, tt.wantStderr) {
				t.Fatalf("applayer %v: code %d\nstdout: %s\nstderr: %s\nwant code %d, stdout with %q, stderr with %q",
					tt.args, code, out, errOut, tt.wantCode, tt.wantStdout, tt.wantStderr)
			}
		})
	}
}

// Every command says what it does and gives an example.
func TestEveryCommandHasHelp(t *testing.T) {
	root := app.NewRoot(strings.NewReader(""), io.Discard, io.Discard)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		if c.Short == "" || c.Example == "" {
			t.Errorf("%q lacks a Short description or an Example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// defaultLabFile writes the embedded default topology (every kind of
// service) to a file, moved to its own random block and port offset with
// its own state dir, so it runs beside a lab the user has up.
func defaultLabFile(t *testing.T, dir string) string {
	t.Helper()
	out, errOut, code := run(t, "lab", "default-topology")
	if code != 0 {
		t.Fatalf("lab default-topology: %d %s", code, errOut)
	}
	block := fmt.Sprintf("127.%d.0.0/16", 100+rand.IntN(100))
	offset := 21000 + rand.IntN(50)*10
	lines := fmt.Sprintf("lab:\n  block: %s\n  admin: 127.0.0.1:0\n  port_offset: %d\n  state_dir: %q\n", block, offset, dir)
	topo := regexp.MustCompile(`(?m)^lab:\n(  .*\n)+`).ReplaceAllString(out, lines)
	if !strings.Contains(topo, block) || strings.Contains(topo, "127.1.0.0/16") {
		t.Fatalf("could not move the default topology to %s:\n%s", block, topo)
	}
	path := filepath.Join(dir, "lab.yaml")
	if err := os.WriteFile(path, []byte(topo), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLabUp starts the default lab (every kind of service) as a user would,
// talks to it with nc, reads the trace while the lab runs (it is flushed as
// events happen), and stops it with SIGINT or SIGTERM: the lab must exit 0
// (make lab must not end in "Error 1"), say it stopped, report no failure,
// and leave no listener open.
func TestLabUp(t *testing.T) {
	nc := testkit.Peer(t, "nc")
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			topo := defaultLabFile(t, dir)
			tracePath := filepath.Join(dir, "trace.jsonl")
			ctx := testkit.Context(t, 90*time.Second)
			cmd := applayer(ctx, "--trace", tracePath, "lab", "up", "-f", topo)
			stdout, _ := cmd.StdoutPipe()
			var stderr testkit.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill() })

			// Read the table until the lab says it is up.
			sc := bufio.NewScanner(stdout)
			var table strings.Builder
			for sc.Scan() {
				table.WriteString(sc.Text() + "\n")
				if strings.Contains(sc.Text(), "lab is up") {
					break
				}
			}
			var rest testkit.Buffer
			copied := make(chan struct{})
			go func() { io.Copy(&rest, stdout); close(copied) }()
			udp := regexp.MustCompile(`udp-upper\s+udp (127\.[0-9.]+):(\d+)`).FindStringSubmatch(table.String())
			tcp := regexp.MustCompile(`tcp-upper\s+tcp (127\.[0-9.]+):(\d+)`).FindStringSubmatch(table.String())
			if udp == nil || tcp == nil {
				t.Fatalf("table lacks the socket servers:\n%s\nstderr: %s", table.String(), stderr.String())
			}
			kinds := map[string]bool{}
			for _, k := range regexp.MustCompile(`(?m)^\S+\s+127\.[0-9.]+\s+(\S+)`).FindAllStringSubmatch(table.String(), -1) {
				kinds[k[1]] = true
			}
			for _, k := range []string{"udp-upper", "tcp-upper", "dns-authority", "dns-resolver", "http-server", "shop", "web-cache"} {
				if !kinds[k] {
					t.Errorf("the default lab's table lacks %s:\n%s", k, table.String())
				}
			}

			ncu := exec.CommandContext(ctx, nc, "-u", "-w1", udp[1], udp[2])
			ncu.Stdin = strings.NewReader("over udp\n")
			if out, err := ncu.Output(); err != nil || string(out) != "OVER UDP\n" {
				t.Errorf("nc -u to the lab: %q %v", out, err)
			}
			nct := exec.CommandContext(ctx, nc, "-N", tcp[1], tcp[2])
			nct.Stdin = strings.NewReader("over tcp\n")
			if out, err := nct.Output(); err != nil || string(out) != "OVER TCP\n" {
				t.Errorf("nc to the lab: %q %v", out, err)
			}
			// The trace is written as events happen, not at exit.
			deadline := time.Now().Add(20 * time.Second)
			for {
				trace, _ := os.ReadFile(tracePath)
				if bytes.Contains(trace, []byte(`"summary":"reply \"OVER UDP\""`)) && bytes.Contains(trace, []byte(`"proto":"tcp"`)) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("while the lab runs, the trace file lacks the exchanges:\n%s", trace)
				}
				time.Sleep(20 * time.Millisecond)
			}

			if sig == syscall.SIGTERM {
				// A client in the middle of a request keeps gaia's web
				// server draining until its grace period ends: the other
				// services must still stop cleanly, and the lab exit 0.
				web := regexp.MustCompile(`http-server\s+tcp (127\.[0-9.]+:\d+)`).FindStringSubmatch(table.String())
				if web == nil {
					t.Fatalf("table lacks the web server:\n%s", table.String())
				}
				c, err := net.Dial("tcp", web[1])
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: gaia.cs.umass.edu\r\n")
				time.Sleep(100 * time.Millisecond) // the server has read the partial header
			}
			cmd.Process.Signal(sig)
			err := cmd.Wait()
			<-copied
			if err != nil {
				t.Fatalf("lab up after %s: %v (want exit 0)\nstderr: %s", sig, err, stderr.String())
			}
			if !strings.Contains(rest.String(), "lab stopped") {
				t.Errorf("lab up did not say it stopped:\n%s", rest.String())
			}
			if e := stderr.String(); strings.Contains(e, "level=ERROR") || strings.Contains(e, "applayer:") {
				t.Errorf("lab up reported a failure on %s:\n%s", sig, e)
			}
			// Every listener of the table is closed.
			for _, m := range regexp.MustCompile(`(tcp|udp) (127\.[0-9.]+:\d+)`).FindAllStringSubmatch(table.String(), -1) {
				if m[1] == "tcp" {
					if c, err := net.DialTimeout("tcp", m[2], time.Second); err == nil {
						c.Close()
						t.Errorf("tcp %s still accepts after the lab stopped", m[2])
					}
					continue
				}
				c, err := net.ListenPacket("udp", m[2])
				if err != nil {
					t.Errorf("udp %s still bound after the lab stopped: %v", m[2], err)
					continue
				}
				c.Close()
			}
		})
	}
}
