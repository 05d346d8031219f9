package dig_test

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/dig"
)

// FuzzPrint feeds arbitrary replies (as a server could send them) to
// dig's printing: it must never panic, must print the header with the
// reply's ID and each section's count, and must never write a control
// character other than tab and newline: a hostile server's bytes (names,
// TXT, EDE text) must not reach the terminal as escape sequences.
func FuzzPrint(f *testing.F) {
	for _, m := range seedReplies(f) {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := new(dns.Msg)
		if m.Unpack(b) != nil {
			return
		}
		var out bytes.Buffer
		dig.Print(&out, &dig.Result{Msg: m, Server: "127.0.0.1:53", Proto: "udp", RTT: time.Millisecond, Size: len(b)})
		dig.PrintShort(&out, m)
		dig.PrintWith(&out, &dig.Result{Msg: m, Server: "[::1]:53", Proto: "tcp"}, dig.Display{}, true) // +multi
		s := out.String()
		if !strings.Contains(s, "id: "+strconv.Itoa(int(m.Id))+"\n") || !strings.Contains(s, "ANSWER: "+strconv.Itoa(len(m.Answer))+",") {
			t.Fatalf("header missing:\n%s", s)
		}
		for i, c := range []byte(s) {
			if c < 0x20 && c != '\t' && c != '\n' || c == 0x7f {
				t.Fatalf("control byte %#x at %d in the output:\n%q", c, i, s)
			}
		}
	})
}

func seedReplies(f *testing.F) []*dns.Msg {
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			f.Fatal(err)
		}
		return r
	}
	a := new(dns.Msg)
	a.SetQuestion("www.example.com.", dns.TypeA)
	a.Response, a.Authoritative = true, true
	a.Answer = []dns.RR{rr("www.example.com. 60 IN CNAME edge.example.com."), rr("edge.example.com. 60 IN A 192.0.2.1")}
	a.SetEdns0(1232, true)
	o := a.IsEdns0()
	o.Option = append(o.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: "6e7331"},
		&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708090a0b0c0d0e0f10"},
		&dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeStaleAnswer, ExtraText: "stale \x1b[2J"})
	n := new(dns.Msg)
	n.SetQuestion("nope.example.com.", dns.TypeTXT)
	n.Response, n.Rcode = true, dns.RcodeNameError
	n.Ns = []dns.RR{rr("example.com. 300 IN SOA ns1.example.com. h.example.com. 1 7200 3600 1209600 300"),
		rr(`example.com. 300 IN TXT "a\027[31mred" "\000"`)}
	s := new(dns.Msg)
	s.SetQuestion("example.com.", dns.TypeDNSKEY)
	s.Response, s.Rcode = true, 11 // unassigned: printed as RESERVED11
	return []*dns.Msg{a, n, s}
}
