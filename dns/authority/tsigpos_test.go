package authority

import (
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// misplacedTSIG returns a query for name/qtype whose TSIG (key xfr-key) is
// followed by another additional record.
func misplacedTSIG(t *testing.T, name string, qtype uint16) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetTsig(tsigName, dns.HmacSHA256, 300, time.Now().Unix())
	m.Extra = append(m.Extra, &dns.A{Hdr: dns.RR_Header{Name: "x.example.com.", Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.IPv4(192, 0, 2, 1)})
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTSIGNotLastIsFormErr: a TSIG that is not the last record is FORMERR
// (RFC 8945 5.1; Knot answers so), over UDP and TCP, and for a transfer,
// which is not then judged by the address ACL as if unsigned.
func TestTSIGNotLastIsFormErr(t *testing.T) {
	s := newTestServer(t, Config{TSIGKeys: testKeys, AllowTransfer: []string{"127.0.0.1"}})
	for _, tcp := range []bool{false, true} {
		out := s.Respond(misplacedTSIG(t, "www.example.com.", dns.TypeA), client, tcp, make([]byte, 65535))
		m := new(dns.Msg)
		if err := m.Unpack(out); err != nil {
			t.Fatalf("tcp=%v: %v", tcp, err)
		}
		if m.Rcode != dns.RcodeFormatError || len(m.Answer) != 0 {
			t.Errorf("tcp=%v: %s with %d answers, want FORMERR", tcp, dns.RcodeToString[m.Rcode], len(m.Answer))
		}
	}
	start(t, s)
	c, err := net.Dial("tcp", s.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn := &dns.Conn{Conn: c}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(misplacedTSIG(t, "example.com.", dns.TypeAXFR)); err != nil {
		t.Fatal(err)
	}
	r, err := conn.ReadMsg()
	if r == nil {
		t.Fatalf("no answer to the AXFR: %v", err)
	}
	if r.Rcode != dns.RcodeFormatError || len(r.Answer) != 0 {
		t.Errorf("AXFR with a misplaced TSIG: %s with %d records, want FORMERR", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
}
