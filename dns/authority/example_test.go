package authority_test

import (
	"context"
	"fmt"
	"log"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/authority"
	"github.com/applayer/applayer/internal/service"
)

// Start an authoritative server for one zone given as master-file text
// and ask it for a name over UDP.
func Example() {
	const zone = `$ORIGIN example.test.
$TTL 3600
@    SOA ns1 hostmaster 1 7200 3600 1209600 300
@    NS  ns1
ns1  A   192.0.2.53
www  A   192.0.2.80
`
	s, err := authority.New(authority.Config{
		Addr:  "127.0.0.1:0", // port 0: any free port, the same for UDP and TCP
		Zones: []authority.ZoneConfig{{Origin: "example.test.", Text: zone}},
	}, service.Deps{})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer s.Shutdown(ctx)

	q := new(dns.Msg)
	q.SetQuestion("www.example.test.", dns.TypeA)
	m, _, err := new(dns.Client).Exchange(q, s.Addrs()[0].String())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(dns.RcodeToString[m.Rcode], "aa:", m.Authoritative)
	fmt.Println(m.Answer[0].(*dns.A).A)
	// Output:
	// NOERROR aa: true
	// 192.0.2.80
}
