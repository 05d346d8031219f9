package resolver

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/dnsserver"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/lab"
)

// LabScenarios are the DNS scenarios of the chapter: the campus resolver
// resolving a name by iterated queries.
func LabScenarios() []lab.Scenario {
	return []lab.Scenario{{
		Name:    "dns-iterative",
		Summary: "a host asks its local DNS server (resolver.nyu.edu) for gaia.cs.umass.edu; with an empty cache the resolver walks root -> edu -> umass.edu -> cs.umass.edu, then answers from its cache",
		Figure:  "iterated queries (the chapter's figure of a host at NYU resolving gaia.cs.umass.edu)",
		Run:     runIterative,
		Hosts:   dnsChain("resolver.nyu.edu"),
		Keep:    KeepDNS,
	}, {
		Name:    "dns-recursive",
		Summary: "recursive queries: the lab's authorities are switched to recursion for this scenario only, and a host asks dns.nyu.edu, which asks the root, which asks edu, which asks umass.edu, which asks cs.umass.edu; the answer comes back down the chain",
		Figure:  "recursive queries in DNS (the chapter's figure of the chain of recursive queries)",
		Run:     runRecursive,
		Hosts:   dnsChain("dns.nyu.edu"),
		Keep:    KeepDNS,
	}}
}

// runRecursive turns the recursive mode on in every authority of the lab
// (and off again at the end, whatever happens), then asks the local DNS
// server of nyu.edu.
func runRecursive(ctx context.Context, env lab.ScenarioEnv) error {
	var auths []string
	for _, h := range env.Plan.Hosts {
		for _, s := range h.Services {
			if s.Kind == "dns-authority" {
				auths = append(auths, h.Name)
			}
		}
	}
	defer func() {
		off, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		for _, h := range auths {
			env.Admin(off, "POST", "/hosts/"+h+"/dns/authority/recursion?on=false")
		}
	}()
	for _, h := range auths {
		if err := env.Admin(ctx, "POST", "/hosts/"+h+"/dns/authority/recursion?on=true"); err != nil {
			return fmt.Errorf("dns-recursive: recursion on %s: %w", h, err)
		}
	}
	local, err := env.Addr("dns.nyu.edu", 53)
	if err != nil {
		return err
	}
	m, err := ClientQuery(ctx, env, local, "gaia.cs.umass.edu.", dns.TypeA)
	if err != nil {
		return fmt.Errorf("dns-recursive: %w", err)
	}
	fmt.Fprintf(env.Out, "answer from dns.nyu.edu: %s\n", dnsserver.Summary(m))
	return nil
}

// dnsChain is the chapter's chain from a local DNS server to gaia's.
func dnsChain(local string) []string {
	return []string{local, "a.root-servers.net", "a.edu-servers.net", "dns.umass.edu", "gaia.cs.umass.edu"}
}

// KeepDNS keeps a scenario's DNS messages and the caches' decisions.
func KeepDNS(e trace.Event) bool { return strings.HasPrefix(e.Proto, "dns/") }

func runIterative(ctx context.Context, env lab.ScenarioEnv) error {
	h, addr, ok := env.Plan.ServiceAddr("dns-resolver", 53)
	if !ok {
		return fmt.Errorf("dns-iterative: the topology has no dns-resolver")
	}
	if err := env.Admin(ctx, "POST", "/hosts/"+h.Name+"/dns/resolver/flush"); err != nil {
		return fmt.Errorf("dns-iterative: emptying %s's cache: %w", h.Name, err)
	}
	for i, note := range []string{"cold cache: the resolver iterates", "warm cache: the resolver answers at once"} {
		m, err := ClientQuery(ctx, env, addr.String(), "gaia.cs.umass.edu.", dns.TypeA)
		if err != nil {
			return fmt.Errorf("dns-iterative: query %d: %w", i+1, err)
		}
		fmt.Fprintf(env.Out, "query %d (%s): %s\n", i+1, note, dnsserver.Summary(m))
	}
	return nil
}

// ClientQuery sends a recursive query for name from the scenario's client
// address to server, publishing the query and its reply on env.Trace.
func ClientQuery(ctx context.Context, env lab.ScenarioEnv, server, name string, qtype uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.SetEdns0(1232, true)
	c := &dns.Client{Timeout: 10 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: env.Client.AsSlice()}, Timeout: 5 * time.Second}}
	conn, err := c.DialContext(ctx, server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	wire, _ := q.Pack()
	env.Trace.Publish(trace.Event{From: local, To: server, Proto: "dns/udp", Summary: dnsserver.Summary(q), Bytes: len(wire)})
	r, _, err := c.ExchangeWithConnContext(ctx, q, conn)
	if err != nil {
		return nil, err
	}
	wire, _ = r.Pack()
	env.Trace.Publish(trace.Event{From: server, To: local, Proto: "dns/udp", Summary: dnsserver.Summary(r), Bytes: len(wire)})
	return r, nil
}
