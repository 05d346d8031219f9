package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/trace"
)

// TestTraceDiagramCommand: trace diagram reads a --trace file, names the
// default topology's hosts, keeps what --host, --from and --to ask for,
// writes SVG and Mermaid by the files' extensions, and refuses bad input.
func TestTraceDiagramCommand(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "lab.jsonl")
	j, err := trace.CreateJSONL(path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	// Addresses of the default topology (resolver.nyu.edu 127.1.0.14,
	// gaia 127.1.0.7, cache.nyu.edu 127.1.0.13).
	for i, e := range []trace.Event{
		{Type: trace.Msg, From: "127.1.0.14:4000", To: "127.1.0.3:53", Proto: "dns/udp", Summary: "query A edu.", Host: "resolver.nyu.edu"},
		{Type: trace.Msg, From: "127.1.0.3:53", To: "127.1.0.14:4000", Proto: "dns/udp", Summary: "response NOERROR A edu. 0/3/2 referral to edu.", Host: "a.root-servers.net"},
		{Type: trace.Msg, From: "127.1.0.13:5000", To: "127.1.0.7:80", Proto: "http/1.1", Summary: "GET http://gaia.cs.umass.edu/", Host: "cache.nyu.edu"},
		{Type: trace.Msg, From: "127.1.0.7:80", To: "127.1.0.13:5000", Proto: "http/1.1", Summary: "HTTP/1.1 200 OK", Bytes: 892, Host: "gaia.cs.umass.edu"},
	} {
		e.Time = t0.Add(time.Duration(i) * time.Second)
		j.Event(e)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	t.Setenv(TopologyEnv, "")
	svg, mmd := filepath.Join(dir, "d.svg"), filepath.Join(dir, "d.mmd")
	out, errOut, code := cli(t, "trace", "diagram", path, "-o", svg, "-o", mmd)
	if code != 0 || !strings.Contains(out, "4 messages, 4 hosts") {
		t.Fatalf("diagram: %d %q %q", code, out, errOut)
	}
	s, _ := os.ReadFile(svg)
	m, _ := os.ReadFile(mmd)
	if !strings.HasPrefix(string(s), "<svg ") || !strings.Contains(string(s), ">resolver.nyu.edu</text>") || !strings.HasPrefix(string(m), "sequenceDiagram") {
		t.Errorf("files:\n%s\n%s", s, m)
	}
	for _, c := range []struct {
		args      []string
		want, not string
	}{
		{[]string{"--host", "gaia.cs.umass.edu"}, "participant H1 as cache.nyu.edu", "resolver"},
		{[]string{"--from", "1s", "--to", "2s"}, "2. GET http://gaia", "query A edu."},
		{[]string{"--from", t0.Add(3 * time.Second).Format(time.RFC3339)}, "1. HTTP/1.1 200 OK (892 B)", "GET"},
	} {
		out, errOut, code := cli(t, append([]string{"trace", "diagram", path, "--format", "mermaid"}, c.args...)...)
		if code != 0 || !strings.Contains(out, c.want) || strings.Contains(out, c.not) {
			t.Errorf("diagram %v: %d\n%s%s\nwant %q and not %q", c.args, code, out, errOut, c.want, c.not)
		}
	}
	for _, bad := range [][]string{
		{"trace", "diagram", path, "--from", "yesterday"},
		{"trace", "diagram", path, "--format", "png"},
		{"trace", "diagram", filepath.Join(dir, "none.jsonl")},
	} {
		if _, _, code := cli(t, bad...); code == 0 {
			t.Errorf("%v succeeded", bad)
		}
	}
}
