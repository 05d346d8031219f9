package server

import (
	"context"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
)

// peer returns the path of an external program, skipping the test when it
// is missing (failing when APPLAYER_REQUIRE_PEERS is set).
func peer(t *testing.T, name string) string { return testkit.Peer(t, name) }

func runPeer(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestCurlInterop(t *testing.T) {
	curl := peer(t, "curl")
	e := start(t, nil)
	ca := filepath.Join(e.caDir, "ca.pem")
	tlsURL := "https://localhost:" + port(e.tlsA) + "/hello.txt"
	plainURL := "http://" + e.plain + "/hello.txt"
	w := "%{http_version} %{http_code} %{size_download}"
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"HTTP/1.1 cleartext", []string{"--http1.1", plainURL}, "1.1 200 13"},
		{"h2c prior knowledge", []string{"--http2-prior-knowledge", plainURL}, "2 200 13"},
		{"h2c Upgrade", []string{"--http2", plainURL}, "2 200 13"},
		{"h2c Upgrade, 404", []string{"--http2", "http://" + e.plain + "/missing"}, "2 404 19"},
		{"h2c prior knowledge, range", []string{"--http2-prior-knowledge", "-r", "2-4", plainURL}, "2 206 3"},
		{"HTTP/1.1 TLS lab CA", []string{"--http1.1", "--cacert", ca, tlsURL}, "1.1 200 13"},
		{"HTTP/2 TLS lab CA", []string{"--http2", "--cacert", ca, tlsURL}, "2 200 13"},
		{"HTTP/2 range", []string{"--http2", "--cacert", ca, "-r", "0-4", tlsURL}, "2 206 5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := runPeer(t, curl, append([]string{"-sS", "-o", "/dev/null", "-w", w}, tc.args...)...)
			if out != tc.want {
				t.Errorf("curl %v = %q, want %q", tc.args, out, tc.want)
			}
		})
	}
	t.Run("gzip", func(t *testing.T) {
		out := runPeer(t, curl, "-sS", "-D", "-", "--compressed", "http://"+e.plain+"/big.css")
		if !strings.Contains(strings.ToLower(out), "content-encoding: gzip") || !strings.HasSuffix(out, files["big.css"]) {
			t.Errorf("curl --compressed:\n%.300s", out)
		}
	})
	t.Run("conditional GET", func(t *testing.T) {
		hdr := runPeer(t, curl, "-sS", "-D", "-", "-o", "/dev/null", "--cacert", ca, tlsURL)
		m := regexp.MustCompile(`(?i)etag: (\S+)`).FindStringSubmatch(hdr)
		if m == nil {
			t.Fatalf("no ETag in %q", hdr)
		}
		out := runPeer(t, curl, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", ca, "-H", "If-None-Match: "+m[1], tlsURL)
		if out != "304" {
			t.Errorf("If-None-Match: %s", out)
		}
	})
}

func TestNghttpInterop(t *testing.T) {
	nghttp := peer(t, "nghttp")
	h2load := peer(t, "h2load")
	e := start(t, nil)
	tlsBase := "https://localhost:" + port(e.tlsA)
	out := runPeer(t, nghttp, "-nv", "--no-verify-peer", tlsBase+"/hello.txt")
	if !strings.Contains(out, ":status: 200") {
		t.Errorf("nghttp over TLS:\n%s", out)
	}
	out = runPeer(t, nghttp, "-nv", "http://"+e.plain+"/hello.txt")
	if !strings.Contains(out, ":status: 200") {
		t.Errorf("nghttp h2c:\n%s", out)
	}
	out = runPeer(t, nghttp, "-nvu", "http://"+e.plain+"/hello.txt")
	if !strings.Contains(out, "HTTP Upgrade success") || !strings.Contains(out, ":status: 200") {
		t.Errorf("nghttp h2c Upgrade:\n%s", out)
	}
	for _, u := range []string{tlsBase + "/hello.txt", "http://" + e.plain + "/hello.txt"} {
		out = runPeer(t, h2load, "-n", "200", "-c", "4", "-m", "10", u)
		if !strings.Contains(out, "200 succeeded, 0 failed") || !strings.Contains(out, "200 2xx") {
			t.Errorf("h2load %s:\n%s", u, out)
		}
	}
}

// h2specFailures are the h2spec cases the server is expected to fail,
// over TLS and h2c alike: none since web/h2 replaced net/http's HTTP/2
// server (which failed 4.2/3, 6.5.3/1, 8.1.2.2/1 and 8.1.2.2/2). Any
// failure fails the test.
var h2specFailures = []string{}

// TestH2spec runs h2spec (pinned with its dependencies in scripts/h2spec,
// installed by make test) against the HTTP/2 server over TLS and h2c and
// compares the cases that failed with h2specFailures.
func TestH2spec(t *testing.T) {
	bin := peer(t, "h2spec")
	e := start(t, nil)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"TLS", []string{"-h", "127.0.0.1", "-p", port(e.tlsA), "-t", "-k"}},
		{"h2c", []string{"-h", "127.0.0.1", "-p", port(e.plain)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // mostly waiting for h2spec's timeouts
			report := filepath.Join(t.TempDir(), "junit.xml")
			out, _ := exec.Command(bin, append(tc.args, "-o", "3", "-j", report)...).CombinedOutput()
			total, failed, err := h2specResults(report)
			if err != nil {
				t.Fatalf("h2spec report: %v\n%s", err, out)
			}
			if total < 140 {
				t.Fatalf("h2spec ran %d cases, want all of them (about 146)\n%s", total, out)
			}
			t.Logf("h2spec %s: %d cases, failed %q", tc.name, total, failed)
			if !slices.Equal(failed, h2specFailures) {
				t.Errorf("h2spec %s: failed %q, want exactly %q\n%s", tc.name, failed, h2specFailures, out)
			}
		})
	}
}

// h2specResults reads h2spec's JUnit report: how many cases ran, and the
// ones that failed or errored, as "suite/case" (e.g. "http2/4.2/3"),
// sorted. Skipped cases count as run, not failed.
func h2specResults(path string) (int, []string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, nil, err
	}
	var r struct {
		Suites []struct {
			Package string `xml:"package,attr"`
			Cases   []struct {
				Failure *struct{} `xml:"failure"`
				Error   *struct{} `xml:"error"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &r); err != nil {
		return 0, nil, err
	}
	total := 0
	failed := []string{}
	for _, s := range r.Suites {
		for i, c := range s.Cases {
			total++
			if c.Failure != nil || c.Error != nil {
				// h2spec numbers the cases of a section from 1, in order
				failed = append(failed, s.Package+"/"+strconv.Itoa(i+1))
			}
		}
	}
	slices.Sort(failed)
	return total, failed, nil
}

// TestNgtcp2Interop fetches files over HTTP/3 from our server with ngtcp2's
// example client (gtlsclient, Debian ngtcp2-client: ngtcp2 + nghttp3).
func TestNgtcp2Interop(t *testing.T) {
	bin := peer(t, "gtlsclient")
	e := start(t, nil)
	dl := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	base := "https://localhost:" + port(e.tlsA)
	out, err := exec.CommandContext(ctx, bin, "--exit-on-all-streams-close", "--no-quic-dump", "--download="+dl,
		"127.0.0.1", port(e.tlsA), base+"/hello.txt", base+"/big.css").CombinedOutput()
	if err != nil {
		t.Fatalf("gtlsclient: %v\n%s", err, out)
	}
	for _, s := range []string{"Negotiated ALPN is h3", "[:status: 200]", "[etag: "} {
		if !strings.Contains(string(out), s) {
			t.Errorf("gtlsclient output lacks %q\n%s", s, out)
		}
	}
	for _, name := range []string{"hello.txt", "big.css"} {
		b, err := os.ReadFile(filepath.Join(dl, name))
		if err != nil {
			t.Fatalf("%s not downloaded: %v\n%s", name, err, out)
		}
		want(t, name+" over HTTP/3 with ngtcp2", string(b) == files[name], true)
	}
}
