package resolver

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/testkit"
)

// needPeer is testkit.Peer: PATH, then /usr/sbin and /sbin (where nsd
// and unbound live); a failure under APPLAYER_REQUIRE_PEERS.
func needPeer(t *testing.T, name string) string {
	t.Helper()
	return testkit.Peer(t, name)
}

// needPort53 skips unless port 53 can be bound (root).
func needPort53(t *testing.T, n *testNet) {
	t.Helper()
	pc, err := net.ListenPacket("udp", n.ip(250).String()+":53")
	if err != nil {
		testkit.Skip(t, "cannot bind port 53 (not root?): %v", err)
	}
	pc.Close()
}

// startDaemon runs a peer in the foreground and stops it (by PID) at cleanup.
func startDaemon(t *testing.T, path string, args ...string) {
	t.Helper()
	cmd := exec.Command(path, args...)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(path), out.String())
		}
	})
}

// waitDNS polls addr with a query until it answers (readiness, no sleep guess).
func waitDNS(t *testing.T, addr, name string) {
	t.Helper()
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeSOA)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, _, err := c.Exchange(m, addr); err == nil {
			return
		}
	}
	t.Fatalf("%s never answered", addr)
}

// startNSD serves zones (apex -> text) with NSD on ip:53.
func startNSD(t *testing.T, n *testNet, host byte, zones map[string]string) {
	nsd := needPeer(t, "nsd")
	dir := t.TempDir()
	ip := n.ip(host).String()
	conf := fmt.Sprintf(`server:
  ip-address: %s
  port: 53
  username: ""
  chroot: ""
  zonesdir: "%s"
  database: ""
  pidfile: "%s/nsd.pid"
  xfrdfile: "%s/xfrd.state"
  zonelistfile: "%s/zone.list"
  server-count: 1
  do-ip6: no
  verbosity: 1
remote-control:
  control-enable: no
`, ip, dir, dir, dir, dir)
	first := ""
	for apex, text := range zones {
		file := strings.Trim(apex, ".") + "root.zone"
		if err := os.WriteFile(filepath.Join(dir, file), []byte(n.zoneText(text)), 0o600); err != nil {
			t.Fatal(err)
		}
		conf += fmt.Sprintf("zone:\n  name: \"%s\"\n  zonefile: \"%s\"\n", apex, file)
		first = apex
	}
	cf := filepath.Join(dir, "nsd.conf")
	os.WriteFile(cf, []byte(conf), 0o600)
	startDaemon(t, nsd, "-d", "-c", cf)
	waitDNS(t, ip+":53", first)
}

// TestInteropNSDHierarchyVersusUnbound serves the test hierarchy with NSD
// (root, test., example.test. + glueless.test.), adds a lame server and a
// dead one, and resolves a list of names with applayer and with Unbound:
// the answers must agree.
func TestInteropNSDHierarchyVersusUnbound(t *testing.T) {
	needPeer(t, "unbound")
	needPeer(t, "nsd")
	n := newTestNet(t, 53)
	needPort53(t, n)
	startNSD(t, n, 1, map[string]string{".": rootZone})
	startNSD(t, n, 2, map[string]string{"test.": testZone})
	startNSD(t, n, 4, map[string]string{"example.test.": exampleZone, "glueless.test.": gluelessZone})
	startAuth(t, n, 5, map[string]string{"other.": lameZone}) // lame for lame.test.
	// {N}.3 (test.'s second server) is dead.

	ub, hints := startUnbound(t, n,
		`module-config: "iterator"`,
		`local-zone: "test." nodefault`,
		`local-zone: "invalid." nodefault`)

	r := startResolver(t, &hierarchy{net: n}, func(c *Config) {
		c.RootHints, c.RootHintsFile, c.UpstreamPort = nil, hints, 53
	})
	cases := []struct {
		name  string
		qtype uint16
	}{
		{"www.example.test", dns.TypeA},
		{"www.example.test", dns.TypeAAAA},
		{"example.test", dns.TypeMX},
		{"example.test", dns.TypeNS},
		{"alias.example.test", dns.TypeA},
		{"alias.example.test", dns.TypeCNAME},
		{"ext.example.test", dns.TypeA},    // CNAME across zones into a glueless delegation
		{"www.glueless.test", dns.TypeA},   // glueless delegation
		{"www.dn.example.test", dns.TypeA}, // DNAME
		{"a.b.c.example.test", dns.TypeA},
		{"b.c.example.test", dns.TypeA},   // empty non-terminal: NODATA
		{"nope.example.test", dns.TypeA},  // NXDOMAIN
		{"www.example.test", dns.TypeTXT}, // NODATA
		{"nothing.invalid", dns.TypeA},    // NXDOMAIN at the root
		{"www.lame.test", dns.TypeA},      // lame delegation: SERVFAIL
	}
	for _, tc := range cases {
		t.Run(tc.name+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
			ours := ask(t, r.addr, tc.name, tc.qtype)
			theirs := askRetry(t, ub+":53", tc.name, tc.qtype)
			if ours.Rcode != theirs.Rcode {
				t.Fatalf("rcode: applayer %s, unbound %s", dns.RcodeToString[ours.Rcode], dns.RcodeToString[theirs.Rcode])
			}
			a, b := canon(ours.Answer), canon(theirs.Answer)
			if a != b {
				t.Errorf("answers differ:\napplayer:\n%s\nunbound:\n%s", a, b)
			}
		})
	}
}

// startUnbound runs Unbound on {N}.200 port 53 with root hints pointing at
// {N}.1 and the extra server: lines given (module-config, trust anchor,
// local zones), waits until it answers, and logs its log if the test
// fails. It returns Unbound's IP and the root hints file.
func startUnbound(t *testing.T, n *testNet, server ...string) (ip, hints string) {
	t.Helper()
	unbound := needPeer(t, "unbound")
	dir := t.TempDir()
	hints = filepath.Join(dir, "root.hints")
	if err := os.WriteFile(hints, []byte(n.zoneText(".  3600000 NS a.root.\na.root. 3600000 A {N}.1\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	ip = n.ip(200).String()
	conf := fmt.Sprintf(`server:
  interface: %s
  port: 53
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "%s"
  pidfile: "%s/unbound.pid"
  use-syslog: no
  root-hints: "%s"
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  num-threads: 1
  do-ip6: no
  verbosity: 1
  logfile: "%s/unbound.log"
`, ip, dir, dir, hints, dir)
	for _, l := range server {
		conf += "  " + l + "\n"
	}
	conf += "remote-control:\n  control-enable: no\n"
	cf := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, unbound, "-d", "-c", cf)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "unbound.log"))
			t.Logf("unbound log:\n%s", b)
		}
	})
	waitDNS(t, ip+":53", ".")
	return ip, hints
}

// askRetry queries like a stub resolver: 2s per try, 4 tries.
func askRetry(t *testing.T, server, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Timeout: 2 * time.Second}
	var err error
	for range 4 {
		var r *dns.Msg
		if r, _, err = c.Exchange(m, server); err == nil {
			return r
		}
	}
	t.Fatalf("%s %s: %v", name, dns.TypeToString[qtype], err)
	return nil
}

func canon(rrs []dns.RR) string {
	s := rrStrings(rrs)
	for i := range s {
		s[i] = strings.ToLower(s[i])
	}
	sort.Strings(s)
	return strings.Join(s, "\n")
}
