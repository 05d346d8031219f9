package app

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/lab"
)

// cli runs applayer in-process as Main does and returns its output and
// exit code.
func cli(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return cliIn(t, "", args...)
}

func cliIn(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

// cliLab starts the default topology (every kind) on a random block and
// offset and writes it to a file for the clients' --lab-topology, so
// "--lab" finds this lab instead of one on 127.1/16.
func cliLab(t *testing.T) (*lab.Plan, string) {
	t.Helper()
	topo, err := lab.DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	ctx := testkit.Context(t, 120*time.Second)
	plan, _, _ := startRandomLab(t, ctx, topo, 33000, "off")
	raw, err := json.Marshal(plan.Topology)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "lab.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return plan, path
}

func hostAddr(t *testing.T, plan *lab.Plan, name string) string {
	t.Helper()
	h, ok := plan.Lookup(name)
	if !ok {
		t.Fatalf("the lab has no host %s", name)
	}
	return h.Addr.String()
}

// TestHTTPGetAgainstLab covers http get's first-use fixes against the
// default lab: --lab (issue 10.20), the page loader's errors and exit code
// and the response head as it came over the wire (10.18), and --json, -w,
// -f, -s (10.21).
func TestHTTPGetAgainstLab(t *testing.T) {
	plan, topo := cliLab(t)
	gaia := hostAddr(t, plan, "gaia.cs.umass.edu")
	lab := []string{"http", "get", "--lab", "--lab-topology", topo}
	get := func(args ...string) (string, string, int) {
		t.Helper()
		return cli(t, append(append([]string{}, lab...), args...)...)
	}
	const page = "http://gaia.cs.umass.edu/"

	t.Run("lab resolves through its resolver and offsets the port", func(t *testing.T) {
		out, errOut, code := get("-v", page)
		want := fmt.Sprintf("* connected to %s:%d", gaia, plan.Port(80))
		if code != 0 || !strings.Contains(out, "<html") || !strings.Contains(errOut, want) {
			t.Fatalf("code %d, stderr:\n%s\nwant %q and the page", code, errOut, want)
		}
	})
	t.Run("resolver errors name the resolver given", func(t *testing.T) {
		res := fmt.Sprintf("%s:%d", hostAddr(t, plan, "resolver.nyu.edu"), plan.Port(53))
		_, errOut, code := get("http://nohost.umass.edu/")
		if code != 6 || !strings.Contains(errOut, "lookup nohost.umass.edu on "+res) {
			t.Fatalf("code %d, stderr %q; want exit 6 (curl's: couldn't resolve) naming %s", code, errOut, res)
		}
	})
	t.Run("bad page mode", func(t *testing.T) {
		out, errOut, code := get("--page", "--mode", "bogus", page)
		if code == 0 || out != "" || !strings.Contains(errOut, `--mode "bogus"`) {
			t.Fatalf("code %d, stdout %q, stderr %q; want an error on stderr and a non-zero exit", code, out, errOut)
		}
	})
	t.Run("every page mode fails", func(t *testing.T) {
		closed := fmt.Sprintf("http://%s:%d/", gaia, testkit.FreePort(t, "tcp", gaia))
		out, errOut, code := cli(t, "http", "get", "--page", "--mode", "all", "-m", "5", closed)
		if code == 0 || out != "" || !strings.Contains(errOut, "mode persistent:") || !strings.Contains(errOut, "failed in 6 of 6 modes") {
			t.Fatalf("code %d, stdout %q, stderr %q; want each mode's error on stderr and a non-zero exit", code, out, errOut)
		}
	})
	t.Run("page modes", func(t *testing.T) {
		out, errOut, code := get("--page", "--mode", "all", page)
		if code != 0 || strings.Count(out, "mode ") != 6 || strings.Contains(out, "ERR") {
			t.Fatalf("code %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		out, _, code = get("--page", "--mode", "all", "--json", page)
		var modes []struct {
			Mode    string
			Error   string
			Conns   int `json:"connections"`
			Objects []struct{ Status int }
		}
		if err := json.Unmarshal([]byte(out), &modes); err != nil || code != 0 || len(modes) != 6 {
			t.Fatalf("--json: code %d, %v:\n%s", code, err, out)
		}
		for _, m := range modes {
			if m.Error != "" || len(m.Objects) < 11 || m.Objects[0].Status != 200 {
				t.Errorf("--json mode %+v", m)
			}
		}
	})
	t.Run("head as it came over the wire", func(t *testing.T) {
		plain, _, _ := get(page)
		out, errOut, code := get("-v", "--compressed", page)
		cl := regexp.MustCompile(`(?m)^< Content-Length: (\d+)$`).FindStringSubmatch(errOut)
		if code != 0 || !strings.Contains(errOut, "> Accept-Encoding: gzip") || !strings.Contains(errOut, "< Content-Encoding: gzip") || cl == nil {
			t.Fatalf("-v --compressed: code %d, stderr:\n%s\nwant Accept-Encoding sent, Content-Encoding and Content-Length received", code, errOut)
		}
		if n, _ := strconv.Atoi(cl[1]); n >= len(plain) || out != plain {
			t.Errorf("wire length %d for a %d-byte page; decoded body equal: %v", n, len(plain), out == plain)
		}
		_, errOut, _ = get("-v", page)
		if strings.Contains(errOut, "> Accept-Encoding") || strings.Contains(errOut, "< Content-Encoding") {
			t.Errorf("without --compressed (as curl) nothing asks for gzip:\n%s", errOut)
		}
	})
	t.Run("status lines as curl prints them", func(t *testing.T) {
		ca := filepath.Join(plan.StateDir, "web", "ca", "ca.pem")
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"-I", page}, "HTTP/1.1 200 OK\n"},
			{[]string{"-I", "--http2", page}, "HTTP/2 200\n"},
			{[]string{"-I", "--http2", "--cacert", ca, "https://gaia.cs.umass.edu/"}, "HTTP/2 200\n"},
			{[]string{"-I", "--http3", "--cacert", ca, "https://gaia.cs.umass.edu/"}, "HTTP/3 200\n"},
		} {
			out, errOut, code := get(tc.args...)
			if code != 0 || !strings.HasPrefix(out, tc.want) {
				t.Errorf("%v: code %d, stdout %q, stderr %q; want it to start %q", tc.args, code, out, errOut, tc.want)
			}
			if strings.Contains(tc.want, "/2") && !strings.Contains(out, "\ncontent-type: text/html") {
				t.Errorf("%v: HTTP/2 field names are lower case:\n%s", tc.args, out)
			}
		}
	})
	t.Run("write-out, fail, silent, json", func(t *testing.T) {
		plain, _, _ := get(page)
		out, errOut, code := get("-s", "-o", os.DevNull, "-w", `%{http_code} %{size_download} %{http_version} %{num_redirects}\n`, page)
		if want := fmt.Sprintf("200 %d 1.1 0\n", len(plain)); code != 0 || out != want || errOut != "" {
			t.Errorf("-w: code %d, stdout %q, stderr %q; want %q", code, out, errOut, want)
		}
		out, errOut, code = get("-f", page+"nope")
		if code != 22 || out != "" || !strings.Contains(errOut, "returned error: 404") {
			t.Errorf("-f: code %d, stdout %q, stderr %q; want exit 22 and no body", code, out, errOut)
		}
		out, errOut, code = get("-s", "-f", page+"nope")
		if code != 22 || out != "" || errOut != "" {
			t.Errorf("-s -f: code %d, stdout %q, stderr %q; want exit 22 and nothing printed", code, out, errOut)
		}
		_, errOut, code = get("-sS", "-f", page+"nope")
		if code != 22 || !strings.Contains(errOut, "404") {
			t.Errorf("-sS -f: code %d, stderr %q; want the error shown", code, errOut)
		}
		out, _, code = get("--json", page)
		var r struct {
			Status int
			Proto  string
			Header map[string][]string
			Body   string
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 || r.Status != 200 || r.Proto != "HTTP/1.1" || r.Body != plain || r.Header["Content-Type"] == nil {
			t.Errorf("--json: code %d, %v, %+v", code, err, r)
		}
	})
}

// TestHTTPGetCurlHabits checks the curl options that need a server to look
// at what arrives (issue 10.21): -A, -u, -T, -L, -d with -L, --compressed,
// -m in seconds.
func TestHTTPGetCurlHabits(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		user, pass, _ := r.BasicAuth()
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%s %s ua=%s auth=%s:%s body=%s", r.Method, r.URL.Path, r.UserAgent(), user, pass, body))
		mu.Unlock()
		switch r.URL.Path {
		case "/moved":
			http.Redirect(w, r, "/final", http.StatusFound)
		case "/see-other":
			http.Redirect(w, r, "/final", http.StatusSeeOther)
		case "/temp":
			http.Redirect(w, r, "/final", http.StatusTemporaryRedirect)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/slow":
			<-r.Context().Done()
		case "/gz":
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			zw.Write([]byte(strings.Repeat("compressible ", 100)))
			zw.Close()
		default:
			fmt.Fprintf(w, "at %s", r.URL.Path)
		}
	}))
	defer srv.Close()
	last := func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 {
			return ""
		}
		return seen[len(seen)-1]
	}
	upload := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(upload, []byte("uploaded"), 0o600)
	tests := []struct {
		name     string
		args     []string
		wantOut  string
		wantCode int
		wantSeen string
	}{
		{"user agent", []string{"-A", "lab-browser/1.0", srv.URL + "/a"}, "at /a", 0, "GET /a ua=lab-browser/1.0 auth=: body="},
		{"basic auth", []string{"-u", "alice:s3cret", srv.URL + "/a"}, "at /a", 0, "GET /a ua=applayer auth=alice:s3cret body="},
		{"upload to a directory URL", []string{"-T", upload, srv.URL + "/up/"}, "at /up/notes.txt", 0, "PUT /up/notes.txt ua=applayer auth=: body=uploaded"},
		{"no -L: the redirect itself", []string{srv.URL + "/moved"}, "<a href=\"/final\">Found</a>.\n\n", 0, "GET /moved ua=applayer auth=: body="},
		{"-L follows", []string{"-L", srv.URL + "/moved"}, "at /final", 0, "GET /final ua=applayer auth=: body="},
		{"-L: POST after 303 is a GET", []string{"-L", "-d", "x=1", srv.URL + "/see-other"}, "at /final", 0, "GET /final ua=applayer auth=: body="},
		{"-L: 307 keeps the method and body", []string{"-L", "-d", "x=1", srv.URL + "/temp"}, "at /final", 0, "POST /final ua=applayer auth=: body=x=1"},
		{"-L: redirect loop", []string{"-L", "--max-redirs", "3", srv.URL + "/loop"}, "", 47, "GET /loop ua=applayer auth=: body="},
		{"-m in seconds", []string{"-m", "0.2", srv.URL + "/slow"}, "", 28, "GET /slow ua=applayer auth=: body="},
		{"--compressed decodes", []string{"--compressed", srv.URL + "/gz"}, strings.Repeat("compressible ", 100), 0, "GET /gz ua=applayer auth=: body="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := cli(t, append([]string{"http", "get"}, tt.args...)...)
			if code != tt.wantCode || out != tt.wantOut || last() != tt.wantSeen {
				t.Fatalf("http get %v: code %d, stdout %q, stderr %q, server saw %q\nwant code %d, stdout %q, server %q",
					tt.args, code, out, errOut, last(), tt.wantCode, tt.wantOut, tt.wantSeen)
			}
		})
	}
	// -T - reads stdin.
	out, _, code := cliIn(t, "from stdin", "http", "get", "-T", "-", srv.URL+"/in")
	if code != 0 || out != "at /in" || last() != "PUT /in ua=applayer auth=: body=from stdin" {
		t.Errorf("-T -: code %d, %q, server saw %q", code, out, last())
	}
}

// TestDigHabits checks dig's options users type (issue 10.21) against the
// default lab, through --lab and directly.
func TestDigHabits(t *testing.T) {
	plan, topo := cliLab(t)
	gaia := hostAddr(t, plan, "gaia.cs.umass.edu")
	umass := hostAddr(t, plan, "dns.umass.edu")
	edu := hostAddr(t, plan, "a.edu-servers.net")
	dig := func(args ...string) string {
		t.Helper()
		out, errOut, code := cli(t, append([]string{"dig", "--lab", "--lab-topology", topo}, args...)...)
		if code != 0 {
			t.Fatalf("dig %v: code %d, stderr %s", args, code, errOut)
		}
		return out
	}
	if got, want := dig("gaia.cs.umass.edu", "+noall", "+answer"), "gaia.cs.umass.edu.\t3600\tIN\tA\t"+gaia+"\n"; got != want {
		t.Errorf("+noall +answer through the lab resolver: %q, want %q", got, want)
	}
	if got := dig("gaia.cs.umass.edu", "+short"); got != gaia+"\n" {
		t.Errorf("+short: %q", got)
	}
	if got := dig("-t", "NS", "umass.edu", "+short"); got != "dns.umass.edu.\n" {
		t.Errorf("-t NS: %q", got)
	}
	if got := dig("@"+edu, "umass.edu", "NS", "+norecurse", "+noall", "+authority"); !strings.HasPrefix(got, "umass.edu.\t") || !strings.Contains(got, "NS\tdns.umass.edu.") {
		t.Errorf("@server with the lab's port offset, +noall +authority: %q", got)
	}
	if got := dig("-x", gaia, "+noall", "+question"); !strings.Contains(got, ";"+reverseOf(gaia)+"\t\tIN\tPTR") {
		t.Errorf("-x: %q", got)
	}
	if got := dig("@"+umass, "umass.edu", "+nsid", "+nostats"); !strings.Contains(got, `("dns.umass.edu")`) {
		t.Errorf("+nsid: %s", got)
	}
	if got := dig("umass.edu", "+cd", "+dnssec"); !regexp.MustCompile(`;; flags: qr rd ra( ad)? cd;`).MatchString(got) {
		t.Errorf("+cd: the answer's flags lack cd:\n%s", got)
	}
	if got := dig("@"+umass, "umass.edu", "SOA", "+multi", "+noall", "+answer"); !strings.Contains(got, "SOA dns.umass.edu. hostmaster.umass.edu. (\n") || !strings.Contains(got, "; serial\n") || !strings.Contains(got, "; minimum (") {
		t.Errorf("+multi SOA:\n%s", got)
	}
	if got := dig("@"+umass, "umass.edu", "DNSKEY", "+multi", "+noall", "+answer"); !strings.Contains(got, "; KSK; alg = ECDSAP256SHA256 ; key id = ") {
		t.Errorf("+multi DNSKEY:\n%s", got)
	}
	var m struct {
		Status string
		Flags  []string
		Answer []struct{ Name, Type, Data string }
	}
	out := dig("--json", "gaia.cs.umass.edu")
	if err := json.Unmarshal([]byte(out), &m); err != nil || m.Status != "NOERROR" || len(m.Answer) != 1 || m.Answer[0].Data != gaia || m.Answer[0].Type != "A" {
		t.Errorf("--json: %v %+v\n%s", err, m, out)
	}
	if _, errOut, code := cli(t, "dig", "--lab", "--lab-topology", topo, "+bogus", "x"); code == 0 || !strings.Contains(errOut, "unknown option +bogus") {
		t.Errorf("+bogus: code %d, %q", code, errOut)
	}
}

func reverseOf(ip string) string {
	p := strings.Split(ip, ".")
	return p[3] + "." + p[2] + "." + p[1] + "." + p[0] + ".in-addr.arpa."
}

// TestLabUpBlockInUse: a second lab on the same block says which lab holds
// it (issue 10.21), not a bare "address already in use"; lab up --json
// prints the table as JSON.
func TestLabUpBlockInUse(t *testing.T) {
	plan, topo := cliLab(t)
	_, errOut, code := cli(t, "lab", "up", "-f", topo)
	if code == 0 {
		t.Fatal("a second lab on the same block started")
	}
	want := fmt.Sprintf("the lab block %s is already held by another lab (pid %d", plan.Block, os.Getpid())
	if !strings.Contains(errOut, want) {
		t.Fatalf("stderr: %s\nwant it to say %q", errOut, want)
	}
}

func TestLabUpJSON(t *testing.T) {
	topo, err := lab.DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	offset := 34000 + rand.IntN(20)*10
	topo.Lab = lab.Settings{Block: fmt.Sprintf("127.%d.0.0/16", 100+rand.IntN(150)), PortOffset: &offset, Admin: "127.0.0.1:0", StateDir: t.TempDir()}
	raw, _ := json.Marshal(topo)
	path := filepath.Join(t.TempDir(), "lab.json")
	os.WriteFile(path, raw, 0o600)

	var out, errOut testkit.Buffer
	root := NewRoot(strings.NewReader(""), &out, &errOut)
	root.SetArgs([]string{"lab", "up", "--json", "-f", path})
	ctx, cancel := context.WithCancel(testkit.Context(t, 60*time.Second))
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	for !strings.Contains(errOut.String(), "lab is up") {
		select {
		case err := <-done:
			t.Fatalf("lab up ended: %v\n%s", err, errOut.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	var table lab.Table
	if err := json.Unmarshal([]byte(out.String()), &table); err != nil {
		t.Fatalf("stdout is not the JSON table: %v\n%s", err, out.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("lab up: %v", err)
	}
	kinds := map[string]bool{}
	for _, e := range table.Services {
		kinds[e.Service] = true
		if len(e.Listen) == 0 || !strings.HasPrefix(e.Listen[0].Address, e.Address+":") {
			t.Errorf("row %+v: want its listeners on its address", e)
		}
	}
	if len(kinds) < 7 || table.PortOffset != offset || table.Block != topo.Lab.Block || len(table.Admin) != 1 {
		t.Errorf("table: kinds %v, offset %d, block %s, admin %v", kinds, table.PortOffset, table.Block, table.Admin)
	}
	if !strings.Contains(errOut.String(), "lab stopped") || strings.Contains(out.String(), "lab stopped") {
		t.Errorf("the notes belong on stderr, the table alone on stdout")
	}
}
