package app

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// listening waits for the command to announce its network listener and
// returns the address.
func (c *command) listening(t *testing.T, network string) string {
	t.Helper()
	re := regexp.MustCompile(`listening on ` + network + ` (\S+)`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, m := range re.FindAllStringSubmatch(c.out.String(), -1) {
			if !strings.Contains(m[0], "admin") {
				return m[1]
			}
		}
		select {
		case <-c.done:
			t.Fatalf("command ended: %v\n%s", c.err, c.out.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s listener announced:\n%s", network, c.out.String())
		}
	}
}

// TestConfigFilePolicy runs dns serve, http serve and http proxy with a config file and
// flags: a flag given on the command line wins over the file (the file's
// listen address cannot even be parsed), the file's other settings apply,
// and list flags replace the file's list.
func TestConfigFilePolicy(t *testing.T) {
	dir := t.TempDir()
	zoneFile := filepath.Join(dir, "db.example.com")
	os.WriteFile(zoneFile, []byte("$ORIGIN example.com.\n@ 3600 IN SOA ns hostmaster 1 3600 600 86400 300\n@ 3600 IN NS ns\nns 3600 IN A 127.0.0.1\n"), 0o644)
	orgFile := filepath.Join(dir, "db.example.org")
	os.WriteFile(orgFile, []byte("$ORIGIN example.org.\n@ 3600 IN SOA ns hostmaster 1 3600 600 86400 300\n@ 3600 IN NS ns\nns 3600 IN A 127.0.0.2\n"), 0o644)
	dnsCfg := filepath.Join(dir, "dns.yaml")
	os.WriteFile(dnsCfg, []byte("addr: 256.0.0.1:53\nnsid: from-file\nzones:\n  - origin: example.com\n    file: "+zoneFile+"\n"), 0o644)

	t.Run("dns serve", func(t *testing.T) {
		for _, tc := range []struct {
			args      []string
			nsid      string
			zone      string // served
			notServed string
		}{
			{nil, "from-file", "example.com.", "example.org."},
			{[]string{"--nsid", "from-flag"}, "from-flag", "example.com.", "example.org."},
			{[]string{"--zone", "example.org=" + orgFile}, "from-file", "example.org.", "example.com."},
		} {
			c := runCommand(t, append([]string{"dns", "serve", "-c", dnsCfg, "--listen", "127.0.0.1:0"}, tc.args...)...)
			addr := c.listening(t, "udp")
			ask := func(name string) *dns.Msg {
				q := new(dns.Msg)
				q.SetQuestion(name, dns.TypeSOA)
				q.SetEdns0(1232, false)
				q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID})
				r, _, err := (&dns.Client{Timeout: 3 * time.Second}).Exchange(q, addr)
				if err != nil {
					t.Fatalf("%v: %s: %v", tc.args, name, err)
				}
				return r
			}
			r := ask(tc.zone)
			if !r.Authoritative || r.Rcode != dns.RcodeSuccess {
				t.Errorf("%v: %s SOA: %v", tc.args, tc.zone, r)
			}
			var nsid string
			for _, o := range r.IsEdns0().Option {
				if n, ok := o.(*dns.EDNS0_NSID); ok {
					b, _ := hex.DecodeString(n.Nsid)
					nsid = string(b)
				}
			}
			if nsid != tc.nsid {
				t.Errorf("%v: NSID %q, want %q", tc.args, nsid, tc.nsid)
			}
			if r := ask(tc.notServed); r.Authoritative {
				t.Errorf("%v: %s is served too: %v", tc.args, tc.notServed, r)
			}
		}
	})

	t.Run("http serve", func(t *testing.T) {
		a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
		os.MkdirAll(a, 0o755)
		os.MkdirAll(b, 0o755)
		os.WriteFile(filepath.Join(a, "index.html"), []byte("site a"), 0o644)
		os.WriteFile(filepath.Join(b, "index.html"), []byte("site b"), 0o644)
		httpCfg := filepath.Join(dir, "http.json")
		os.WriteFile(httpCfg, []byte(`{"addr": "256.0.0.1:80", "sites": [{"root": "`+a+`"}]}`), 0o644)
		defer http.DefaultClient.CloseIdleConnections()
		for _, tc := range []struct {
			args []string
			want string
		}{
			{nil, "site a"},
			{[]string{"--root", b}, "site b"},
		} {
			c := runCommand(t, append([]string{"http", "serve", "--config", httpCfg, "--listen", "127.0.0.1:0"}, tc.args...)...)
			res, err := http.Get("http://" + c.listening(t, "tcp") + "/")
			if err != nil {
				t.Fatalf("%v: %v", tc.args, err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if string(body) != tc.want {
				t.Errorf("%v: GET / = %q, want %q", tc.args, body, tc.want)
			}
		}
	})

	t.Run("http proxy", func(t *testing.T) {
		origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "from the origin")
		}))
		defer origin.Close()
		o := strings.TrimPrefix(origin.URL, "http://")
		proxyCfg := filepath.Join(dir, "proxy.yaml")
		os.WriteFile(proxyCfg, []byte("addr: 256.0.0.1:3128\nname: from-file\nsites: [{host: \"*\", origins: [\""+o+"\"]}]\ngc_percent: 0\n"), 0o644)
		defer http.DefaultClient.CloseIdleConnections()
		for _, tc := range []struct {
			args []string
			want string
		}{
			{nil, "from-file"},
			{[]string{"--name", "from-flag"}, "from-flag"},
		} {
			c := runCommand(t, append([]string{"http", "proxy", "--config", proxyCfg, "--listen", "127.0.0.1:0"}, tc.args...)...)
			res, err := http.Get("http://" + c.listening(t, "tcp") + "/x")
			if err != nil {
				t.Fatalf("%v: %v", tc.args, err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if string(body) != "from the origin" || !strings.HasPrefix(res.Header.Get("Cache-Status"), tc.want+";") {
				t.Errorf("%v: %q, Cache-Status %q, want the origin's body from %s", tc.args, body, res.Header.Get("Cache-Status"), tc.want)
			}
		}
	})
}
