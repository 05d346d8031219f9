package resolver_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"strconv"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/authority"
	"github.com/applayer/applayer/dns/resolver"
	"github.com/applayer/applayer/internal/service"
)

// rootServer starts an authoritative server for a root zone that holds
// www.example. itself, and returns its address and port.
func rootServer(ctx context.Context) (*authority.Server, string, int) {
	const root = `$ORIGIN .
$TTL 3600
.             SOA ns.root. hostmaster.root. 1 7200 3600 1209600 300
.             NS  ns.root.
ns.root.      A   127.0.0.1
www.example.  A   192.0.2.1
`
	a, err := authority.New(authority.Config{Addr: "127.0.0.1:0", Zones: []authority.ZoneConfig{{Origin: ".", Text: root}}}, service.Deps{})
	if err != nil {
		log.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		log.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(a.Addrs()[0].String())
	p, _ := strconv.Atoi(port)
	return a, host, p
}

// Start a recursive resolver whose root hints name a root server of our
// own, and resolve a name through it as a stub resolver would.
func Example() {
	ctx := context.Background()
	root, host, port := rootServer(ctx)
	defer root.Shutdown(ctx)

	r, err := resolver.New(resolver.Config{
		Listen:       "127.0.0.1:0",
		RootHints:    []string{host},
		UpstreamPort: port, // the port authoritative servers are asked on
	}, service.Deps{})
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer r.Shutdown(ctx)

	q := new(dns.Msg)
	q.SetQuestion("www.example.", dns.TypeA)
	m, _, err := new(dns.Client).Exchange(q, r.Addrs()[0].String())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(dns.RcodeToString[m.Rcode], "ra:", m.RecursionAvailable)
	fmt.Println(m.Answer[0].(*dns.A).A)
	// Output:
	// NOERROR ra: true
	// 192.0.2.1
}

// Resolve a name with the resolution engine alone (no listener), watching
// each upstream exchange, as `applayer dig +trace` does.
func ExampleEngine_Resolve() {
	ctx := context.Background()
	root, host, port := rootServer(ctx)
	defer root.Shutdown(ctx)

	e, err := resolver.NewEngine(resolver.Config{
		RootHints:           []string{host},
		UpstreamPort:        port,
		NoQNAMEMinimisation: true, // ask every server the full name
	}, service.Deps{})
	if err != nil {
		log.Fatal(err)
	}
	m, err := e.Resolve(ctx, "www.example.", dns.TypeA, func(s resolver.Step) {
		fmt.Printf("asked %s for %s %s: %s, %d answer(s)\n", s.Server.Addr(), s.Name, dns.TypeToString[s.Type], dns.RcodeToString[s.Reply.Rcode], len(s.Reply.Answer))
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.Answer[0].(*dns.A).A)
	// Output:
	// asked 127.0.0.1 for www.example. A: NOERROR, 1 answer(s)
	// 192.0.2.1
}
