package app

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/authority"
	"github.com/applayer/applayer/dns/dnstest"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/lab"
)

// TestLabDNSZones builds the default topology's DNS servers (without
// starting them) and checks the generated hierarchy.
func TestLabDNSZones(t *testing.T) {
	topo, err := lab.DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	off := 20000
	topo.Lab.PortOffset = &off
	topo.Lab.StateDir = t.TempDir()
	kinds := labKinds()
	plan, err := lab.NewPlan(topo, kinds, nil)
	if err != nil {
		t.Fatal(err)
	}
	servers := map[string]*authority.Server{}
	for _, h := range plan.Hosts {
		for _, s := range h.Services {
			if s.Kind != "dns-authority" {
				continue
			}
			k, _ := kinds.Get(s.Kind)
			svc, err := k.Build(lab.Env{Host: h, Spec: s, Plan: plan, Listen: netipPort(h, plan), Deps: service.Deps{}})
			if err != nil {
				t.Fatalf("%s: %v", h.Name, err)
			}
			servers[h.Name] = svc.(*authority.Server)
		}
	}
	ask := func(host, name string, qtype uint16) *dns.Msg {
		t.Helper()
		q := new(dns.Msg)
		q.SetQuestion(name, qtype)
		q.SetEdns0(1232, true)
		return servers[host].Handle(q, netipClient, false)
	}
	gaia, _ := plan.Lookup("gaia.cs.umass.edu")
	if m := ask("a.root-servers.net", "gaia.cs.umass.edu.", dns.TypeA); m.Authoritative || !strings.Contains(types(m.Ns), "NS") || !strings.Contains(types(m.Ns), "DS") {
		t.Errorf("root referral to edu: %v", m)
	}
	if m := ask("dns.umass.edu", "gaia.cs.umass.edu.", dns.TypeA); len(m.Extra) < 1 || !strings.Contains(m.Extra[0].String(), gaia.Addr.String()) {
		t.Errorf("umass.edu referral to cs.umass.edu lacks glue: %v", m)
	}
	if m := ask("gaia.cs.umass.edu", "gaia.cs.umass.edu.", dns.TypeA); !m.Authoritative || len(m.Answer) != 1 {
		t.Errorf("gaia's own address: %v", m)
	}
	if m := ask("dns.amazon.com", "www.amazon.com.", dns.TypeA); types(m.Answer) != "CNAME,A,A,A" {
		t.Errorf("www.amazon.com: %v", m)
	}
	if m := ask("dns.umass.edu", "dns.umass.edu.", dns.TypeA); !strings.Contains(types(m.Answer), "RRSIG") {
		t.Errorf("umass.edu not signed: %v", m)
	}
	if m := ask("a.gtld-servers.net", "a.root-servers.net.", dns.TypeA); !m.Authoritative || len(m.Answer) != 1 {
		t.Errorf("a.root-servers.net in net: %v", m)
	}
	if _, err := os.Stat(filepath.Join(plan.StateDir, "dns", "keys")); err != nil {
		t.Errorf("keys not under the state dir: %v", err)
	}
}

func types(rrs []dns.RR) string {
	var out []string
	for _, rr := range rrs {
		out = append(out, dns.TypeToString[rr.Header().Rrtype])
	}
	return strings.Join(out, ",")
}

var netipClient = netip.MustParseAddrPort("127.0.0.1:5353")

func netipPort(h lab.PlannedHost, p *lab.Plan) netip.AddrPort {
	return netip.AddrPortFrom(h.Addr, uint16(p.Port(53)))
}

func TestDigCommand(t *testing.T) {
	h := dnstest.Start(t, dnstest.Chapter(), dnstest.Options{Records: map[string][]string{"amazon.com.": {"www CNAME edge", "edge A 192.0.2.9"}}})
	run := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		root := NewRoot(strings.NewReader(""), &out, &errb)
		root.SetArgs(args)
		if err := root.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("applayer %s: %v\n%s", strings.Join(args, " "), err, errb.String())
		}
		return out.String()
	}
	amazon := h.Servers["dns.amazon.com"].Addrs()[0].String()
	if got := run("dig", "@"+amazon, "www.amazon.com", "+short"); got != "edge.amazon.com.\n192.0.2.9\n" {
		t.Errorf("+short: %q", got)
	}
	ahost, aport, _ := net.SplitHostPort(amazon)
	if got := run("dig", "@"+ahost, "-p", aport, "www.amazon.com", "+short"); got != "edge.amazon.com.\n192.0.2.9\n" {
		t.Errorf("-p: %q", got)
	}
	if got := run("dig", "@"+amazon, "amazon.com", "NS", "+norecurse", "+tcp"); !strings.Contains(got, ";; flags: qr aa;") || !strings.Contains(got, "(TCP)") {
		t.Errorf("NS +norecurse +tcp:\n%s", got)
	}
	got := run("dig", "--root", h.Root(dnstest.Chapter()).String(), "gaia.cs.umass.edu", "+trace")
	if !strings.Contains(got, "(dns.umass.edu)") || !strings.Contains(got, "gaia.cs.umass.edu.\t3600\tIN\tA\t"+h.Addrs["gaia.cs.umass.edu"].String()) {
		t.Errorf("+trace:\n%s", got)
	}
}
