package resolver

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
		// A closed UDP port answers at once (ICMP): do not spin on it.
		time.Sleep(20 * time.Millisecond)
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
// dead one, and resolves a list of names with applayer and with Unbound.
// Each case states what is right on its own (rcode, AD, the answer
// records case-exact, the SOA of a negative answer), and both resolvers
// must give it: two resolvers agreeing on SERVFAIL is not a pass. Names
// are asked in mixed case: NSD compresses names in records against the
// question, so 0x20's random spelling would show in them if the resolver
// did not restore it. The right spelling is Unbound's: a name that shares
// a suffix with the question is spelled there as the client spelled the
// question (both compress names against the question on the way out),
// the rest as the zone spells it.
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
		`use-caps-for-id: yes`,
		`local-zone: "test." nodefault`,
		`local-zone: "invalid." nodefault`)

	r := startResolver(t, &hierarchy{net: n}, func(c *Config) {
		c.RootHints, c.RootHintsFile, c.UpstreamPort = nil, hints, 53
	})
	for _, tc := range differentialCases(n) {
		t.Run(tc.name+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
			tc.check(t, "applayer", ask(t, r.addr, tc.name, tc.qtype))
			tc.check(t, "unbound", askRetry(t, ub+":53", tc.name, tc.qtype))
		})
	}
}

// diffCase is one query of a differential test with its expected reply.
type diffCase struct {
	name  string
	qtype uint16
	rcode int
	ad    bool
	// answer is the answer section, case-exact, TTLs zeroed, in order
	// (rrStrings' format).
	answer []string
	// soa, for a negative answer (NXDOMAIN or NODATA), is the owner of the
	// SOA the authority section must carry.
	soa string
}

// differentialCases are the NSD hierarchy's queries and right answers.
func differentialCases(n *testNet) []diffCase {
	const (
		www10 = "www.example.test. 0 IN A 192.0.2.10"
		www11 = "www.example.test. 0 IN A 192.0.2.11"
	)
	return []diffCase{
		{name: "www.example.test", qtype: dns.TypeA, answer: []string{www10, www11}},
		{name: "WWW.Example.TEST", qtype: dns.TypeA, answer: []string{"WWW.Example.TEST. 0 IN A 192.0.2.10", "WWW.Example.TEST. 0 IN A 192.0.2.11"}},
		{name: "www.example.test", qtype: dns.TypeAAAA, answer: []string{"www.example.test. 0 IN AAAA 2001:db8::10"}},
		{name: "Example.TEST", qtype: dns.TypeMX, answer: []string{"Example.TEST. 0 IN MX 10 mail.Example.TEST."}},
		{name: "EXAMPLE.test", qtype: dns.TypeNS, answer: []string{"EXAMPLE.test. 0 IN NS ns.EXAMPLE.test."}},
		{name: "example.test", qtype: dns.TypeSOA, answer: []string{"example.test. 0 IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 300"}},
		{name: "Alias.Example.Test", qtype: dns.TypeA, answer: []string{"Alias.Example.Test. 0 IN CNAME www.Example.Test.", "www.Example.Test. 0 IN A 192.0.2.10", "www.Example.Test. 0 IN A 192.0.2.11"}},
		{name: "alias.example.test", qtype: dns.TypeCNAME, answer: []string{"alias.example.test. 0 IN CNAME www.example.test."}},
		// CNAME across zones into a glueless delegation.
		{name: "EXT.example.test", qtype: dns.TypeA, answer: []string{"EXT.example.test. 0 IN CNAME www.glueless.test.", "www.glueless.test. 0 IN A 192.0.2.20"}},
		{name: "www.Glueless.test", qtype: dns.TypeA, answer: []string{"www.Glueless.test. 0 IN A 192.0.2.20"}},
		{name: "www.dn.example.test", qtype: dns.TypeA, answer: []string{"dn.example.test. 0 IN DNAME example.test.", "www.dn.example.test. 0 IN CNAME www.example.test.", www10, www11}},
		{name: "a.b.c.example.test", qtype: dns.TypeA, answer: []string{"a.b.c.example.test. 0 IN A 192.0.2.99"}},
		{name: "b.c.example.test", qtype: dns.TypeA, soa: "example.test."}, // empty non-terminal: NODATA
		{name: "nope.Example.test", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: "Example.test."},
		{name: "www.example.test", qtype: dns.TypeTXT, soa: "example.test."}, // NODATA
		{name: "nothing.invalid", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: "."},
		{name: "www.lame.test", qtype: dns.TypeA, rcode: dns.RcodeServerFailure}, // lame delegation
	}
}

// check fails the test unless m is the case's expected reply.
func (tc diffCase) check(t *testing.T, who string, m *dns.Msg) {
	t.Helper()
	if m.Rcode != tc.rcode || m.AuthenticatedData != tc.ad {
		t.Errorf("%s: rcode %s AD=%v, want %s AD=%v", who, dns.RcodeToString[m.Rcode], m.AuthenticatedData, dns.RcodeToString[tc.rcode], tc.ad)
	}
	if len(m.Question) != 1 || m.Question[0].Name != dns.Fqdn(tc.name) {
		t.Errorf("%s: question %v, want %q as asked", who, m.Question, dns.Fqdn(tc.name))
	}
	// Signatures are checked for presence (their bytes differ per signing);
	// order within an RRset is the server's choice (Unbound rotates).
	var plain []dns.RR
	sigs := 0
	for _, rr := range m.Answer {
		if rr.Header().Rrtype == dns.TypeRRSIG {
			sigs++
			continue
		}
		plain = append(plain, rr)
	}
	if tc.ad && len(tc.answer) > 0 && sigs == 0 {
		t.Errorf("%s: secure answer without its RRSIG", who)
	}
	got, want := rrStrings(plain), slices.Clone(tc.answer)
	slices.Sort(got)
	slices.Sort(want)
	if got, want := strings.Join(got, "\n"), strings.Join(want, "\n"); got != want {
		t.Errorf("%s: answer\n%s\nwant\n%s", who, got, want)
	}
	if tc.soa != "" {
		var soa *dns.SOA
		for _, rr := range m.Ns {
			if s, ok := rr.(*dns.SOA); ok {
				soa = s
			}
		}
		if soa == nil || soa.Hdr.Name != tc.soa {
			t.Errorf("%s: negative answer's authority %v, want the SOA of %s", who, m.Ns, tc.soa)
		}
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
