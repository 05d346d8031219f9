package resolver

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

const (
	rootZone = `
.            86400 IN SOA a.root. admin. 1 3600 600 86400 300
.            86400 IN NS a.root.
a.root.      86400 IN A {N}.1
test.        86400 IN NS ns1.test.
test.        86400 IN NS ns2.test.
ns1.test.    86400 IN A {N}.2
ns2.test.    86400 IN A {N}.3
victim.      86400 IN NS ns.victim.
ns.victim.   86400 IN A {N}.6
`
	testZone = `
test.               3600 IN SOA ns1.test. admin.test. 1 3600 600 86400 300
test.               3600 IN NS ns1.test.
test.               3600 IN NS ns2.test.
ns1.test.           3600 IN A {N}.2
ns2.test.           3600 IN A {N}.3
example.test.       3600 IN NS ns.example.test.
ns.example.test.    3600 IN A {N}.4
glueless.test.      3600 IN NS ns.example.test.
lame.test.          3600 IN NS ns.lame.test.
ns.lame.test.       3600 IN A {N}.5
`
	exampleZone = `
example.test.       3600 IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 300
example.test.       3600 IN NS ns.example.test.
ns.example.test.    3600 IN A {N}.4
www.example.test.   300  IN A 192.0.2.10
www.example.test.   300  IN A 192.0.2.11
www.example.test.   300  IN AAAA 2001:db8::10
example.test.       300  IN MX 10 mail.example.test.
mail.example.test.  300  IN A 192.0.2.25
alias.example.test. 300  IN CNAME www.example.test.
ext.example.test.   300  IN CNAME www.glueless.test.
dn.example.test.    300  IN DNAME example.test.
a.b.c.example.test. 300  IN A 192.0.2.99
`
	gluelessZone = `
glueless.test.      3600 IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 60
glueless.test.      3600 IN NS ns.example.test.
www.glueless.test.  300  IN A 192.0.2.20
`
	lameZone = `
other.          3600 IN SOA ns.other. admin.other. 1 3600 600 86400 60
other.          3600 IN NS ns.other.
`
	victimZone = `
victim.             3600 IN SOA ns.victim. admin.victim. 1 3600 600 86400 60
victim.             3600 IN NS ns.victim.
ns.victim.          3600 IN A {N}.6
www.victim.         300  IN A 192.0.2.66
`
)

// hierarchy is a test DNS tree: root, test. (two servers, the second
// dead), example.test. and glueless.test. on one server, a lame
// delegation and victim. for poisoning tests.
type hierarchy struct {
	net                            *testNet
	root, tld, example, lame, vict *fakeAuth
}

func newHierarchy(t *testing.T, port int) *hierarchy {
	n := newTestNet(t, port)
	h := &hierarchy{net: n}
	h.root = startAuth(t, n, 1, map[string]string{".": rootZone})
	h.tld = startAuth(t, n, 2, map[string]string{"test.": testZone})
	// {N}.3 is test.'s second server: nothing listens there (dead).
	h.example = startAuth(t, n, 4, map[string]string{"example.test.": exampleZone, "glueless.test.": gluelessZone})
	h.lame = startAuth(t, n, 5, map[string]string{"other.": lameZone})
	h.vict = startAuth(t, n, 6, map[string]string{"victim.": victimZone})
	return h
}

type testResolver struct {
	*Server
	addr  string
	clock *fakeClock
}

func startResolver(t *testing.T, h *hierarchy, mod func(*Config)) *testResolver {
	t.Helper()
	cfg := Config{
		Listen:       "127.0.0.1:0",
		RootHints:    []string{h.net.ip(1).String()},
		UpstreamPort: h.net.port,
		Timeout:      100 * 1e6,
	}
	if mod != nil {
		mod(&cfg)
	}
	clock := &fakeClock{}
	s, err := New(cfg, service.Deps{Logger: testkit.Logger(t), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, s)
	return &testResolver{Server: s, addr: s.Addrs()[0].String(), clock: clock}
}

func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		c := dns.Copy(rr)
		c.Header().Ttl = 0
		out = append(out, strings.ReplaceAll(c.String(), "\t", " "))
	}
	return out
}

func TestResolveHierarchy(t *testing.T) {
	h := newHierarchy(t, 0)
	r := startResolver(t, h, nil)
	tests := []struct {
		name   string
		qtype  uint16
		rcode  int
		answer []string
		soa    bool
	}{
		{"www.example.test", dns.TypeA, dns.RcodeSuccess, []string{"www.example.test. 0 IN A 192.0.2.10", "www.example.test. 0 IN A 192.0.2.11"}, false},
		{"WWW.Example.TEST", dns.TypeAAAA, dns.RcodeSuccess, []string{"WWW.Example.TEST. 0 IN AAAA 2001:db8::10"}, false},
		{"example.test", dns.TypeMX, dns.RcodeSuccess, []string{"example.test. 0 IN MX 10 mail.example.test."}, false},
		{"alias.example.test", dns.TypeA, dns.RcodeSuccess, []string{"alias.example.test. 0 IN CNAME www.example.test.", "www.example.test. 0 IN A 192.0.2.10", "www.example.test. 0 IN A 192.0.2.11"}, false},
		// A chain across zones, into a glueless delegation.
		{"ext.example.test", dns.TypeA, dns.RcodeSuccess, []string{"ext.example.test. 0 IN CNAME www.glueless.test.", "www.glueless.test. 0 IN A 192.0.2.20"}, false},
		{"www.dn.example.test", dns.TypeA, dns.RcodeSuccess, []string{"dn.example.test. 0 IN DNAME example.test.", "www.dn.example.test. 0 IN CNAME www.example.test.", "www.example.test. 0 IN A 192.0.2.10", "www.example.test. 0 IN A 192.0.2.11"}, false},
		{"a.b.c.example.test", dns.TypeA, dns.RcodeSuccess, []string{"a.b.c.example.test. 0 IN A 192.0.2.99"}, false},
		{"nope.example.test", dns.TypeA, dns.RcodeNameError, nil, true},
		{"www.example.test", dns.TypeTXT, dns.RcodeSuccess, nil, true},
		{"b.c.example.test", dns.TypeA, dns.RcodeSuccess, nil, true}, // empty non-terminal
		{"nothing.invalid", dns.TypeA, dns.RcodeNameError, nil, true},
		{"www.lame.test", dns.TypeA, dns.RcodeServerFailure, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
			m := ask(t, r.addr, tc.name, tc.qtype)
			if m.Rcode != tc.rcode {
				t.Fatalf("rcode %s, want %s\n%v", dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.rcode], m)
			}
			if !m.RecursionAvailable || m.Authoritative {
				t.Errorf("RA=%v AA=%v, want RA and not AA", m.RecursionAvailable, m.Authoritative)
			}
			if m.Question[0].Name != tc.name+"." {
				t.Errorf("question %q, want the client's spelling %q", m.Question[0].Name, tc.name+".")
			}
			// Exact case: 0x20's random spelling must never reach the client;
			// records carry the zone's own spelling, except where a name
			// shares a suffix with the question: there it is spelled as the
			// client asked (as Unbound does).
			// Address sets rotate (as NSD and Knot rotate them).
			got, want := rrStrings(m.Answer), slices.Clone(tc.answer)
			slices.Sort(got)
			slices.Sort(want)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("answer\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.answer, "\n"))
			}
			if tc.soa && (len(m.Ns) == 0 || m.Ns[0].Header().Rrtype != dns.TypeSOA) {
				t.Errorf("negative answer without SOA: %v", m.Ns)
			}
		})
	}
}

func TestCacheTTLAndNegative(t *testing.T) {
	h := newHierarchy(t, 0)
	r := startResolver(t, h, func(c *Config) { c.NoPrefetch = true })
	m := ask(t, r.addr, "www.example.test", dns.TypeA)
	if len(m.Answer) != 2 || m.Answer[0].Header().Ttl != 300 {
		t.Fatalf("first answer %v", m.Answer)
	}
	before := h.example.Queries.Load()
	r.clock.Advance(100 * time.Second)
	m = ask(t, r.addr, "www.example.test", dns.TypeA)
	if got := m.Answer[0].Header().Ttl; got != 200 {
		t.Errorf("TTL after 100s = %d, want 200", got)
	}
	if h.example.Queries.Load() != before {
		t.Errorf("cached answer went upstream")
	}
	// Negative caching: NXDOMAIN for min(SOA TTL, minimum) = 300s.
	ask(t, r.addr, "nx.example.test", dns.TypeA)
	before = h.example.Queries.Load()
	m = ask(t, r.addr, "nx.example.test", dns.TypeA)
	if m.Rcode != dns.RcodeNameError || h.example.Queries.Load() != before {
		t.Errorf("NXDOMAIN not answered from cache: %s, %d upstream", dns.RcodeToString[m.Rcode], h.example.Queries.Load()-before)
	}
	// The rrset cache answers another variant (DO bit) without going upstream.
	m = ask(t, r.addr, "nx.example.test", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, true) })
	if m.Rcode != dns.RcodeNameError || h.example.Queries.Load() != before {
		t.Errorf("NXDOMAIN variant not from cache")
	}
	// After expiry, it is asked again.
	r.clock.Advance(301 * time.Second)
	ask(t, r.addr, "nx.example.test", dns.TypeA)
	if h.example.Queries.Load() == before {
		t.Errorf("expired negative entry not refreshed")
	}
	if hits := testutil.ToFloat64(r.m.hits); hits < 2 {
		t.Errorf("cache hits = %v", hits)
	}
}

// TestMaxTTLCapsReplyCache: with MaxTTL below a record's TTL (300 s)
// the client is told at most MaxTTL and the reply cache keeps the answer
// no longer: past it the resolver asks upstream again.
func TestMaxTTLCapsReplyCache(t *testing.T) {
	h := newHierarchy(t, 0)
	r := startResolver(t, h, func(c *Config) { c.NoPrefetch = true; c.MaxTTL = config.Duration(60 * time.Second) })
	m := ask(t, r.addr, "www.example.test", dns.TypeA)
	if len(m.Answer) != 2 || m.Answer[0].Header().Ttl != 60 || m.Answer[1].Header().Ttl != 60 {
		t.Fatalf("first answer %v, want TTL 60", m.Answer)
	}
	before := h.example.Queries.Load()
	r.clock.Advance(30 * time.Second)
	if m = ask(t, r.addr, "www.example.test", dns.TypeA); m.Answer[0].Header().Ttl != 30 || h.example.Queries.Load() != before {
		t.Errorf("after 30s: TTL %d, %d queries upstream; want 30 from the cache", m.Answer[0].Header().Ttl, h.example.Queries.Load()-before)
	}
	r.clock.Advance(31 * time.Second)
	ask(t, r.addr, "www.example.test", dns.TypeA)
	if h.example.Queries.Load() == before {
		t.Errorf("after 61s the answer still came from the cache (its record's TTL is 300s, MaxTTL 60s)")
	}
}

func TestServeStale(t *testing.T) {
	h := newHierarchy(t, 0)
	r := startResolver(t, h, func(c *Config) { c.NoPrefetch = true })
	ask(t, r.addr, "www.example.test", dns.TypeA)
	h.example.stop()
	r.clock.Advance(400 * time.Second)
	m := ask(t, r.addr, "www.example.test", dns.TypeA)
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 2 || m.Answer[0].Header().Ttl != 30 {
		t.Fatalf("want stale answer with TTL 30, got %v", m)
	}
	if testutil.ToFloat64(r.m.stale) != 1 {
		t.Errorf("stale counter not incremented")
	}
	// Without a stale copy, the failure is SERVFAIL with an EDE.
	m = ask(t, r.addr, "mail.example.test", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, false) })
	if m.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[m.Rcode])
	}
	if o := m.IsEdns0(); o == nil || len(o.Option) == 0 || o.Option[0].Option() != dns.EDNS0EDE {
		t.Errorf("SERVFAIL without extended error: %v", m)
	}
}

func TestRefusesOtherClients(t *testing.T) {
	h := newHierarchy(t, 0)
	r := startResolver(t, h, func(c *Config) { c.Allow = []string{"10.0.0.0/8"} })
	for _, proto := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: proto, Timeout: 3 * time.Second}
		m := new(dns.Msg)
		m.SetQuestion("www.example.test.", dns.TypeA)
		resp, _, err := c.Exchange(m, r.addr)
		if proto == "tcp" {
			// Over TCP a refused client is closed at once, holding no
			// connection slot (issue 10 item 5; TestTCPSlots).
			if err == nil {
				t.Errorf("tcp: answered %v, want the connection closed", resp)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if resp.Rcode != dns.RcodeRefused {
			t.Errorf("%s: rcode %s, want REFUSED", proto, dns.RcodeToString[resp.Rcode])
		}
	}
	if h.root.Queries.Load() != 0 {
		t.Errorf("refused query caused upstream queries")
	}
}

func TestTCPClientAndBadQueries(t *testing.T) {
	h := newHierarchy(t, 0)
	r := startResolver(t, h, nil)
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion("www.example.test.", dns.TypeA)
	for i := 0; i < 2; i++ { // miss then hit
		resp, _, err := c.Exchange(m, r.addr)
		if err != nil || len(resp.Answer) != 2 {
			t.Fatalf("tcp: %v %v", err, resp)
		}
	}
	tests := []struct {
		name  string
		mod   func(*dns.Msg)
		rcode int
	}{
		{"ANY", func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeANY }, dns.RcodeNotImplemented},
		{"AXFR", func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAXFR }, dns.RcodeRefused},
		{"CHAOS", func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }, dns.RcodeRefused},
		{"NOTIFY", func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }, dns.RcodeNotImplemented},
		{"two questions", func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) }, dns.RcodeFormatError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := new(dns.Msg)
			q.SetQuestion("www.example.test.", dns.TypeA)
			tc.mod(q)
			resp, _, err := (&dns.Client{Timeout: 3 * time.Second}).Exchange(q, r.addr)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Rcode != tc.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.rcode])
			}
		})
	}
	// Garbage gets FORMERR or nothing, never a crash.
	conn, err := net.Dial("udp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte{1, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff})
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	if err != nil || n < 12 || buf[3]&0xf != dns.RcodeFormatError {
		t.Errorf("garbage: %v %x", err, buf[:n])
	}
}

// A server for example.test. that tries to poison the cache with records
// outside its zone: they must never be used.
func TestOutOfBailiwickNeverCached(t *testing.T) {
	h := newHierarchy(t, 0)
	h.example.setHook(func(req, resp *dns.Msg, _ bool) *dns.Msg {
		bad := &dns.A{Hdr: dns.RR_Header{Name: "www.victim.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 86400}, A: net.IPv4(6, 6, 6, 6)}
		badNS := &dns.NS{Hdr: dns.RR_Header{Name: "victim.", Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: 86400}, Ns: "ns.evil.example.test."}
		resp.Answer = append(resp.Answer, bad)
		resp.Ns = append(resp.Ns, badNS)
		resp.Extra = append(resp.Extra, bad)
		return resp
	})
	// test. also sends an out-of-bailiwick "glue" for ns.victim.
	h.tld.setHook(func(req, resp *dns.Msg, _ bool) *dns.Msg {
		resp.Extra = append(resp.Extra, &dns.A{Hdr: dns.RR_Header{Name: "ns.victim.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 86400}, A: net.IPv4(6, 6, 6, 7)})
		return resp
	})
	r := startResolver(t, h, nil)
	m := ask(t, r.addr, "www.example.test", dns.TypeA)
	for _, rr := range m.Answer {
		if !strings.HasSuffix(rr.Header().Name, "example.test.") {
			t.Errorf("out-of-zone record passed to client: %v", rr)
		}
	}
	m = ask(t, r.addr, "www.victim", dns.TypeA)
	if len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != "192.0.2.66" {
		t.Fatalf("poisoned: www.victim = %v", m.Answer)
	}
	if h.vict.Queries.Load() == 0 {
		t.Errorf("victim's real server never asked")
	}
}

// Spoofed replies — wrong ID, wrong case, wrong source port — are ignored.
func TestSpoofedRepliesIgnored(t *testing.T) {
	n := newTestNet(t, 0)
	pc, err := net.ListenPacket("udp", netip.AddrPortFrom(n.ip(9), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	other, err := net.ListenPacket("udp", netip.AddrPortFrom(n.ip(9), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			req := new(dns.Msg)
			if req.Unpack(buf[:k]) != nil {
				continue
			}
			reply := func(ip string, mod func(*dns.Msg)) []byte {
				m := new(dns.Msg)
				m.SetReply(req)
				m.RecursionAvailable = true
				m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: req.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(ip)}}
				if mod != nil {
					mod(m)
				}
				b, _ := m.Pack()
				return b
			}
			pc.WriteTo(reply("6.6.6.1", func(m *dns.Msg) { m.Id ^= 0x5555 }), from)
			pc.WriteTo(reply("6.6.6.2", func(m *dns.Msg) { m.Question[0].Name = strings.ToUpper(m.Question[0].Name) }), from)
			pc.WriteTo(reply("6.6.6.3", func(m *dns.Msg) { m.Question[0].Name = "www.other.test." }), from)
			other.WriteTo(reply("6.6.6.4", nil), from)
			pc.WriteTo(reply("192.0.2.1", nil), from)
		}
	}()
	t.Cleanup(func() { pc.Close(); other.Close(); <-done })
	r := startResolver(t, &hierarchy{net: n}, func(c *Config) {
		c.RootHints = nil
		c.Forwarders = []string{pc.LocalAddr().String()}
	})
	m := ask(t, r.addr, "www.example.test", dns.TypeA)
	if len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
		t.Fatalf("accepted a spoofed answer: %v", m.Answer)
	}
	if got := testutil.ToFloat64(r.m.mismatched); got < 3 {
		t.Errorf("mismatched replies counted %v, want >= 3", got)
	}
}

func TestTruncatedRetriesOverTCPAndEDNSFallback(t *testing.T) {
	h := newHierarchy(t, 0)
	h.example.setHook(func(req, resp *dns.Msg, tcp bool) *dns.Msg {
		if req.IsEdns0() != nil {
			// An old server: FORMERR to anything with EDNS.
			m := new(dns.Msg)
			m.SetRcode(req, dns.RcodeFormatError)
			return m
		}
		if !tcp && req.Question[0].Qtype == dns.TypeA && strings.EqualFold(req.Question[0].Name, "www.example.test.") {
			m := new(dns.Msg)
			m.SetReply(req)
			m.Truncated = true
			return m
		}
		return resp
	})
	r := startResolver(t, h, nil)
	m := ask(t, r.addr, "www.example.test", dns.TypeA)
	if len(m.Answer) != 2 {
		t.Fatalf("answer %v", m)
	}
	if testutil.ToFloat64(r.m.tcpFallback) != 1 {
		t.Errorf("no TCP fallback counted")
	}
	if !r.infra.get(h.example.Addr).noEDNS {
		t.Errorf("EDNS fallback not remembered")
	}
}

func TestDeadServerAndSRTT(t *testing.T) {
	h := newHierarchy(t, 0)
	r := startResolver(t, h, nil)
	for _, name := range []string{"www.example.test", "mail.example.test", "ext.example.test"} {
		if m := ask(t, r.addr, name, dns.TypeA); m.Rcode != dns.RcodeSuccess {
			t.Fatalf("%s: %s", name, dns.RcodeToString[m.Rcode])
		}
	}
	alive := r.infra.get(h.tld.Addr)
	dead := r.infra.get(netip.AddrPortFrom(h.net.ip(3), uint16(h.net.port)))
	if alive.srtt == 0 {
		t.Fatalf("no RTT measured for the live server")
	}
	if dead.srtt != 0 && dead.srtt <= alive.srtt {
		t.Errorf("dead server srtt %v not worse than live %v", dead.srtt, alive.srtt)
	}
	order := r.infra.order([]netip.AddrPort{netip.AddrPortFrom(h.net.ip(3), uint16(h.net.port)), h.tld.Addr})
	if dead.srtt != 0 && order[0] != h.tld.Addr {
		t.Errorf("order %v prefers the dead server", order)
	}
}

func TestQNAMEMinimisation(t *testing.T) {
	h := newHierarchy(t, 0)
	var mu sync.Mutex
	var rootSaw []string
	h.root.setHook(func(req, resp *dns.Msg, _ bool) *dns.Msg {
		mu.Lock()
		defer mu.Unlock()
		rootSaw = append(rootSaw, strings.ToLower(req.Question[0].Name))
		return resp
	})
	r := startResolver(t, h, nil)
	ask(t, r.addr, "a.b.c.example.test", dns.TypeA)
	mu.Lock()
	defer mu.Unlock()
	for _, n := range rootSaw {
		if n != "test." {
			t.Errorf("root was asked %q: the full name leaked", n)
		}
	}
	if len(rootSaw) == 0 {
		t.Fatal("root never asked")
	}
}

func TestFlush(t *testing.T) {
	h := newHierarchy(t, 0)
	r := startResolver(t, h, nil)
	ask(t, r.addr, "www.example.test", dns.TypeA)
	ask(t, r.addr, "www.victim", dns.TypeA)
	if n := r.Flush("example.test."); n == 0 {
		t.Errorf("flush removed nothing")
	}
	before := h.example.Queries.Load()
	bv := h.vict.Queries.Load()
	ask(t, r.addr, "www.example.test", dns.TypeA)
	ask(t, r.addr, "www.victim", dns.TypeA)
	if h.example.Queries.Load() == before {
		t.Errorf("flushed name still cached")
	}
	if h.vict.Queries.Load() != bv {
		t.Errorf("unrelated name was flushed")
	}
}

// An IPv6 listener is served by the one-datagram-at-a-time loop: it must
// answer misses and cache hits like the batched IPv4 loop.
func TestIPv6Listener(t *testing.T) {
	if ln, err := net.ListenPacket("udp", "[::1]:0"); err != nil {
		testkit.Skip(t, "no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	h := newHierarchy(t, 0)
	r := startResolver(t, h, func(c *Config) { c.Listen = "[::1]:0" })
	for range 2 { // a miss, then a cache hit
		m := ask(t, r.addr, "www.example.test", dns.TypeA)
		if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 2 || !m.RecursionAvailable {
			t.Fatalf("answer over IPv6: %v", m)
		}
	}
}
