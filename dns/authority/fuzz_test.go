package authority

import (
	"testing"

	"github.com/miekg/dns"
)

// FuzzRespond feeds arbitrary bytes to the query handler: it must never
// panic, and must answer with silence or a well-formed response carrying
// the query's ID.
func FuzzRespond(f *testing.F) {
	for _, q := range []struct {
		name string
		t    uint16
		do   bool
	}{{"www.example.com.", dns.TypeA, false}, {"x.wild.example.com.", dns.TypeMX, true}, {"nope.example.com.", dns.TypeA, true}, {"www.sub.example.com.", dns.TypeA, false}, {"big.example.com.", dns.TypeTXT, false}, {"example.com.", dns.TypeAXFR, false}, {"nope.example.org.", dns.TypeA, true}, {"a.b.c.example.com.", dns.TypeDS, true}} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.t)
		if q.do {
			m.SetEdns0(4096, true)
		}
		wire, _ := m.Pack()
		f.Add(wire, false)
	}
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1}, true)
	// Signed queries (good key, unknown key) and a DNAME redirection.
	for _, key := range []string{tsigName, "nokey."} {
		m := new(dns.Msg)
		m.SetQuestion("www.example.com.", dns.TypeA)
		m.SetTsig(key, dns.HmacSHA256, 300, 1700000000)
		wire, _, err := dns.TsigGenerate(m, tsigSecret, "", false)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire, false)
	}
	{
		m := new(dns.Msg)
		m.SetQuestion("a.b.old.dname.test.", dns.TypeA)
		wire, _ := m.Pack()
		f.Add(wire, false)
	}
	s := newTestServer(f, Config{NSID: "fuzz", TSIGKeys: testKeys, Zones: []ZoneConfig{
		{Origin: "dname.test", Text: dnameZone},
		{Origin: "example.com.", File: "testdata/example.com.zone", Sign: &SignConfig{KeyDir: f.TempDir()}},
		{Origin: "example.org.", File: "testdata/example.org.zone", Sign: &SignConfig{KeyDir: f.TempDir(), NSEC3: true, Algorithm: "ed25519"}},
	}})
	buf := make([]byte, 65535)
	f.Fuzz(func(t *testing.T, in []byte, tcp bool) {
		out := s.Respond(in, client, tcp, buf)
		if out == nil {
			return
		}
		var m dns.Msg
		if err := m.Unpack(out); err != nil && len(out) != 12 {
			t.Fatalf("unparsable answer % x: %v", out, err)
		}
		if len(out) < 12 || out[0] != in[0] || out[1] != in[1] || out[2]&0x80 == 0 {
			t.Fatalf("answer % x does not answer % x", out, in)
		}
		if !tcp && len(out) > 1232 {
			t.Fatalf("udp answer of %d bytes", len(out))
		}
	})
}
