package server

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	for _, u := range []string{tlsBase + "/hello.txt", "http://" + e.plain + "/hello.txt"} {
		out = runPeer(t, h2load, "-n", "200", "-c", "4", "-m", "10", u)
		if !strings.Contains(out, "200 succeeded, 0 failed") || !strings.Contains(out, "200 2xx") {
			t.Errorf("h2load %s:\n%s", u, out)
		}
	}
}

// h2specVersion is the h2spec release built from the module proxy.
const h2specVersion = "github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible"

// TestH2spec runs h2spec against the HTTP/2 server over TLS and h2c. Go's
// net/http passes 141 of 145; the known failures are listed in docs/web.md.
func TestH2spec(t *testing.T) {
	gobin := t.TempDir()
	bin := filepath.Join(gobin, "h2spec")
	if p, err := exec.LookPath("h2spec"); err == nil {
		bin = p
	} else {
		goCmd := peer(t, "go")
		cmd := exec.Command(goCmd, "install", h2specVersion)
		cmd.Dir = gobin
		cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			testkit.Skip(t, "cannot build h2spec (module proxy unreachable?): %v\n%s", err, out)
		}
	}
	e := start(t, nil)
	re := regexp.MustCompile(`(\d+) tests, (\d+) passed`)
	for _, tc := range []struct {
		name string
		args []string
		min  int
	}{
		{"TLS", []string{"-h", "127.0.0.1", "-p", port(e.tlsA), "-t", "-k"}, 141},
		{"h2c", []string{"-h", "127.0.0.1", "-p", port(e.plain)}, 141},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // mostly waiting for h2spec's timeouts
			out, _ := exec.Command(bin, append(tc.args, "-o", "3")...).CombinedOutput()
			m := re.FindStringSubmatch(string(out))
			if m == nil {
				t.Fatalf("no summary in h2spec output:\n%s", out)
			}
			passed, _ := strconv.Atoi(m[2])
			var failed []string
			if _, fails, ok := strings.Cut(string(out), "Failures:"); ok {
				for _, l := range strings.Split(fails, "\n") {
					if l = strings.TrimSpace(l); strings.HasPrefix(l, "×") {
						failed = append(failed, l)
					}
				}
			}
			t.Logf("h2spec %s: %s; failed: %q", tc.name, m[0], failed)
			if passed < tc.min {
				t.Errorf("h2spec %s: %s, want at least %d passed\n%s", tc.name, m[0], tc.min, out)
			}
		})
	}
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
