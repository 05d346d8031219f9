package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
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

// TestLabUp starts the lab as a user would, talks to it with nc, and stops
// it with SIGINT.
func TestLabUp(t *testing.T) {
	nc := testkit.Peer(t, "nc")
	dir := t.TempDir()
	block := fmt.Sprintf("127.%d.0.0/16", 100+rand.IntN(100))
	topo := filepath.Join(dir, "lab.yaml")
	os.WriteFile(topo, []byte(fmt.Sprintf(`
lab: {block: %q, admin: "127.0.0.1:0", port_offset: 0, state_dir: %q}
hosts:
- name: sockets.lab
  services: [{kind: udp-upper}, {kind: tcp-upper}]
`, block, dir)), 0o600)
	tracePath := filepath.Join(dir, "trace.jsonl")
	ctx := testkit.Context(t, 60*time.Second)
	cmd := applayer(ctx, "--trace", tracePath, "lab", "up", "-f", topo)
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
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
	udp := regexp.MustCompile(`udp (127\.[0-9.]+):(\d+)`).FindStringSubmatch(table.String())
	tcp := regexp.MustCompile(`tcp-upper\s+tcp (127\.[0-9.]+):(\d+)`).FindStringSubmatch(table.String())
	if udp == nil || tcp == nil {
		t.Fatalf("table lacks the socket servers:\n%s\nstderr: %s", table.String(), stderr.String())
	}
	go io.Copy(io.Discard, stdout)

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

	start := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("lab up after SIGINT: %v\nstderr: %s", err, stderr.String())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("lab took %v to stop after SIGINT, want < 5s", d)
	}
	trace, _ := os.ReadFile(tracePath)
	if !bytes.Contains(trace, []byte(`"summary":"reply \"OVER UDP\""`)) || !bytes.Contains(trace, []byte(`"proto":"tcp"`)) {
		t.Errorf("trace file lacks the exchanges:\n%s", trace)
	}
}
