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
		Keep:    KeepDNS,
	}}
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
