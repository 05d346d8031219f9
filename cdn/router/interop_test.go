package router_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/testkit"
)

// TestDigAndKdigSubnet checks the router with the real query tools: dig
// +subnet and kdig +subnet get the edge of the subnet's cluster and the
// option echoed with its scope; without the option, the answer follows
// the querying address.
func TestDigAndKdigSubnet(t *testing.T) {
	dig, kdig := testkit.Peer(t, "dig"), testkit.Peer(t, "kdig")
	c := startCDN(t, 100)
	host, port, _ := net.SplitHostPort(c.r.Local())
	aRe := regexp.MustCompile(`(?m)^video\.kingcdn\.com\.\s+20\s+IN\s+A\s+(\S+)`)
	for _, tc := range []struct {
		tool    string
		args    []string
		cluster string
		ecs     string // in the reply's OPT section
	}{
		{"dig", []string{"+subnet=10.1.2.0/24"}, "umass", "CLIENT-SUBNET: 10.1.2.0/24/16"},
		{"dig", []string{"+subnet=10.3.0.0/20"}, "crepes", "CLIENT-SUBNET: 10.3.0.0/20/16"},
		{"dig", nil, "nyu", ""},
		{"kdig", []string{"+subnet=10.2.0.0/24"}, "nyu", "CLIENT-SUBNET: 10.2.0.0/24/16"},
		{"kdig", []string{"+subnet=2001:db8:3::/56"}, "crepes", "CLIENT-SUBNET: 2001:db8:3::/56/48"},
		{"kdig", []string{"+tcp", "+subnet=10.1.0.0/16"}, "umass", "CLIENT-SUBNET: 10.1.0.0/16/16"},
	} {
		t.Run(tc.tool+" "+strings.Join(tc.args, " "), func(t *testing.T) {
			bin, limits := dig, []string{"+time=3", "+tries=1"}
			if tc.tool == "kdig" {
				bin, limits = kdig, []string{"+timeout=3", "+retry=0"}
			}
			args := append(append([]string{"@" + host, "-p", port, "video.kingcdn.com", "A", "+norec"}, limits...), tc.args...)
			out, err := exec.Command(bin, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("%s %v: %v\n%s", tc.tool, args, err, out)
			}
			m := aRe.FindStringSubmatch(string(out))
			if m == nil || !inCluster(m[1], tc.cluster) {
				t.Errorf("answer %v, want an edge of %s\n%s", m, tc.cluster, out)
			}
			if !strings.Contains(string(out), "aa") {
				t.Errorf("not authoritative\n%s", out)
			}
			if tc.ecs != "" && !strings.Contains(string(out), tc.ecs) {
				t.Errorf("reply lacks %q\n%s", tc.ecs, out)
			}
		})
	}
}

// TestUnboundForwardsClientSubnet has Unbound (subnetcache module) as
// the clients' resolver, with the router as the stub for kingcdn.com:
// Unbound sends the CDN its client's subnet (RFC 7871), so two clients
// of the same resolver, in different networks, get different clusters,
// each answer cached per scope.
func TestUnboundForwardsClientSubnet(t *testing.T) {
	unbound := testkit.Peer(t, "unbound")
	c := startCDN(t, 100)
	dir := t.TempDir()
	port := testkit.FreePort(t, "udp", "127.0.0.1")
	conf := fmt.Sprintf(`server:
  interface: 127.0.0.1
  port: %d
  do-not-query-localhost: no
  username: ""
  chroot: ""
  directory: %q
  pidfile: ""
  use-syslog: no
  do-daemonize: no
  verbosity: 1
  module-config: "subnetcache iterator"
  send-client-subnet: 127.0.0.0/8
  client-subnet-always-forward: yes
  max-client-subnet-ipv4: 24
  max-client-subnet-ipv6: 56
  access-control: 127.0.0.0/8 allow
stub-zone:
  name: "kingcdn.com"
  stub-addr: %s
remote-control:
  control-enable: no
`, port, dir, strings.Replace(c.r.Local(), ":", "@", 1))
	cf := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var logs testkit.Buffer
	cmd := exec.CommandContext(ctx, unbound, "-d", "-c", cf)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cl := &dns.Client{Timeout: 2 * time.Second}
	ask := func(name, subnet string) *dns.Msg {
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		q.SetEdns0(1232, false)
		if subnet != "" {
			ip, n, _ := net.ParseCIDR(subnet)
			ones, _ := n.Mask.Size()
			q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(ones), Address: ip.To4()})
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			r, _, err := cl.Exchange(q, addr)
			if err == nil {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("unbound does not answer: %v\n%s", err, logs.String())
			}
			time.Sleep(50 * time.Millisecond) // waiting for unbound to bind
		}
	}
	for _, tc := range []struct{ subnet, cluster string }{
		{"10.1.2.0/24", "umass"},
		{"10.3.4.0/24", "crepes"},
		{"10.1.2.0/24", "umass"}, // from Unbound's cache, per subnet
		{"", "nyu"},              // the client's own address: 127.0.0.0/24
	} {
		r := ask("video.kingcdn.com.", tc.subnet)
		if a := answerAddr(r); r.Rcode != dns.RcodeSuccess || !inCluster(a, tc.cluster) {
			t.Errorf("client %q: answer %q, want %s\n%s\n%s", tc.subnet, a, tc.cluster, r, logs.String())
		}
	}
	// the router saw the subnets, not just the resolver's address
	var sawECS int
	for _, d := range c.r.Status().Recent {
		if d.Source == "ecs" {
			sawECS++
		}
	}
	if sawECS < 3 {
		t.Errorf("router decisions with ECS from Unbound: %d, want 3: %+v", sawECS, c.r.Status().Recent)
	}
}
