package authority

import (
	"encoding/hex"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/applayer/applayer/dns/zone"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/internal/trace"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

var client = netip.MustParseAddrPort("127.0.0.1:5353")

func newTestServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Zones == nil {
		cfg.Zones = []ZoneConfig{
			{Origin: "example.com.", File: "testdata/example.com.zone"},
			{Origin: "example.org", File: "testdata/example.org.zone"},
		}
	}
	s, err := New(cfg, service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func start(t testing.TB, s *Server) {
	t.Helper()
	testkit.Start(t, s)
}

func rrString(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		h := rr.Header()
		s := strings.TrimPrefix(rr.String(), h.String())
		out = append(out, h.Name+" "+dns.TypeToString[h.Rrtype]+" "+s)
	}
	return out
}

func types(rrs []dns.RR) string {
	var out []string
	for _, rr := range rrs {
		out = append(out, dns.TypeToString[rr.Header().Rrtype])
	}
	return strings.Join(out, ",")
}

func TestSemantics(t *testing.T) {
	s := newTestServer(t, Config{})
	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		rcode  int
		aa     bool
		answer string // comma-separated types
		ns     string
		extra  string
		check  func(t *testing.T, m *dns.Msg)
	}{
		{name: "address set", qname: "www.example.com.", qtype: dns.TypeA, aa: true, answer: "A,A,A"},
		{name: "case preserved", qname: "WwW.ExAmple.COM.", qtype: dns.TypeA, aa: true, answer: "A,A,A", check: func(t *testing.T, m *dns.Msg) {
			if m.Answer[0].Header().Name != "WwW.ExAmple.COM." || m.Question[0].Name != "WwW.ExAmple.COM." {
				t.Errorf("case not kept: %v", m.Answer[0])
			}
		}},
		{name: "cname followed in zone", qname: "alias.example.com.", qtype: dns.TypeA, aa: true, answer: "CNAME,A,A,A"},
		{name: "cname chain", qname: "chain1.example.com.", qtype: dns.TypeA, aa: true, answer: "CNAME,CNAME,A,A,A", check: func(t *testing.T, m *dns.Msg) {
			if m.Answer[1].Header().Name != "chain2.example.com." {
				t.Errorf("second cname owner %q", m.Answer[1].Header().Name)
			}
		}},
		{name: "cname asked", qname: "alias.example.com.", qtype: dns.TypeCNAME, aa: true, answer: "CNAME"},
		{name: "cname loop stops", qname: "loop1.example.com.", qtype: dns.TypeA, aa: true, answer: "CNAME,CNAME"},
		{name: "cname out of zone", qname: "out.example.com.", qtype: dns.TypeA, aa: true, answer: "CNAME"},
		{name: "nxdomain", qname: "nope.example.com.", qtype: dns.TypeA, rcode: dns.RcodeNameError, aa: true, ns: "SOA", check: func(t *testing.T, m *dns.Msg) {
			if ttl := m.Ns[0].Header().Ttl; ttl != 300 {
				t.Errorf("negative TTL %d, want min(3600, 300)", ttl)
			}
		}},
		{name: "nodata", qname: "www.example.com.", qtype: dns.TypeTXT, aa: true, ns: "SOA"},
		{name: "wildcard", qname: "x.wild.example.com.", qtype: dns.TypeTXT, aa: true, answer: "TXT", check: func(t *testing.T, m *dns.Msg) {
			if m.Answer[0].Header().Name != "x.wild.example.com." {
				t.Errorf("wildcard owner %q", m.Answer[0].Header().Name)
			}
		}},
		{name: "wildcard deeper", qname: "a.b.wild.example.com.", qtype: dns.TypeTXT, aa: true, answer: "TXT"},
		{name: "wildcard mx additional", qname: "x.wild.example.com.", qtype: dns.TypeMX, aa: true, answer: "MX", extra: "A"},
		{name: "wildcard nodata", qname: "x.wild.example.com.", qtype: dns.TypeA, aa: true, ns: "SOA"},
		{name: "wildcard itself", qname: "*.wild.example.com.", qtype: dns.TypeTXT, aa: true, answer: "TXT"},
		{name: "wildcard under ent", qname: "x.c.example.com.", qtype: dns.TypeTXT, aa: true, answer: "TXT"},
		{name: "empty non-terminal is nodata", qname: "b.c.example.com.", qtype: dns.TypeTXT, aa: true, ns: "SOA"},
		{name: "ent blocks wildcard", qname: "z.b.c.example.com.", qtype: dns.TypeTXT, rcode: dns.RcodeNameError, aa: true, ns: "SOA"},
		{name: "ent parent of wildcard", qname: "c.example.com.", qtype: dns.TypeTXT, aa: true, ns: "SOA"},
		{name: "referral", qname: "www.sub.example.com.", qtype: dns.TypeA, ns: "NS,NS", extra: "A,A"},
		{name: "referral at cut", qname: "sub.example.com.", qtype: dns.TypeNS, ns: "NS,NS", extra: "A,A"},
		{name: "ds at cut answered by parent", qname: "sub.example.com.", qtype: dns.TypeDS, aa: true, ns: "SOA"},
		{name: "mx additional", qname: "example.com.", qtype: dns.TypeMX, aa: true, answer: "MX", extra: "A"},
		{name: "ns additional", qname: "example.com.", qtype: dns.TypeNS, aa: true, answer: "NS,NS", extra: "A"},
		{name: "srv additional", qname: "_sip._udp.example.com.", qtype: dns.TypeSRV, aa: true, answer: "SRV", extra: "A"},
		{name: "caa", qname: "caa.example.com.", qtype: dns.TypeCAA, aa: true, answer: "CAA"},
		{name: "ptr", qname: "ptr.example.com.", qtype: dns.TypePTR, aa: true, answer: "PTR"},
		{name: "aaaa", qname: "www.example.com.", qtype: dns.TypeAAAA, aa: true, answer: "AAAA"},
		{name: "soa", qname: "example.com.", qtype: dns.TypeSOA, aa: true, answer: "SOA"},
		{name: "second zone", qname: "www.example.org.", qtype: dns.TypeA, aa: true, answer: "A"},
		{name: "outside zones refused", qname: "www.example.net.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
		{name: "root refused", qname: ".", qtype: dns.TypeNS, rcode: dns.RcodeRefused},
		{name: "axfr over udp", qname: "example.com.", qtype: dns.TypeAXFR, rcode: dns.RcodeFormatError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := new(dns.Msg)
			q.SetQuestion(tc.qname, tc.qtype)
			q.RecursionDesired = false
			m := s.Handle(q, client, false)
			if m.Rcode != tc.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.rcode])
			}
			if m.Authoritative != tc.aa {
				t.Errorf("aa %v, want %v", m.Authoritative, tc.aa)
			}
			if got := types(m.Answer); got != tc.answer {
				t.Errorf("answer %q, want %q: %v", got, tc.answer, rrString(m.Answer))
			}
			if got := types(m.Ns); got != tc.ns {
				t.Errorf("authority %q, want %q: %v", got, tc.ns, rrString(m.Ns))
			}
			if got := types(m.Extra); got != tc.extra {
				t.Errorf("additional %q, want %q: %v", got, tc.extra, rrString(m.Extra))
			}
			if !m.Response || m.Id != q.Id {
				t.Errorf("not a response to the query: qr=%v id=%d/%d", m.Response, m.Id, q.Id)
			}
			if tc.check != nil && !t.Failed() {
				tc.check(t, m)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	s := newTestServer(t, Config{})
	seen := map[string]bool{}
	for i := 0; i < 6; i++ {
		q := new(dns.Msg)
		q.SetQuestion("www.example.com.", dns.TypeA)
		m := s.Handle(q, client, false)
		seen[m.Answer[0].(*dns.A).A.String()] = true
		if len(m.Answer) != 3 {
			t.Fatalf("answer has %d records", len(m.Answer))
		}
	}
	if len(seen) != 3 {
		t.Errorf("first address over 6 answers took %d values, want 3 (rotation)", len(seen))
	}
}

func TestOpcodesAndEDNS(t *testing.T) {
	s := newTestServer(t, Config{NSID: "ns-test"})
	query := func(mod func(q *dns.Msg)) *dns.Msg {
		q := new(dns.Msg)
		q.SetQuestion("www.example.com.", dns.TypeA)
		mod(q)
		return s.Handle(q, client, false)
	}
	t.Run("update is notimp", func(t *testing.T) {
		m := query(func(q *dns.Msg) { q.Opcode = dns.OpcodeUpdate })
		if m.Rcode != dns.RcodeNotImplemented {
			t.Errorf("rcode %s", dns.RcodeToString[m.Rcode])
		}
	})
	t.Run("status is notimp", func(t *testing.T) {
		m := query(func(q *dns.Msg) { q.Opcode = dns.OpcodeStatus })
		if m.Rcode != dns.RcodeNotImplemented {
			t.Errorf("rcode %s", dns.RcodeToString[m.Rcode])
		}
	})
	t.Run("two questions formerr", func(t *testing.T) {
		m := query(func(q *dns.Msg) { q.Question = append(q.Question, q.Question[0]) })
		if m.Rcode != dns.RcodeFormatError {
			t.Errorf("rcode %s", dns.RcodeToString[m.Rcode])
		}
	})
	t.Run("chaos class refused", func(t *testing.T) {
		m := query(func(q *dns.Msg) { q.Question[0].Qclass = dns.ClassCHAOS })
		if m.Rcode != dns.RcodeRefused {
			t.Errorf("rcode %s", dns.RcodeToString[m.Rcode])
		}
	})
	t.Run("edns version 1 is badvers", func(t *testing.T) {
		m := query(func(q *dns.Msg) { q.SetEdns0(4096, false); q.IsEdns0().SetVersion(1) })
		if m.Rcode != dns.RcodeBadVers || m.IsEdns0() == nil || len(m.Answer) != 0 {
			t.Errorf("rcode %s opt %v", dns.RcodeToString[m.Rcode], m.IsEdns0())
		}
		wire, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		var back dns.Msg
		if err := back.Unpack(wire); err != nil || back.Rcode != dns.RcodeBadVers {
			t.Errorf("wire rcode %d err %v", back.Rcode, err)
		}
	})
	t.Run("edns buffer and do echoed", func(t *testing.T) {
		m := query(func(q *dns.Msg) { q.SetEdns0(4096, true) })
		o := m.IsEdns0()
		if o == nil || o.UDPSize() != 1232 || !o.Do() {
			t.Errorf("opt %v", o)
		}
	})
	t.Run("nsid", func(t *testing.T) {
		m := query(func(q *dns.Msg) {
			q.SetEdns0(1232, false)
			q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID})
		})
		var got string
		for _, o := range m.IsEdns0().Option {
			if n, ok := o.(*dns.EDNS0_NSID); ok {
				b, _ := hex.DecodeString(n.Nsid)
				got = string(b)
			}
		}
		if got != "ns-test" {
			t.Errorf("nsid %q", got)
		}
	})
	t.Run("cookie", func(t *testing.T) {
		cc := "0102030405060708"
		m := query(func(q *dns.Msg) {
			q.SetEdns0(1232, false)
			q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: cc})
		})
		var got string
		for _, o := range m.IsEdns0().Option {
			if c, ok := o.(*dns.EDNS0_COOKIE); ok {
				got = c.Cookie
			}
		}
		if len(got) != 48 || !strings.HasPrefix(got, cc) {
			t.Errorf("cookie %q", got)
		}
	})
	t.Run("bad cookie formerr", func(t *testing.T) {
		m := query(func(q *dns.Msg) {
			q.SetEdns0(1232, false)
			q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102"})
		})
		if m.Rcode != dns.RcodeFormatError {
			t.Errorf("rcode %s", dns.RcodeToString[m.Rcode])
		}
	})
}

func TestRespondWire(t *testing.T) {
	s := newTestServer(t, Config{})
	buf := make([]byte, 65535)
	t.Run("garbage gets formerr header", func(t *testing.T) {
		in := []byte{0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff}
		out := s.Respond(in, client, false, buf)
		if len(out) != 12 || out[0] != 0xab || out[1] != 0xcd || out[2]&0x80 == 0 || out[3]&0xf != dns.RcodeFormatError {
			t.Errorf("answer % x", out)
		}
	})
	t.Run("responses and runts are ignored", func(t *testing.T) {
		if out := s.Respond([]byte{1, 2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0}, client, false, buf); out != nil {
			t.Errorf("answered a response: % x", out)
		}
		if out := s.Respond([]byte{1, 2, 3}, client, false, buf); out != nil {
			t.Errorf("answered a runt")
		}
	})
	big := func(tcp bool, edns uint16) *dns.Msg {
		q := new(dns.Msg)
		q.SetQuestion("big.example.com.", dns.TypeTXT)
		if edns > 0 {
			q.SetEdns0(edns, false)
		}
		wire, _ := q.Pack()
		out := s.Respond(wire, client, tcp, buf)
		if !tcp && len(out) > 1232 {
			t.Errorf("udp answer of %d bytes, over 1232", len(out))
		}
		var m dns.Msg
		if err := m.Unpack(out); err != nil {
			t.Fatal(err)
		}
		return &m
	}
	t.Run("truncated over udp", func(t *testing.T) {
		m := big(false, 0)
		if !m.Truncated || len(m.Answer) >= 40 {
			t.Errorf("tc=%v answers=%d", m.Truncated, len(m.Answer))
		}
	})
	t.Run("edns ceiling 1232", func(t *testing.T) {
		m := big(false, 4096)
		if !m.Truncated || len(m.Answer) < 10 {
			t.Errorf("tc=%v answers=%d", m.Truncated, len(m.Answer))
		}
	})
	t.Run("full over tcp", func(t *testing.T) {
		m := big(true, 0)
		if m.Truncated || len(m.Answer) != 40 {
			t.Errorf("tc=%v answers=%d", m.Truncated, len(m.Answer))
		}
	})
}

func TestServeUDPAndTCP(t *testing.T) {
	s := newTestServer(t, Config{AllowTransfer: []string{"127.0.0.0/8"}})
	start(t, s)
	addr := s.Addrs()[0].String()
	for _, netw := range []string{"udp", "tcp"} {
		t.Run(netw, func(t *testing.T) {
			c := &dns.Client{Net: netw, Timeout: 2 * time.Second}
			q := new(dns.Msg)
			q.SetQuestion("big.example.com.", dns.TypeTXT)
			m, _, err := c.Exchange(q, addr)
			if err != nil {
				t.Fatal(err)
			}
			if netw == "udp" && !m.Truncated {
				t.Error("udp answer not truncated")
			}
			if netw == "tcp" && len(m.Answer) != 40 {
				t.Errorf("tcp answer has %d records", len(m.Answer))
			}
		})
	}
	t.Run("axfr", func(t *testing.T) {
		tr := &dns.Transfer{}
		q := new(dns.Msg)
		q.SetAxfr("example.com.")
		env, err := tr.In(q, addr)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for e := range env {
			if e.Error != nil {
				t.Fatal(e.Error)
			}
			n += len(e.RR)
		}
		if want := s.Zone("example.com").Len() + 1; n != want {
			t.Errorf("axfr gave %d records, want %d", n, want)
		}
	})
}

func TestTransferRefused(t *testing.T) {
	s := newTestServer(t, Config{})
	start(t, s)
	tr := &dns.Transfer{}
	q := new(dns.Msg)
	q.SetAxfr("example.com.")
	env, err := tr.In(q, s.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	var terr error
	for e := range env {
		if e.Error != nil {
			terr = e.Error
		}
	}
	if terr == nil {
		t.Fatal("transfer without ACL succeeded")
	}
}

func TestShutdownTwiceAndUnstarted(t *testing.T) {
	s := newTestServer(t, Config{})
	ctx := testkit.Context(t, time.Second)
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	s2 := newTestServer(t, Config{})
	if err := s2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s2.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s2.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", s2.Addrs()[0].String()); err == nil {
		t.Error("still accepting after shutdown")
	}
}

func TestUDPAnswerCache(t *testing.T) {
	s := newTestServer(t, Config{Addr: "[::1]:0", UDPSockets: 1})
	start(t, s)
	c := &dns.Client{Timeout: 2 * time.Second}
	ask := func(name string) *dns.Msg {
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeTXT)
		m, _, err := c.Exchange(q, s.Addrs()[0].String())
		if err != nil {
			t.Fatal(err)
		}
		if m.Id != q.Id {
			t.Fatalf("id %d for query %d", m.Id, q.Id)
		}
		return m
	}
	for i := 0; i < 3; i++ {
		if m := ask("x.wild.example.com."); len(m.Answer) != 1 || m.Answer[0].(*dns.TXT).Txt[0] != "wild" {
			t.Fatalf("answer %v", m.Answer)
		}
	}
	// A new zone version must not be answered from the cache.
	z := s.Zone("example.com")
	var rrs []dns.RR
	for _, rr := range z.Records() {
		if txt, ok := rr.(*dns.TXT); ok && txt.Hdr.Name == "*.wild.example.com." {
			txt = dns.Copy(txt).(*dns.TXT)
			txt.Txt = []string{"changed"}
			rr = txt
		}
		rrs = append(rrs, rr)
	}
	nz, err := zone.New("example.com.", rrs)
	if err != nil {
		t.Fatal(err)
	}
	s.SetZone(nz)
	if m := ask("x.wild.example.com."); m.Answer[0].(*dns.TXT).Txt[0] != "changed" {
		t.Fatalf("stale cached answer %v", m.Answer)
	}
}

func TestPanicAnswersServfail(t *testing.T) {
	s := newTestServer(t, Config{})
	s.beforeAnswer = func(q *dns.Msg) {
		if q.Question[0].Name == "boom.example.com." {
			panic("test panic")
		}
	}
	start(t, s)
	for _, netw := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: netw, Timeout: 2 * time.Second}
		q := new(dns.Msg)
		q.SetQuestion("boom.example.com.", dns.TypeA)
		m, _, err := c.Exchange(q, s.Addrs()[0].String())
		if err != nil {
			t.Fatalf("%s: %v", netw, err)
		}
		if m.Rcode != dns.RcodeServerFailure || m.Id != q.Id {
			t.Errorf("%s: rcode %s", netw, dns.RcodeToString[m.Rcode])
		}
		// The server still answers.
		q.SetQuestion("www.example.com.", dns.TypeA)
		if m, _, err := c.Exchange(q, s.Addrs()[0].String()); err != nil || len(m.Answer) != 3 {
			t.Errorf("%s: after the panic: %v %v", netw, m, err)
		}
	}
	if got := testutil.ToFloat64(s.m.panics); got != 2 {
		t.Errorf("panics counted %v, want 2", got)
	}
}

func TestTraceEvents(t *testing.T) {
	bus := trace.NewBus(nil)
	sink := &recorder{}
	// A pointer sink: trace.Bus's cancel compares sinks, and a SinkFunc is
	// not comparable.
	cancel := bus.Subscribe(sink)
	defer cancel()
	s, err := New(Config{Addr: "127.0.0.1:0", Zones: []ZoneConfig{{Origin: "example.com", File: "testdata/example.com.zone"}}}, service.Deps{Trace: bus})
	if err != nil {
		t.Fatal(err)
	}
	start(t, s)
	q := new(dns.Msg)
	q.SetQuestion("alias.example.com.", dns.TypeA)
	if _, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(q, s.Addrs()[0].String()); err != nil {
		t.Fatal(err)
	}
	events := sink.all()
	if len(events) != 2 {
		t.Fatalf("%d events: %v", len(events), events)
	}
	if e := events[0]; e.Proto != "dns/udp" || e.Summary != "query rd A alias.example.com." || e.To != s.Addrs()[0].String() {
		t.Errorf("query event %+v", e)
	}
	if e := events[1]; !strings.HasPrefix(e.Summary, "response NOERROR aa rd A alias.example.com. 4/0/0: CNAME ") || e.From != s.Addrs()[0].String() || e.Bytes == 0 {
		t.Errorf("answer event %+v", e)
	}
}

type recorder struct {
	mu     sync.Mutex
	events []trace.Event
}

func (r *recorder) Event(e trace.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) all() []trace.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]trace.Event(nil), r.events...)
}
