package server

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// pushPage references two same-site objects, one on another site (never
// pushed) and a duplicate.
const pushPage = `<html><head><link rel="stylesheet" href="big.css"></head>
<body><img src="/hello.txt"><img src="http://elsewhere.example/x.png"><img src="hello.txt"></body></html>
`

// nghttpPushes runs nghttp -nv on url and returns the promised paths and,
// for each promised stream, the status it answered and whether its DATA
// ended the stream.
func nghttpPushes(t *testing.T, nghttp string, args ...string) (paths []string, status map[int]string, ended map[int]bool, out string) {
	t.Helper()
	out = runPeer(t, nghttp, append([]string{"-nv", "--no-verify-peer"}, args...)...)
	status, ended = map[int]string{}, map[int]bool{}
	// nghttp prints a PUSH_PROMISE's header fields (received on the
	// parent stream: the only :path a client receives) as they are
	// decoded, before the frame line with the promised stream id.
	for _, m := range regexp.MustCompile(`recv \(stream_id=\d+\) :path: (\S+)`).FindAllStringSubmatch(out, -1) {
		paths = append(paths, m[1])
	}
	for _, m := range regexp.MustCompile(`recv PUSH_PROMISE frame .*\n(?:\s+;.*\n)*\s+\(padlen=\d+, promised_stream_id=(\d+)\)`).FindAllStringSubmatch(out, -1) {
		status[atoi(m[1])] = ""
	}
	if len(status) != len(paths) {
		t.Errorf("%d PUSH_PROMISE frames, %d promised paths\n%s", len(status), len(paths), out)
	}
	for _, m := range regexp.MustCompile(`recv \(stream_id=(\d+)\) :status: (\d+)`).FindAllStringSubmatch(out, -1) {
		if _, ok := status[atoi(m[1])]; ok {
			status[atoi(m[1])] = m[2]
		}
	}
	for _, m := range regexp.MustCompile(`recv DATA frame <length=\d+, flags=0x\w+, stream_id=(\d+)>\n\s+; END_STREAM`).FindAllStringSubmatch(out, -1) {
		ended[atoi(m[1])] = true
	}
	sort.Strings(paths)
	return paths, status, ended, out
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// TestPushNghttp: HTML pages served over HTTP/2 (TLS and h2c) push the
// configured objects, or the page's same-site references, and nghttp
// receives PUSH_PROMISE frames and the pushed responses; --no-push and
// HTTP/1.1 get none.
func TestPushNghttp(t *testing.T) {
	nghttp := peer(t, "nghttp")
	e := start(t, func(c *Config) {
		c.Sites[0].Push = &Push{Refs: true, Paths: map[string][]string{"/": {"/hello.txt"}}}
	})
	if err := os.WriteFile(filepath.Join(e.root, "page.html"), []byte(pushPage), 0o644); err != nil {
		t.Fatal(err)
	}
	tlsBase := "https://localhost:" + port(e.tlsA)
	cases := []struct {
		name, url string
		want      []string
	}{
		{"refs over TLS", tlsBase + "/page.html", []string{"/big.css", "/hello.txt"}},
		{"refs over h2c", "http://" + e.plain + "/page.html", []string{"/big.css", "/hello.txt"}},
		{"configured list", tlsBase + "/", []string{"/hello.txt"}},
		{"not HTML", tlsBase + "/hello.txt", nil},
	}
	pushed := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			paths, status, ended, out := nghttpPushes(t, nghttp, tc.url)
			if strings.Join(paths, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("promised %v, want %v\n%s", paths, tc.want, out)
			}
			for id, st := range status {
				if id%2 != 0 || st != "200" || !ended[id] {
					t.Errorf("pushed stream %d: even id, status %q (want 200), ended %v\n%s", id, st, ended[id], out)
				}
			}
			pushed += len(tc.want)
		})
	}
	t.Run("client refuses push", func(t *testing.T) {
		paths, _, _, out := nghttpPushes(t, nghttp, "--no-push", tlsBase+"/page.html")
		if len(paths) != 0 || !strings.Contains(out, ":status: 200") {
			t.Errorf("with --no-push: promised %v\n%s", paths, out)
		}
	})
	if got := testutil.ToFloat64(e.srv.m.pushes); int(got) != pushed {
		t.Errorf("applayer_http_server_pushes_total = %v, want %d", got, pushed)
	}
}

func TestPushConfig(t *testing.T) {
	cases := []struct {
		name  string
		push  Push
		field string
	}{
		{"max too large", Push{Refs: true, Max: 101}, "push.max"},
		{"relative page", Push{Paths: map[string][]string{"index.html": {"/a"}}}, "push.paths"},
		{"other site", Push{Paths: map[string][]string{"/": {"//cdn.example/a"}}}, "push.paths"},
		{"relative object", Push{Paths: map[string][]string{"/": {"a.css"}}}, "push.paths"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.push
			c := Config{Addr: "127.0.0.1:0", Sites: []Site{{Root: t.TempDir(), Push: &p}}}
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("Validate = %v, want an error naming %s", err, tc.field)
			}
		})
	}
	c := Config{Addr: "127.0.0.1:0", Sites: []Site{{Root: t.TempDir(), Push: &Push{Refs: true}}}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.defaults()
	if c.Sites[0].Push.Max != 16 {
		t.Errorf("default max = %d, want 16", c.Sites[0].Push.Max)
	}
}
