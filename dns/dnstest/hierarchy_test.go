package dnstest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/dig"
	"github.com/applayer/applayer/dns/zone"
	"github.com/applayer/applayer/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

func TestTrace(t *testing.T) {
	h := Start(t, Chapter(), Options{Signed: []string{".", "edu", "umass.edu"}})
	var out bytes.Buffer
	err := dig.Trace(testkit.Context(t, 10*time.Second), &out, dig.Options{
		Name: "gaia.cs.umass.edu", Type: dns.TypeA,
		Roots: []string{h.Root(Chapter()).String()}, Port: h.Port,
	})
	if err != nil {
		t.Fatal(err)
	}
	steps := []string{
		".\t3600\tIN\tNS\ta.root-servers.net.",
		"edu.\t3600\tIN\tNS\ta.edu-servers.net.",
		"(a.root-servers.net)",
		"umass.edu.\t3600\tIN\tNS\tdns.umass.edu.",
		"(a.edu-servers.net)",
		"cs.umass.edu.\t3600\tIN\tNS\tgaia.cs.umass.edu.",
		"(dns.umass.edu)",
		"gaia.cs.umass.edu.\t3600\tIN\tA\t" + h.Addrs["gaia.cs.umass.edu"].String(),
		"(gaia.cs.umass.edu)",
	}
	s := out.String()
	pos := 0
	for _, st := range steps {
		i := strings.Index(s[pos:], st)
		if i < 0 {
			t.Fatalf("trace lacks %q after offset %d:\n%s", st, pos, s)
		}
		pos += i + len(st)
	}
}

// TestUnboundValidatesChain has Unbound resolve through a hierarchy we
// signed (root, edu, umass.edu) with the root's DS as its trust anchor:
// answers in the chain carry AD, a tampered record fails validation.
func TestUnboundValidatesChain(t *testing.T) {
	unbound := testkit.Peer(t, "unbound")
	// Resolvers only follow delegations to port 53.
	if pc, err := net.ListenPacket("udp", RandomBlock().Next().String()+":53"); err != nil {
		testkit.Skip(t, "cannot bind port 53 (needs root or CAP_NET_BIND_SERVICE): %v", err)
	} else {
		pc.Close()
	}
	h := Start(t, Chapter(), Options{Port: 53, Signed: []string{".", "edu", "umass.edu"}, Records: map[string][]string{
		"umass.edu.": {"tampered A 192.0.2.1"},
	}})
	if _, err := os.Stat(h.RootDS); err != nil {
		t.Fatalf("root trust anchor not written: %v", err)
	}
	dir := t.TempDir()
	listen := h.Addrs["www.umass.edu"].Next().Next()
	conf := fmt.Sprintf(`server:
  interface: %s
  port: 53
  do-not-query-localhost: no
  trust-anchor-file: %q
  root-hints: %q
  username: ""
  chroot: ""
  directory: %q
  pidfile: ""
  use-syslog: no
  do-daemonize: no
  verbosity: 1
  val-log-level: 2
  module-config: "validator iterator"
  access-control: 127.0.0.0/8 allow
remote-control:
  control-enable: no
`, listen, h.RootDS, h.HintsFile(t, Chapter()), dir)
	cf := filepath.Join(dir, "unbound.conf")
	os.WriteFile(cf, []byte(conf), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	var logs testkit.Buffer
	cmd := exec.CommandContext(ctx, unbound, "-d", "-c", cf)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	addr := net.JoinHostPort(listen.String(), "53")
	c := &dns.Client{Timeout: 2 * time.Second}
	ask := func(name string) *dns.Msg {
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		q.SetEdns0(1232, true)
		deadline := time.Now().Add(10 * time.Second)
		for {
			r, _, err := c.Exchange(q, addr)
			if err == nil {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("unbound does not answer: %v\n%s", err, logs.String())
			}
			time.Sleep(50 * time.Millisecond) // waiting for unbound to bind
		}
	}
	r := ask("www.umass.edu.")
	if r.Rcode != dns.RcodeSuccess || !r.AuthenticatedData || len(r.Answer) == 0 {
		t.Fatalf("www.umass.edu: rcode %s ad=%v answers %d\n%s\n%s", dns.RcodeToString[r.Rcode], r.AuthenticatedData, len(r.Answer), r, logs.String())
	}
	r = ask("dns.amazon.com.")
	if r.Rcode != dns.RcodeSuccess || r.AuthenticatedData {
		t.Errorf("dns.amazon.com (insecure delegation): rcode %s ad=%v", dns.RcodeToString[r.Rcode], r.AuthenticatedData)
	}
	// Tamper: change the address but keep the signature.
	srv := h.Servers["dns.umass.edu"]
	var rrs []dns.RR
	for _, rr := range srv.Zone("umass.edu").Records() {
		if a, ok := rr.(*dns.A); ok && strings.HasPrefix(a.Hdr.Name, "tampered.") {
			a = dns.Copy(a).(*dns.A)
			a.A = net.ParseIP("192.0.2.66")
			rr = a
		}
		rrs = append(rrs, rr)
	}
	z, err := zone.New("umass.edu.", rrs)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetZone(z)
	r = ask("tampered.umass.edu.")
	if r.Rcode != dns.RcodeServerFailure {
		t.Errorf("tampered record: rcode %s ad=%v, want SERVFAIL\n%s", dns.RcodeToString[r.Rcode], r.AuthenticatedData, r)
	}
}
