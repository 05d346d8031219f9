package main

import (
	"bufio"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/testkit"
)

// TestLabSplit runs the default topology split across two processes with
// lab up --hosts, as across two machines: the DNS hierarchy and gaia in
// one, the campus (resolver, web cache) and the rest in the other. The
// campus resolver resolves gaia.cs.umass.edu by iterating through the
// other process's servers (validated: the chain of trust spans both), and
// the campus cache fetches gaia's page from it. Each process runs only its
// own hosts and stops cleanly.
func TestLabSplit(t *testing.T) {
	dir := t.TempDir()
	topo := defaultLabFile(t, dir)
	ctx := testkit.Context(t, 90*time.Second)
	dnsSide := "a.root-servers.net,a.edu-servers.net,a.gtld-servers.net,d.nic.fr,dns.umass.edu,gaia.cs.umass.edu,dns.nyu.edu,dns.hamburger.edu,dns.crepes.fr,dns.amazon.com"
	campus := "resolver.nyu.edu,cache.nyu.edu,shop.amazon.com,sockets.lab,tracker.lab,seed.lab,dht.lab"
	start := func(hosts string) (table string, stop func()) {
		t.Helper()
		cmd := applayer(ctx, "lab", "up", "-f", topo, "--hosts", hosts)
		stdout, _ := cmd.StdoutPipe()
		var stderr testkit.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })
		sc := bufio.NewScanner(stdout)
		var b strings.Builder
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "lab is up") {
				break
			}
		}
		if !strings.Contains(b.String(), "lab is up") {
			t.Fatalf("lab up --hosts %s did not come up:\n%s\nstderr: %s", hosts, b.String(), stderr.String())
		}
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
			}
		}()
		return b.String(), func() {
			cmd.Process.Signal(syscall.SIGINT)
			if err := cmd.Wait(); err != nil {
				t.Errorf("lab up --hosts %s: %v\nstderr: %s", hosts, err, stderr.String())
			}
		}
	}
	tableA, stopA := start(dnsSide)
	tableB, stopB := start(campus)
	for _, c := range []struct {
		table, has, hasNot string
	}{{tableA, "a.root-servers.net", "resolver.nyu.edu"}, {tableB, "resolver.nyu.edu", "a.root-servers.net"}} {
		if !strings.Contains(c.table, c.has) || strings.Contains(c.table, c.hasNot) {
			t.Errorf("table should list %s and not %s:\n%s", c.has, c.hasNot, c.table)
		}
	}
	addr := func(table, host, kind string) string {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(host) + `\s+\S+\s+` + kind + `\s+(?:udp|tcp) (127\.[0-9.]+:\d+)`).FindStringSubmatch(table)
		if m == nil {
			t.Fatalf("no %s on %s in:\n%s", kind, host, table)
		}
		return m[1]
	}
	resolver := addr(tableB, "resolver.nyu.edu", "dns-resolver")
	gaiaIP := regexp.MustCompile(`(?m)^gaia\.cs\.umass\.edu\s+(\S+)`).FindStringSubmatch(tableA)[1]
	q := new(dns.Msg)
	q.SetQuestion("gaia.cs.umass.edu.", dns.TypeA)
	q.SetEdns0(1232, true)
	r, _, err := (&dns.Client{Timeout: 10 * time.Second}).ExchangeContext(ctx, q, resolver)
	if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		t.Fatalf("resolver.nyu.edu (process 2) resolving gaia.cs.umass.edu (process 1): %v %v", r, err)
	}
	if a, ok := r.Answer[len(r.Answer)-1].(*dns.A); !ok || a.A.String() != gaiaIP {
		t.Errorf("answer %v, want gaia's address %s", r.Answer, gaiaIP)
	}
	// umass.edu is signed from the root down (cs.umass.edu is not): the
	// chain of trust, keys and DS made in one process, validates in the
	// other.
	q.SetQuestion("dns.umass.edu.", dns.TypeA)
	if r, _, err = (&dns.Client{Timeout: 10 * time.Second}).ExchangeContext(ctx, q, resolver); err != nil || r.Rcode != dns.RcodeSuccess || !r.AuthenticatedData {
		t.Errorf("dns.umass.edu across the processes is not validated (want ad): %v %v", r, err)
	}
	proxy := addr(tableB, "cache.nyu.edu", "web-cache")
	pu, _ := url.Parse("http://" + proxy)
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}, Timeout: 15 * time.Second}
	res, err := hc.Get("http://gaia.cs.umass.edu/")
	if err != nil {
		t.Fatalf("GET gaia (process 1) through cache.nyu.edu (process 2): %v", err)
	}
	res.Body.Close()
	hc.CloseIdleConnections()
	if res.StatusCode != http.StatusOK {
		t.Errorf("GET gaia through the cache: %s", res.Status)
	}
	stopB()
	stopA()
}
