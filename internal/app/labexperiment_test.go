package app

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
)

// TestLabExperimentCLI: the registry lists every experiment with its
// summary, an unknown name is refused naming the known ones, and a --quick
// run prints its table and writes its plots into --out.
func TestLabExperimentCLI(t *testing.T) {
	out, _, code := cli(t, "lab", "experiment", "--list")
	if code != 0 {
		t.Fatalf("--list: exit %d", code)
	}
	for _, name := range []string{"page-load", "caching", "dns-caching", "p2p", "quic-vs-tcp", "tracking-cookies", "dns-ddos", "dns-poisoning", "forged-mail"} {
		if !strings.Contains(out, name+"  ") {
			t.Errorf("--list does not list %s:\n%s", name, out)
		}
	}
	_, errOut, code := cli(t, "lab", "experiment", "nope")
	if code == 0 || !strings.Contains(errOut, `no experiment "nope" (known: caching, dns-caching, dns-ddos, dns-poisoning, forged-mail, p2p, page-load, quic-vs-tcp, tracking-cookies)`) {
		t.Errorf("unknown experiment: exit %d, %s", code, errOut)
	}
	dir := t.TempDir()
	out, errOut, code = cli(t, "lab", "experiment", "dns-caching", "--quick", "--seed", "3", "--out", dir)
	if code != 0 {
		t.Fatalf("dns-caching --quick: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"cold: gaia.cs.umass.edu", "queries to the root", "plot: " + filepath.Join(dir, "dns-caching.png")} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "dns-caching.svg")); err != nil {
		t.Error(err)
	}
}

// TestLabUpLinkFlag: --link overrides a host's access link and is
// validated with the topology; a bad one names the problem.
func TestLabUpLinkFlag(t *testing.T) {
	out, errOut, code := cli(t, "lab", "up", "--check", "--link", "gaia.cs.umass.edu:delay=1s,rate=1.54Mbit,loss=1%")
	if code != 0 || !strings.Contains(out, "topology OK") {
		t.Errorf("--link with --check: exit %d\n%s%s", code, out, errOut)
	}
	for arg, want := range map[string]string{
		"gaia.cs.umass.edu:rate=fast": `"fast" is not a rate`,
		"nowhere.edu:delay=1s":        `no host named "nowhere.edu"`,
	} {
		_, errOut, code := cli(t, "lab", "up", "--check", "--link", arg)
		if code == 0 || !strings.Contains(errOut, want) {
			t.Errorf("--link %s: exit %d, %q; want an error containing %q", arg, code, errOut, want)
		}
	}
}

// TestLabUpLinkShapes: --link reaches the running lab, not only the
// check: a host with no link in its topology, given delay=50ms on the
// command line, answers a client outside the lab only after the handshake
// and a round trip (4 x 50 ms) on a new connection, and the table lists the
// link.
func TestLabUpLinkShapes(t *testing.T) {
	b := 100 + rand.IntN(150)
	offset := 35000 + rand.IntN(20)*10
	host := fmt.Sprintf("127.%d.0.5", b)
	topo := fmt.Sprintf("lab: {block: 127.%d.0.0/16, admin: \"off\", port_offset: %d, state_dir: %q}\nhosts:\n- name: sockets.lab\n  addr: %s\n  services: [{kind: tcp-upper}]\n",
		b, offset, t.TempDir(), host)
	path := filepath.Join(t.TempDir(), "lab.yaml")
	if err := os.WriteFile(path, []byte(topo), 0o600); err != nil {
		t.Fatal(err)
	}
	const d = 50 * time.Millisecond
	var out, errOut testkit.Buffer
	root := NewRoot(strings.NewReader(""), &out, &errOut)
	root.SetArgs([]string{"lab", "up", "-f", path, "--link", "sockets.lab:delay=" + d.String()})
	ctx, cancel := context.WithCancel(testkit.Context(t, 60*time.Second))
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("lab up: %v", err)
		}
	}()
	for !strings.Contains(out.String(), "lab is up") {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("lab up ended: %v\n%s%s", err, out.String(), errOut.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if !strings.Contains(out.String(), "Links (shaped in user space") || !strings.Contains(out.String(), "delay=50ms") {
		t.Errorf("the table does not list the --link:\n%s", out.String())
	}
	c, err := net.Dial("tcp", net.JoinHostPort(host, fmt.Sprint(12000+offset)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := c.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	took := time.Since(start)
	if err != nil || line != "HELLO\n" {
		t.Fatalf("tcp-upper: %q, %v", line, err)
	}
	if took < 4*d-5*time.Millisecond || took > 4*d+time.Second {
		t.Errorf("first exchange over the --link took %s, want 4 x %s (handshake and round trip)", took, d)
	}
}
