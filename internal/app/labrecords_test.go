package app

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/authority"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/sockets"
)

// mailKind is a test kind standing for a mail system: it runs a TCP
// (upper-case) server on port 25 and, through the Records hook, adds the
// DNS records a mail system needs: its domain's MX, a CNAME alias and an
// SPF TXT record, without any change to the DNS wiring.
func mailKind() lab.Kind {
	return lab.Kind{
		Name: "test-mail", Summary: "test: a mail host adding MX, CNAME and TXT records", Port: 25, Network: "tcp",
		Check: func(raw json.RawMessage) error { var c struct{ Domain string }; return lab.DecodeConfig(raw, &c) },
		Build: func(env lab.Env) (service.Service, error) {
			return sockets.NewTCPServer(sockets.TCPConfig{Addr: env.Listen.String()}, env.Deps)
		},
		Records: func(env lab.Env) ([]string, error) {
			var c struct {
				Domain string `json:"domain"`
			}
			if err := lab.DecodeConfig(env.Spec.Config, &c); err != nil {
				return nil, err
			}
			host := dns.Fqdn(env.Host.Name)
			d := dns.Fqdn(c.Domain)
			return []string{
				fmt.Sprintf("%s 300 IN MX 10 %s", d, host),
				fmt.Sprintf("mail.%s 300 IN CNAME %s", d, host),
				fmt.Sprintf(`%s 300 IN TXT "v=spf1 a:%s -all"`, d, env.Host.Name),
			}, nil
		},
	}
}

// cdnKind is a test kind standing for a CDN's request router: its own
// authoritative server for cdn.example.com (not a dns-authority of the
// lab), which it makes reachable by contributing the delegation of
// cdn.example.com and a CNAME from the content provider's name into it.
func cdnKind() lab.Kind {
	return lab.Kind{
		Name: "test-cdn", Summary: "test: a CDN router adding its NS delegation and a CNAME", Port: 53, Network: "udp+tcp",
		Build: func(env lab.Env) (service.Service, error) {
			text := fmt.Sprintf("$ORIGIN cdn.example.com.\n@ 300 IN SOA %[1]s. hostmaster 1 3600 600 86400 60\n@ 300 IN NS %[1]s.\n%[1]s. 300 IN A %[2]s\nwww 60 IN A 127.0.0.77\n",
				env.Host.Name, env.Host.Addr)
			return authority.New(authority.Config{Addr: env.Listen.String(), UDPSockets: 1,
				Zones: []authority.ZoneConfig{{Origin: "cdn.example.com.", Text: text}}}, env.Deps)
		},
		Records: func(env lab.Env) ([]string, error) {
			return []string{
				"cdn.example.com. 300 IN NS " + dns.Fqdn(env.Host.Name),
				"www.example.com. 300 IN CNAME www.cdn.example.com.",
			}, nil
		},
	}
}

// TestKindRecordsResolve proves the Records hook: a lab with a root, the
// com TLD, example.com's server, a resolver, the test mail kind on
// smtp.example.com and the test CDN kind on ns.cdn.example.com; the kinds'
// MX, CNAME, TXT and NS records end up in example.com's generated zone and
// resolve through the lab's resolver from the root, the CDN's CNAME
// through its delegation to the CDN's own server.
func TestKindRecordsResolve(t *testing.T) {
	topo := &lab.Topology{Hosts: []lab.Host{
		{Name: "a.root-servers.net", Services: []lab.ServiceSpec{{Kind: "dns-authority", Config: json.RawMessage(`{"zones":[{"origin":"."}]}`)}}},
		{Name: "a.gtld-servers.net", Services: []lab.ServiceSpec{{Kind: "dns-authority", Config: json.RawMessage(`{"zones":[{"origin":"com"}]}`)}}},
		{Name: "dns.example.com", Services: []lab.ServiceSpec{{Kind: "dns-authority", Config: json.RawMessage(`{"zones":[{"origin":"example.com"}]}`)}}},
		{Name: "smtp.example.com", Services: []lab.ServiceSpec{{Kind: "test-mail", Config: json.RawMessage(`{"domain":"example.com"}`)}}},
		{Name: "ns.cdn.example.com", Services: []lab.ServiceSpec{{Kind: "test-cdn"}}},
		{Name: "resolver.example.com", Services: []lab.ServiceSpec{{Kind: "dns-resolver"}}},
	}}
	kinds := lab.NewKinds(append(labKinds().All(), mailKind(), cdnKind())...)
	ctx := testkit.Context(t, 30*time.Second)
	plan, _, _ := startRandomLabKinds(t, ctx, topo, kinds, 47000, "off")
	if len(plan.Records) != 5 {
		t.Fatalf("plan records %q, want the kinds' 5", plan.Records)
	}
	res, _ := plan.Lookup("resolver.example.com")
	smtp, _ := plan.Lookup("smtp.example.com")
	addr := net.JoinHostPort(res.Addr.String(), strconv.Itoa(plan.Port(53)))
	c := &dns.Client{Timeout: 5 * time.Second}
	ask := func(name string, qtype uint16) *dns.Msg {
		t.Helper()
		q := new(dns.Msg)
		q.SetQuestion(name, qtype)
		r, _, err := c.ExchangeContext(ctx, q, addr)
		if err != nil {
			t.Fatalf("%s %s: %v", name, dns.TypeToString[qtype], err)
		}
		if r.Rcode != dns.RcodeSuccess {
			t.Fatalf("%s %s: %s", name, dns.TypeToString[qtype], dns.RcodeToString[r.Rcode])
		}
		return r
	}
	if r := ask("example.com.", dns.TypeMX); len(r.Answer) != 1 || r.Answer[0].(*dns.MX).Mx != "smtp.example.com." || r.Answer[0].(*dns.MX).Preference != 10 {
		t.Errorf("example.com MX: %v", r.Answer)
	}
	r := ask("mail.example.com.", dns.TypeA)
	var chain []string
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.CNAME:
			chain = append(chain, "CNAME "+rr.Target)
		case *dns.A:
			chain = append(chain, rr.Hdr.Name+" A "+rr.A.String())
		}
	}
	if want := []string{"CNAME smtp.example.com.", "smtp.example.com. A " + smtp.Addr.String()}; strings.Join(chain, ", ") != strings.Join(want, ", ") {
		t.Errorf("mail.example.com A: %v, want %v", chain, want)
	}
	// The CDN's CNAME leads through its delegation to its own server.
	r = ask("www.example.com.", dns.TypeA)
	chain = nil
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.CNAME:
			chain = append(chain, "CNAME "+rr.Target)
		case *dns.A:
			chain = append(chain, rr.Hdr.Name+" A "+rr.A.String())
		}
	}
	if want := "CNAME www.cdn.example.com., www.cdn.example.com. A 127.0.0.77"; strings.Join(chain, ", ") != want {
		t.Errorf("www.example.com A: %v, want %s", chain, want)
	}
	if r := ask("example.com.", dns.TypeTXT); len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), "v=spf1 a:smtp.example.com -all") {
		t.Errorf("example.com TXT: %v", r.Answer)
	}
}

// TestKindRecordsErrors: a kind's record that no lab zone contains, or
// that does not parse, is reported when the zones are built, naming it.
func TestKindRecordsErrors(t *testing.T) {
	for _, tc := range []struct{ record, want string }{
		{"example.org. 300 IN MX 10 smtp.example.org.", "no zone of the lab contains example.org."},
		{"example.com. 300 IN MX ten smtp", "example.com. 300 IN MX ten smtp"},
	} {
		k := mailKind()
		k.Records = func(lab.Env) ([]string, error) { return []string{tc.record}, nil }
		topo := &lab.Topology{Hosts: []lab.Host{
			{Name: "dns.example.com", Services: []lab.ServiceSpec{{Kind: "dns-authority", Config: json.RawMessage(`{"zones":[{"origin":"example.com"}]}`)}}},
			{Name: "smtp.example.com", Services: []lab.ServiceSpec{{Kind: "test-mail"}}},
		}}
		off := 20000
		topo.Lab.PortOffset = &off
		topo.Lab.StateDir = t.TempDir()
		kinds := lab.NewKinds(append(labKinds().All(), k)...)
		plan, err := lab.NewPlan(topo, kinds, nil)
		if err != nil {
			t.Fatal(err)
		}
		ak, _ := kinds.Get("dns-authority")
		h := plan.Hosts[0]
		_, err = ak.Build(lab.Env{Host: h, Spec: h.Services[0], Plan: plan, Listen: netipPort(h, plan), Deps: service.Deps{}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("record %q: %v, want an error with %q", tc.record, err, tc.want)
		}
	}
}
