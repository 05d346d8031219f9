package dnsserver_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/dnsserver"
)

// A minimal DNS server: a handler that answers every A query with one
// address (a request router would pick it per client), on UDP and TCP.
func Example() {
	h := dnsserver.HandlerFunc(func(req *dnsserver.Request, out []byte) []byte {
		q, err := req.Msg()
		if err != nil || len(q.Question) != 1 {
			return dnsserver.ErrorReply(req, dns.RcodeFormatError, false, 1232, out)
		}
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		if q.Question[0].Qtype == dns.TypeA {
			ip := netip.MustParseAddr("192.0.2.7")
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 20}, A: ip.AsSlice()}}
		}
		b, _ := m.PackBuffer(out)
		return b
	})
	s := dnsserver.New(dnsserver.Config{Addr: "127.0.0.1:0", MaxUDPSize: 1232}, h)
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer s.Shutdown(ctx)

	for _, network := range []string{"udp", "tcp"} {
		q := new(dns.Msg)
		q.SetQuestion("video.cdn.example.", dns.TypeA)
		m, _, err := (&dns.Client{Net: network}).Exchange(q, s.Local())
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(network, m.Answer[0].(*dns.A).A)
	}
	// Output:
	// udp 192.0.2.7
	// tcp 192.0.2.7
}
