package dnsserver_test

import (
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/dnsserver"
)

// FuzzParseQuery checks the fast-path query parser against a full unpack:
// whatever it accepts must be a well-formed query with the same question,
// and the key must be the lower-cased wire name.
func FuzzParseQuery(f *testing.F) {
	for _, e := range []bool{false, true} {
		m := new(dns.Msg)
		m.SetQuestion("WwW.example.test.", dns.TypeAAAA)
		if e {
			m.SetEdns0(1232, true)
		}
		b, _ := m.Pack()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var q dnsserver.Query
		if dnsserver.ParseQuery(b, &q) != nil {
			return
		}
		m := new(dns.Msg)
		if err := m.Unpack(b); err != nil {
			t.Fatalf("fast path accepted what unpack rejects: %v", err)
		}
		if len(m.Question) != 1 || m.Question[0].Qtype != q.Qtype || m.Id != q.ID {
			t.Fatalf("question mismatch: %v vs type %d", m.Question, q.Qtype)
		}
		if opt := m.IsEdns0(); (opt != nil) != q.EDNS || (opt != nil && max(int(opt.UDPSize()), 512) != q.UDPSize) {
			t.Fatalf("EDNS %v vs %+v", opt, q)
		}
		want := make([]byte, 256)
		n, err := dns.PackDomainName(strings.ToLower(m.Question[0].Name), want, 0, nil, false)
		if err != nil || string(want[:n]) != string(q.Key[:len(q.Key)-3]) {
			t.Fatalf("name %q vs %q (%v)", q.Key, m.Question[0].Name, err)
		}
	})
}

// FuzzRespond feeds arbitrary datagrams through the server's rules with a
// handler that answers from the unpacked query: never a panic, and a UDP
// reply never larger than the client may take.
func FuzzRespond(f *testing.F) {
	q := new(dns.Msg)
	q.SetQuestion("big.", dns.TypeTXT)
	b, _ := q.Pack()
	f.Add(b, false)
	q.SetEdns0(1232, true)
	b, _ = q.Pack()
	f.Add(b, true)
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1}, false)
	s := dnsserver.New(dnsserver.Config{MaxUDPSize: 1232}, txtHandler(30))
	out := make([]byte, 0, 4096)
	f.Fuzz(func(t *testing.T, in []byte, tcp bool) {
		req := &dnsserver.Request{Wire: in, MaxUDP: 1232}
		if tcp {
			req.Proto = dnsserver.TCP
		}
		reply := s.Respond(req, out[:0])
		if reply == nil {
			return
		}
		if !tcp && len(reply) > max(req.MaxSize(), 512) {
			t.Fatalf("udp reply of %d bytes for a client taking %d", len(reply), req.MaxSize())
		}
		if len(reply) < 12 || reply[0] != in[0] || reply[1] != in[1] {
			t.Fatalf("reply % x does not answer % x", reply, in)
		}
	})
}
