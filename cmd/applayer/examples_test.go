package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
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
	"github.com/applayer/applayer/lab"
)

// TestExamples runs every example of README.md and of every command's
// --help, as written, against a running lab and the local servers the
// examples talk to (as CoreDNS tests the examples of its READMEs). It passes
// as root, where the lab takes the standard ports, and as a normal user,
// where it offsets them by 10000: the README's "lab root" or "lab user"
// examples run according to which this is; the --help examples must work
// either way.
//
// So that it runs beside a lab the user has up, and beside other tests,
// addresses are moved: the lab block 127.1/16 to a random block (the
// examples' lab, started from the embedded default topology moved there);
// 127.0.0.x to 127.Y.0.x for clients, where the local servers the examples
// talk to run, and to 127.Z.0.x for the server examples; /tmp/ and
// /var/tmp/ to a temporary directory (TMPDIR too). A server example (a
// command that serves, or a line ending in &) must report that it listens
// and exit 0 on SIGINT; a client example must exit 0 and print what its
// "# -> TEXT" comment says, or something when it has no such comment.
//
// Run it as a normal user, from this directory (it reads ../../README.md):
// go test -c -o /tmp/applayer.test . && runuser -u nobody -- /tmp/applayer.test -test.run TestExamples -test.v
func TestExamples(t *testing.T) {
	for _, p := range []string{"dig", "curl", "nc", "ffmpeg"} {
		testkit.Peer(t, p)
	}
	ex := newExampleSandbox(t)

	t.Run("README", func(t *testing.T) {
		blocks, err := readmeExamples("../../README.md")
		if err != nil {
			t.Fatal(err)
		}
		ran := 0
		for _, b := range blocks {
			switch b.kind {
			case "setup":
				continue
			case "lab root":
				if ex.offset != 0 {
					continue
				}
			case "lab user":
				if ex.offset == 0 {
					continue
				}
			case "run":
			default:
				t.Fatalf("README.md:%d: an example block marked %q; want run, lab root, lab user or setup", b.line, b.kind)
			}
			ran++
			ex.runBlock(t, fmt.Sprintf("README.md:%d", b.line), b.lines)
		}
		if ran < 3 {
			t.Fatalf("ran %d README blocks", ran)
		}
	})
	t.Run("help", func(t *testing.T) {
		root := app.NewRoot(strings.NewReader(""), io.Discard, io.Discard)
		var walk func(c *cobra.Command)
		n := 0
		walk = func(c *cobra.Command) {
			if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
				return
			}
			var lines []string
			for _, l := range strings.Split(c.Example, "\n") {
				if l = strings.TrimSpace(l); l != "" {
					lines = append(lines, l)
				}
			}
			if len(lines) > 0 {
				n += len(lines)
				ex.runBlock(t, c.CommandPath()+" --help", lines)
			}
			for _, sub := range c.Commands() {
				walk(sub)
			}
		}
		walk(root)
		if n < 30 {
			t.Fatalf("found %d --help examples", n)
		}
	})
}

type readmeBlock struct {
	kind  string
	line  int
	lines []string
}

var markerRE = regexp.MustCompile(`^<!-- examples: ([a-z ]+?)(?: \(.*\))? -->$`)

// readmeExamples returns README's indented code blocks, each with the kind
// its "<!-- examples: KIND -->" marker gives; a block without one is an
// error, so no example escapes the test.
func readmeExamples(path string) ([]readmeBlock, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []readmeBlock
	kind := ""
	sc := bufio.NewScanner(f)
	n := 0
	var cur *readmeBlock
	for sc.Scan() {
		n++
		l := sc.Text()
		if m := markerRE.FindStringSubmatch(l); m != nil {
			kind = m[1]
			continue
		}
		if strings.HasPrefix(l, "    ") && strings.TrimSpace(l) != "" {
			if cur == nil {
				if kind == "" {
					return nil, fmt.Errorf("%s:%d: an example without an <!-- examples: KIND --> marker before its block", path, n)
				}
				out = append(out, readmeBlock{kind: kind, line: n})
				cur = &out[len(out)-1]
				kind = ""
			}
			cur.lines = append(cur.lines, strings.TrimSpace(l))
			continue
		}
		if strings.TrimSpace(l) != "" {
			cur = nil
		}
	}
	return out, sc.Err()
}

type exampleSandbox struct {
	dir, bin, tmp    string
	labBlock, wBlock int    // the examples' lab; the labs server examples start
	y, z             string // "127.a.b.": local servers for clients; server examples
	offset           int    // the examples' lab's port offset
	labTopo, wTopo   string
	labAdmin         string
	root             string // the examples' lab's root server address
	env              []string
}

func newExampleSandbox(t *testing.T) *exampleSandbox {
	dir := t.TempDir()
	ex := &exampleSandbox{dir: dir, bin: filepath.Join(dir, "bin"), tmp: filepath.Join(dir, "tmp"),
		labBlock: 10 + rand.IntN(20), wBlock: 30 + rand.IntN(20),
		y: fmt.Sprintf("127.%d.%d.", 50+rand.IntN(25), rand.IntN(256)), z: fmt.Sprintf("127.%d.%d.", 75+rand.IntN(25), rand.IntN(256))}
	os.MkdirAll(ex.bin, 0o755)
	os.MkdirAll(ex.tmp, 0o755)
	// bin/applayer is this test binary running the real main.
	wrapper := fmt.Sprintf("#!/bin/sh\nAPPLAYER_TEST_MAIN=1 exec %q \"$@\"\n", os.Args[0])
	if err := os.WriteFile(filepath.Join(ex.bin, "applayer"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	// The examples' lab, from the default topology on its own block; a
	// block another program holds (a lab left running) is passed over.
	table := filepath.Join(ex.tmp, "examples-lab-table.json")
	for attempt := 0; ; attempt++ {
		ex.labAdmin = fmt.Sprintf("127.%d.0.254:9900", ex.labBlock)
		ex.labTopo = ex.topology(t, "examples-lab.json", ex.labBlock, ex.labAdmin)
		ex.env = append(os.Environ(), "PATH="+ex.bin+":"+os.Getenv("PATH"), "TMPDIR="+ex.tmp, app.TopologyEnv+"="+ex.labTopo)
		_, err := ex.tryServer(t, fmt.Sprintf("applayer lab up --json -f %s > %s", ex.labTopo, table), ex.env, true)
		if err == nil {
			break
		}
		if attempt == 4 || !strings.Contains(err.Error(), "already") {
			t.Fatal(err)
		}
		t.Logf("block 127.%d/16 is taken, trying another: %v", ex.labBlock, err)
		ex.labBlock = 10 + rand.IntN(20)
	}
	var tab lab.Table
	raw, _ := os.ReadFile(table)
	if err := json.Unmarshal(raw, &tab); err != nil {
		t.Fatalf("the examples' lab table: %v\n%s", err, raw)
	}
	ex.offset = tab.PortOffset
	// The server examples' labs: a block whose admin and DNS ports are free.
	for attempt := 0; ; attempt++ {
		if free(fmt.Sprintf("127.%d.0.254:9900", ex.wBlock)) && free(fmt.Sprintf("127.%d.0.2:%d", ex.wBlock, 53+ex.offset)) || attempt == 10 {
			break
		}
		ex.wBlock = 30 + rand.IntN(20)
	}
	ex.wTopo = ex.topology(t, "server-examples-lab.json", ex.wBlock, fmt.Sprintf("127.%d.0.254:9900", ex.wBlock))
	root := ""
	for _, s := range tab.Services {
		if s.Host == "a.root-servers.net" {
			root = s.Address
		}
	}
	t.Logf("examples' lab on 127.%d/16, port offset %d; local servers on %sx, server examples on %sx", ex.labBlock, ex.offset, ex.y, ex.z)

	ex.root = root
	ex.files(t)
	// The local servers the client examples talk to.
	y := func(s string) string { return strings.ReplaceAll(s, "127.0.0.", ex.y) }
	for _, cmd := range []string{
		"applayer http serve --root site --listen 127.0.0.1:8080 --tls-listen 127.0.0.1:8443 --http3 --ca-dir " + filepath.Join(ex.tmp, "applayer-ca"),
		"applayer dns serve --listen 127.0.0.1:5300 --zone example.com=db.example.com",
		"applayer sockets udp-server --listen 127.0.0.1:12000",
		"applayer sockets tcp-server --listen 127.0.0.1:12000",
		"applayer http proxy --listen 127.0.0.1:3128 --admin 127.0.0.1:9931 --allow-to 127.0.0.0/8",
		fmt.Sprintf("applayer dns resolver --listen 127.0.0.1:5353 --root-hints-file root.hints --upstream-port %d", 53+ex.offset),
		"applayer torrent tracker --http 127.0.0.1:6969 --udp 127.0.0.1:6969",
		"applayer cdn route --listen 127.0.0.1:5310 --domain kingcdn.com --admin 127.0.0.1:9953 --edge umass/edge1=192.0.2.11 --edge nyu/edge1=192.0.2.21 --network 10.1.0.0/16=umass:1,nyu:4 --network 10.2.0.0/16=nyu:1,umass:4",
	} {
		ex.startServer(t, y(cmd), ex.env, true)
	}
	// A swarm for the torrent get examples: movie.torrent announced to the
	// tracker above, and a seed of it.
	mk := exec.Command("bash", "-c", y("applayer torrent create --announce http://127.0.0.1:6969/announce -o movie.torrent movie.mp4"))
	mk.Dir, mk.Env = ex.dir, ex.env
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("torrent create: %v\n%s", err, out)
	}
	ex.startServer(t, y("applayer torrent seed --dir . --listen 127.0.0.2:6881 movie.torrent"), ex.env, true)
	// A packaged video and its origin for the stream play examples.
	pk := exec.Command("bash", "-c", "applayer stream package -q --synthetic 6s --size 320x180 --ladder 144:150k,180:300k --preset ultrafast -o video")
	pk.Dir, pk.Env = ex.dir, ex.env
	if out, err := pk.CombinedOutput(); err != nil {
		t.Fatalf("stream package: %v\n%s", err, out)
	}
	ex.startServer(t, y("applayer stream serve --listen 127.0.0.1:8088 video"), ex.env, true)
	return ex
}

// topology writes the default topology moved to block 127.b/16 with the
// given admin listener; the port offset is left to the lab (privilege).
func (ex *exampleSandbox) topology(t *testing.T, name string, b int, admin string) string {
	topo, err := lab.DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	topo.Lab.Block = fmt.Sprintf("127.%d.0.0/16", b)
	topo.Lab.Admin = admin
	if b != ex.labBlock {
		// The examples' lab keeps the default state dir under TMPDIR,
		// where the README finds its CA; the others have their own.
		topo.Lab.StateDir = filepath.Join(ex.tmp, fmt.Sprintf("state-%d", b))
	}
	raw, _ := json.Marshal(topo)
	path := filepath.Join(ex.dir, name)
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// files writes what the examples name: a site, a zone file, root hints,
// notes, a movie and photos to make torrents of, lab.yaml.
func (ex *exampleSandbox) files(t *testing.T) {
	root := ex.root
	w := func(name, data string) {
		p := filepath.Join(ex.dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w("site/index.html", `<html><body><h1>site</h1><img src="a.png"></body></html>`)
	w("site/a.png", "png")
	w("a/index.html", "site a\n")
	w("b/index.html", "site b\n")
	w("db.example.com", "$ORIGIN example.com.\n$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 300\n@ NS ns1\nns1 A 127.0.0.1\nwww A 192.0.2.80\n")
	hints := fmt.Sprintf(".\t3600000\tNS\ta.root-servers.net.\na.root-servers.net.\t3600000\tA\t%s\n", root)
	w("root.hints", hints)
	w("named.root", hints)
	w("notes.txt", "first line\nsecond line\n")
	w("movie.mp4", strings.Repeat("frame ", 50000))
	w("photos/1.jpg", strings.Repeat("a", 40000))
	w("photos/2.jpg", strings.Repeat("b", 40000))
	raw, _ := os.ReadFile(ex.wTopo)
	readme, _ := os.ReadFile("../../README.md")
	w("README.md", string(readme))
	w("lab.yaml", string(raw))
	w("my-lab.yaml", string(raw))
}

// rewrite moves an example's addresses and paths into the sandbox.
func (ex *exampleSandbox) rewrite(line string, server bool) string {
	line = strings.ReplaceAll(line, "127.0.0.1:9900", ex.labAdmin)
	line = strings.ReplaceAll(line, ":-/tmp}", ":-"+ex.tmp+"}")
	line = regexp.MustCompile(`(^|[\s=])/tmp/`).ReplaceAllString(line, "${1}"+ex.tmp+"/")
	line = strings.ReplaceAll(line, "/var/tmp/", ex.tmp+"/")
	line = strings.ReplaceAll(line, "127.1.", fmt.Sprintf("127.%d.", ex.labBlock))
	to := ex.y
	if server {
		to = ex.z
	}
	return strings.ReplaceAll(line, "127.0.0.", to)
}

var expectRE = regexp.MustCompile(`#.*?-> (.+)$`)

// isServer reports whether an example line runs a server.
func isServer(line string) bool {
	if strings.HasSuffix(line, "&") {
		return true
	}
	f := strings.Fields(line)
	if len(f) < 2 || filepath.Base(f[0]) != "applayer" {
		return false
	}
	// Drop global flags (--trace FILE, --log-level L...).
	args := f[1:]
	for len(args) > 1 && strings.HasPrefix(args[0], "--") {
		args = args[2:]
	}
	cmd := strings.Join(args, " ")
	switch {
	case strings.HasPrefix(cmd, "lab up"):
		return !strings.Contains(cmd, "--check")
	case strings.HasPrefix(cmd, "http proxy"):
		return !strings.Contains(cmd, "--stats")
	}
	for _, p := range []string{"sockets udp-server", "sockets tcp-server", "http serve", "dns serve", "dns resolver", "torrent tracker", "torrent seed", "mail serve", "stream serve", "cdn route", "cdn edge"} {
		if strings.HasPrefix(cmd, p) {
			return true
		}
	}
	return false
}

// runBlock runs a block of example lines in order; servers started with a
// trailing & keep running until the block ends.
func (ex *exampleSandbox) runBlock(t *testing.T, where string, lines []string) {
	t.Helper()
	var background []*exec.Cmd
	for _, raw := range lines {
		line := raw
		if i := strings.Index(line, " #"); i >= 0 && !strings.Contains(line[:i], "'") {
			line = strings.TrimSpace(line[:i])
		}
		if strings.HasPrefix(line, "go build") || strings.HasPrefix(line, "make ") {
			continue // the test runs the binary it is
		}
		server := isServer(line)
		// Clients after a server started with & talk to that server.
		cmdline := ex.rewrite(line, server || len(background) > 0)
		env := ex.env
		if server {
			env = append(append([]string{}, ex.env...), app.TopologyEnv+"="+ex.wTopo)
			ex.files(t) // a server example gets fresh inputs (lab.yaml on its own block)
		}
		t.Logf("%s: %s\n\t(run as: %s)", where, raw, cmdline)
		if server {
			bg := strings.HasSuffix(line, "&")
			c := ex.startServer(t, strings.TrimSuffix(cmdline, "&"), env, bg)
			if bg {
				background = append(background, c)
			}
			continue
		}
		// A client example must end promptly: one that waits for a server's
		// idle timeout (a keep-alive left open) is a bad example.
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		c := exec.CommandContext(ctx, "bash", "-c", cmdline)
		c.Dir, c.Env = ex.dir, env
		ownGroup(c) // a timeout kills the whole pipeline, not only bash
		var out, errOut testkit.Buffer
		c.Stdout, c.Stderr = &out, &errOut
		err := c.Run()
		timedOut := ctx.Err() != nil
		cancel()
		if timedOut {
			t.Errorf("%s: %s\n\tstill running after 90s (a server? isServer must know it; or an example that waits for a timeout)\n\tstdout: %s\n\tstderr: %s", where, raw, clip(out.String()), clip(errOut.String()))
			continue
		}
		if err != nil {
			t.Errorf("%s: %s\n\tfailed: %v\n\tstdout: %s\n\tstderr: %s", where, raw, err, clip(out.String()), clip(errOut.String()))
			continue
		}
		if m := expectRE.FindStringSubmatch(raw); m != nil {
			if !strings.Contains(out.String(), strings.TrimSpace(m[1])) {
				t.Errorf("%s: %s\n\tstdout lacks %q:\n%s", where, raw, m[1], clip(out.String()))
			}
		} else if !strings.Contains(line, ">") && strings.TrimSpace(out.String()) == "" {
			t.Errorf("%s: %s\n\tprinted nothing (stderr: %s)", where, raw, clip(errOut.String()))
		}
	}
	for _, c := range background {
		stopServer(t, where, c)
	}
}

func clip(s string) string {
	if len(s) > 3000 {
		return s[:3000] + "..."
	}
	return s
}

var readyRE = regexp.MustCompile(`listening on|lab is up`)

// startServer runs cmdline (through bash, exec'd so the server is the
// process itself) until it reports that it is ready. Kept servers run until
// the test ends (or the caller stops them); others are stopped at once with
// SIGINT and must exit 0.
func (ex *exampleSandbox) startServer(t *testing.T, cmdline string, env []string, keep bool) *exec.Cmd {
	t.Helper()
	c, err := ex.tryServer(t, cmdline, env, keep)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// free reports whether a TCP address can be bound now.
func free(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func (ex *exampleSandbox) tryServer(t *testing.T, cmdline string, env []string, keep bool) (*exec.Cmd, error) {
	t.Helper()
	c := exec.CommandContext(context.Background(), "bash", "-c", "exec "+strings.TrimSpace(cmdline))
	c.Dir, c.Env = ex.dir, env
	ownGroup(c)
	out := &testkit.Buffer{}
	c.Stdout, c.Stderr = out, out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	ex.watch(c, out, done)
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for !readyRE.MatchString(out.String()) {
		select {
		case err := <-done:
			delete(servers, c)
			return nil, fmt.Errorf("server %q ended before it was ready: %v\n%s", cmdline, err, clip(out.String()))
		case <-deadline.C:
			c.Process.Kill()
			<-done
			delete(servers, c)
			return nil, fmt.Errorf("server %q not ready after 60s:\n%s", cmdline, clip(out.String()))
		case <-time.After(20 * time.Millisecond):
		}
	}
	if keep {
		t.Cleanup(func() { stopServer(t, cmdline, c) })
		return c, nil
	}
	stopServer(t, cmdline, c)
	return c, nil
}

type watched struct {
	out  *testkit.Buffer
	done chan error
}

var servers = map[*exec.Cmd]watched{}

func (ex *exampleSandbox) watch(c *exec.Cmd, out *testkit.Buffer, done chan error) {
	servers[c] = watched{out: out, done: done}
}

// stopServer sends SIGINT to a server this test started and requires a
// clean exit.
func stopServer(t *testing.T, what string, c *exec.Cmd) {
	w, ok := servers[c]
	if !ok {
		return
	}
	delete(servers, c)
	c.Process.Signal(syscall.SIGINT)
	select {
	case err := <-w.done:
		var ee *exec.ExitError
		if errors.As(err, &ee) || err != nil {
			t.Errorf("%s: exit after SIGINT: %v (want 0)\n%s", what, err, clip(w.out.String()))
		}
	case <-time.After(30 * time.Second):
		c.Process.Kill()
		t.Errorf("%s: still running 30s after SIGINT\n%s", what, clip(w.out.String()))
	}
}
