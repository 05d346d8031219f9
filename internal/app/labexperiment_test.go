package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLabExperimentCLI: the registry lists every experiment with its
// summary, an unknown name is refused naming the known ones, and a --quick
// run prints its table and writes its plots into --out.
func TestLabExperimentCLI(t *testing.T) {
	out, _, code := cli(t, "lab", "experiment", "--list")
	if code != 0 {
		t.Fatalf("--list: exit %d", code)
	}
	for _, name := range []string{"page-load", "caching", "dns-caching", "p2p", "quic-vs-tcp", "tracking-cookies", "dns-ddos", "dns-poisoning", "forged-mail", "free-riders"} {
		if !strings.Contains(out, name+"  ") {
			t.Errorf("--list does not list %s:\n%s", name, out)
		}
	}
	_, errOut, code := cli(t, "lab", "experiment", "nope")
	if code == 0 || !strings.Contains(errOut, `no experiment "nope" (known: caching, dns-caching, dns-ddos, dns-poisoning, forged-mail, free-riders, p2p, page-load, quic-vs-tcp, tracking-cookies)`) {
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
