package router

import (
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/dnsserver"
	"github.com/applayer/applayer/internal/service"
)

// FuzzParseMap: any bytes as a network map are rejected with an error or
// accepted and compiled; never a panic or a hang.
func FuzzParseMap(f *testing.F) {
	for _, s := range []string{
		"clusters: [{name: a, edges: [{name: e, addr: 192.0.2.1, control: '127.0.0.1:1'}]}]\nnetworks: [{name: n, prefixes: [10.0.0.0/8, '2001:db8::/32'], distances: {a: 1}}]\ndefault: {a: 3}\norigin: [192.0.2.9]",
		`{"clusters":[{"name":"x","max_load":0.5,"edges":[{"name":"y","addr":"::1"}]}]}`,
		"clusters: [{name: a, edges: []}]",
		"networks: [{prefixes: [1.2.3.4/40]}]",
		"clusters: &a [*a]",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMap(b)
		if err != nil {
			return
		}
		tb := compile(m)
		tb.lookup(netip.MustParseAddr("10.1.2.3"))
		tb.lookup(netip.MustParseAddr("2001:db8::1"))
	})
}

// FuzzServeDNS: any datagram gets a reply that parses, or none; the
// reply's ID is the query's.
func FuzzServeDNS(f *testing.F) {
	m, err := ParseMap([]byte("clusters: [{name: a, edges: [{name: e1, addr: 192.0.2.1}, {name: e2, addr: '2001:db8::2'}]}, {name: b, edges: [{name: f, addr: 192.0.2.3}]}]\nnetworks: [{prefixes: [10.0.0.0/8], distances: {a: 1, b: 2}}]\norigin: [192.0.2.9]"))
	if err != nil {
		f.Fatal(err)
	}
	s, err := New(Config{Addr: "127.0.0.1:0", Domain: "kingcdn.com", Map: m}, service.Deps{})
	if err != nil {
		f.Fatal(err)
	}
	for _, q := range []*dns.Msg{
		new(dns.Msg).SetQuestion("video.kingcdn.com.", dns.TypeA),
		new(dns.Msg).SetQuestion("kingcdn.com.", dns.TypeSOA),
		new(dns.Msg).SetQuestion("x.kingcdn.com.", dns.TypeANY),
		new(dns.Msg).SetQuestion("example.com.", dns.TypeA),
	} {
		q.SetEdns0(1232, false)
		q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: netip.MustParseAddr("10.1.2.0").AsSlice()})
		b, _ := q.Pack()
		f.Add(b)
	}
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, proto := range []dnsserver.Proto{dnsserver.UDP, dnsserver.TCP} {
			req := &dnsserver.Request{Wire: b, From: netip.MustParseAddrPort("127.0.0.1:5353"), Proto: proto, Now: time.Unix(0, 0)}
			reply := s.Respond(req, make([]byte, 0, 512))
			if reply == nil {
				continue
			}
			r := new(dns.Msg)
			if err := r.Unpack(reply); err != nil {
				t.Fatalf("reply does not parse: %v\nquery %x\nreply %x", err, b, reply)
			}
			if len(b) >= 2 && r.Id != uint16(b[0])<<8|uint16(b[1]) {
				t.Fatalf("reply ID %d, query's %x", r.Id, b[:2])
			}
		}
	})
}
