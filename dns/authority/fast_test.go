package authority

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/dnsserver"
	"github.com/applayer/applayer/dns/zone"
)

// spell0x20 returns name with the case of its letters flipped at random
// (the 0x20 trick resolvers use).
func spell0x20(r *rand.Rand, name string) string {
	b := []byte(name)
	for i, c := range b {
		if ('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') && r.IntN(2) == 0 {
			b[i] = c ^ 0x20
		}
	}
	return string(b)
}

// sameAnswer fails t unless a and b (packed answers) say the same thing:
// header, question as asked, and every section's records, names compared
// without case except the owners that echo the question, which must be
// spelled as asked.
func sameAnswer(t *testing.T, what string, fast, slow []byte) {
	t.Helper()
	var f, s dns.Msg
	if err := f.Unpack(fast); err != nil {
		t.Fatalf("%s: fast answer does not unpack: %v", what, err)
	}
	if err := s.Unpack(slow); err != nil {
		t.Fatalf("%s: slow answer does not unpack: %v", what, err)
	}
	if f.MsgHdr != s.MsgHdr {
		t.Fatalf("%s: header\nfast %+v\nslow %+v", what, f.MsgHdr, s.MsgHdr)
	}
	if fmt.Sprint(f.Question) != fmt.Sprint(s.Question) {
		t.Fatalf("%s: question %v, slow %v", what, f.Question, s.Question)
	}
	for _, sec := range []struct {
		name       string
		fast, slow []dns.RR
	}{{"answer", f.Answer, s.Answer}, {"authority", f.Ns, s.Ns}, {"additional", f.Extra, s.Extra}} {
		if len(sec.fast) != len(sec.slow) {
			t.Fatalf("%s: %s section\nfast %v\nslow %v", what, sec.name, sec.fast, sec.slow)
		}
		for i := range sec.fast {
			a, b := sec.fast[i], sec.slow[i]
			if strings.ToLower(a.String()) != strings.ToLower(b.String()) {
				t.Fatalf("%s: %s record %d\nfast %v\nslow %v", what, sec.name, i, a, b)
			}
			if sec.name == "answer" && len(s.Question) == 1 && strings.EqualFold(b.Header().Name, s.Question[0].Name) && a.Header().Name != b.Header().Name {
				t.Fatalf("%s: answer owner spelled %q, slow path %q", what, a.Header().Name, b.Header().Name)
			}
		}
	}
}

// TestAnswerTableMatchesSlowPath asks every name of the test zones (and
// names under each that do not exist: NXDOMAIN, wildcard and referral
// templates) for every type, with and without EDNS and DO, in lower case
// and in 0x20 spelling, unsigned, NSEC- and NSEC3-signed, and compares
// the answer through the table with the full answer.
func TestAnswerTableMatchesSlowPath(t *testing.T) {
	types := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeMX, dns.TypeTXT, dns.TypeNS, dns.TypeSOA, dns.TypeCNAME,
		dns.TypeDS, dns.TypeRRSIG, dns.TypeNSEC, dns.TypeDNSKEY, dns.TypeSRV, dns.TypePTR, dns.TypeCAA,
		dns.TypeHINFO, dns.TypeNSEC3PARAM, dns.TypeOPT}
	for _, tc := range []struct {
		name string
		srv  func(t *testing.T) *Server
	}{
		{"unsigned", func(t *testing.T) *Server { return newTestServer(t, Config{AnswerCacheBytes: -1}) }},
		{"nsec", func(t *testing.T) *Server { return signedServer(t, false, "") }},
		{"nsec3", func(t *testing.T) *Server { return signedServer(t, true, "") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.srv(t)
			zs := s.zones.Load()
			if zs.fast == nil {
				t.Fatal("no answer table")
			}
			r := rand.New(rand.NewPCG(1, 2))
			var names []string
			for _, z := range zs.zones {
				for _, n := range z.Names() {
					// Siblings and children that do not exist (NXDOMAIN,
					// wildcard and referral templates, used again by the
					// next name of the same kind).
					names = append(names, n, "nx-"+n, "nx."+n, "nx2."+n, "a.b."+n, "*."+n)
				}
				names = append(names, "0-fast."+z.Origin, "x.y.z."+z.Origin)
			}
			names = append(names, "elsewhere.test.")
			var total, fast, truncated int
			out := make([]byte, 0, 4096)
			for _, name := range names {
				for _, qt := range types {
					variants := []struct {
						on   bool
						size uint16
						do   bool
					}{{false, 0, false}, {true, 1232, false}, {true, 1232, true}, {true, 512, true}, {true, 4096, true}}
					// Two EDNS variants per name and type, drawn at random (a
					// fixed seed): every variant is met many times over the
					// names while the test stays short under -race.
					r.Shuffle(len(variants), func(i, j int) { variants[i], variants[j] = variants[j], variants[i] })
					for _, edns := range variants[:2] {
						for _, spell := range []string{name, spell0x20(r, name)} {
							q := new(dns.Msg)
							q.SetQuestion(spell, qt)
							q.Id = uint16(r.Uint32())
							q.RecursionDesired = r.IntN(2) == 0
							q.CheckingDisabled = r.IntN(4) == 0
							if edns.on {
								q.SetEdns0(edns.size, edns.do)
							}
							wire, err := q.Pack()
							if err != nil {
								t.Fatal(err)
							}
							what := fmt.Sprintf("%s %s edns=%v/%d do=%v", spell, dns.TypeToString[qt], edns.on, edns.size, edns.do)
							req := &dnsserver.Request{Wire: wire, From: client, Proto: dnsserver.UDP, Now: time.Now(), MaxUDP: 1232}
							r0 := s.rotate.Load()
							got := s.answerFast(zs.fast, req, out[:0])
							total++
							s.rotate.Store(r0)
							slowReq := &dnsserver.Request{Wire: wire, From: client, Proto: dnsserver.UDP, Now: req.Now, MaxUDP: 1232}
							want := s.srv.Respond(slowReq, nil)
							if got == nil {
								// Through the server: an answer too big for the
								// client is truncated, never sent whole.
								if len(want) > slowReq.MaxSize() {
									t.Fatalf("%s: %d-byte answer over UDP for %d", what, len(want), slowReq.MaxSize())
								}
								if want != nil && want[2]&0x02 != 0 {
									truncated++
								}
								continue
							}
							fast++
							s.rotate.Store(r0)
							slow, _ := s.respond(slowReq, nil)
							if slow[2]&0x02 != 0 && got[2]&0x02 == 0 {
								// The table compresses names against the question
								// whatever their case, so a 0x20 answer can fit
								// where the full path's did not: compare with the
								// whole answer (over TCP).
								s.rotate.Store(r0)
								tcpReq := &dnsserver.Request{Wire: wire, From: client, Proto: dnsserver.TCP, Now: req.Now}
								slow, _ = s.respond(tcpReq, nil)
							}
							sameAnswer(t, what, got, slow)
							if len(got) > req.MaxSize() {
								t.Fatalf("%s: %d bytes for a %d-byte buffer", what, len(got), req.MaxSize())
							}
						}
					}
				}
			}
			t.Logf("%d queries, %d answered from the table, %d truncated", total, fast, truncated)
			if fast < total/3 {
				t.Errorf("only %d of %d queries answered from the table", fast, total)
			}
			if truncated == 0 {
				t.Error("no query was truncated (big TXT over UDP)")
			}
		})
	}
}

// BenchmarkAnswerClasses measures one query of each class through the
// server's Respond (the UDP path after the socket), table on and off.
func BenchmarkAnswerClasses(b *testing.B) {
	classes := []struct {
		name, q string
		t       uint16
	}{
		{"a", "www.example.com.", dns.TypeA},
		{"mx", "example.com.", dns.TypeMX},
		{"cname-in", "alias.example.com.", dns.TypeA},
		{"cname-out", "out.example.com.", dns.TypeA},
		{"wildcard", "x%d.wild.example.com.", dns.TypeTXT},
		{"referral", "h%d.sub.example.com.", dns.TypeA},
		{"srv", "_sip._udp.example.com.", dns.TypeSRV},
		{"nodata", "mail.example.com.", dns.TypeTXT},
		{"nxdomain", "nx%d.example.com.", dns.TypeA},
	}
	for _, signed := range []string{"unsigned", "nsec", "nsec3"} {
		for _, table := range []int64{0, -1} {
			cfg := Config{AnswerTableBytes: table}
			if signed != "unsigned" {
				cfg.Zones = []ZoneConfig{{Origin: "example.com.", File: "testdata/example.com.zone",
					Sign: &SignConfig{KeyDir: b.TempDir(), NSEC3: signed == "nsec3"}}}
			}
			s := newTestServer(b, cfg)
			for _, c := range classes {
				name := fmt.Sprintf("%s/table=%v/%s", signed, table == 0, c.name)
				b.Run(name, func(b *testing.B) {
					var wires [][]byte
					for i := range 1024 {
						q := new(dns.Msg)
						n := c.q
						if strings.Contains(n, "%d") {
							n = fmt.Sprintf(n, i)
						}
						q.SetQuestion(n, c.t)
						q.SetEdns0(1232, signed != "unsigned")
						w, _ := q.Pack()
						wires = append(wires, w)
					}
					out := make([]byte, 0, 4096)
					now := time.Now()
					req := &dnsserver.Request{}
					b.ReportAllocs()
					b.ResetTimer()
					for i := range b.N {
						req.Reset()
						req.Wire, req.From, req.Proto, req.Now, req.MaxUDP = wires[i%len(wires)], client, dnsserver.UDP, now, 1232
						if out = s.srv.Respond(req, out[:0]); len(out) == 0 {
							b.Fatal("no answer")
						}
					}
				})
			}
		}
	}
}

// TestAnswerTableBounded: a zone whose table would pass the bound gets
// none (and is answered as before); one that fits gets one within it.
func TestAnswerTableBounded(t *testing.T) {
	s := newTestServer(t, Config{AnswerTableBytes: 4 << 10})
	if s.tables[s.Zone("example.com.")] != nil {
		t.Fatal("a 4 KiB bound still built a table for example.com")
	}
	q := new(dns.Msg)
	q.SetQuestion("www.example.com.", dns.TypeA)
	wire, _ := q.Pack()
	if m := unpackAnswer(t, s.Respond(wire, client, false, nil)); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 3 {
		t.Fatalf("answer without the table: %v", m)
	}
	s = newTestServer(t, Config{})
	zt := s.tables[s.Zone("example.com.")]
	if zt == nil || zt.bytes <= 0 || zt.bytes > s.cfg.AnswerTableBytes {
		t.Fatalf("table of example.com: %+v", zt)
	}
	t.Logf("example.com: %d records, table %d bytes", s.Zone("example.com.").Len(), zt.bytes)
}

func unpackAnswer(t *testing.T, wire []byte) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(wire); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestAnswerTableFollowsZoneChanges: a zone served anew (a reload, a
// transfer, a re-signing) gets its own table: the answer changes with it.
func TestAnswerTableFollowsZoneChanges(t *testing.T) {
	s := newTestServer(t, Config{})
	ask := func() *dns.Msg {
		q := new(dns.Msg)
		q.SetQuestion("mail.example.com.", dns.TypeA)
		wire, _ := q.Pack()
		req := &dnsserver.Request{Wire: wire, From: client, Proto: dnsserver.UDP, Now: time.Now(), MaxUDP: 1232}
		if s.answerFast(s.zones.Load().fast, req, nil) == nil {
			t.Fatal("mail.example.com A is not in the table")
		}
		return unpackAnswer(t, s.Respond(wire, client, false, nil))
	}
	if m := ask(); len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != "192.0.2.25" {
		t.Fatalf("before: %v", m.Answer)
	}
	old := s.Zone("example.com.")
	var rrs []dns.RR
	for _, rr := range old.Records() {
		if a, ok := rr.(*dns.A); ok && a.Hdr.Name == "mail.example.com." {
			a = dns.Copy(a).(*dns.A)
			a.A = []byte{192, 0, 2, 26}
			rr = a
		}
		rrs = append(rrs, rr)
	}
	z, err := zone.New("example.com.", rrs)
	if err != nil {
		t.Fatal(err)
	}
	s.SetZone(z)
	if m := ask(); len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != "192.0.2.26" {
		t.Fatalf("after: %v", m.Answer)
	}
	if s.tables[old] != nil {
		t.Error("the old zone's table is still kept")
	}
}
