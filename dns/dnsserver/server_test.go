package dnsserver_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/dnsserver"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/internal/trace"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// txtHandler answers every query with n TXT records of 100 bytes; a query
// for boom. panics; one for later. is answered from another goroutine.
func txtHandler(n int) dnsserver.HandlerFunc {
	return func(req *dnsserver.Request, out []byte) []byte {
		q, err := req.Msg()
		if err != nil {
			return nil
		}
		switch q.Question[0].Name {
		case "boom.":
			panic("injected")
		case "later.":
			if req.Clone().Go(func(r *dnsserver.Request) []byte {
				time.Sleep(10 * time.Millisecond)
				m, _ := r.Msg()
				a := new(dns.Msg)
				a.SetReply(m)
				a.Answer = []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: "later.", Rrtype: dns.TypeTXT, Class: dns.ClassINET}, Txt: []string{"deferred"}}}
				b, _ := a.Pack()
				return b
			}) {
				return nil
			}
		}
		a := new(dns.Msg)
		a.SetReply(q)
		for i := range n {
			a.Answer = append(a.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{fmt.Sprintf("%03d%s", i, strings.Repeat("x", 97))}})
		}
		if q.IsEdns0() != nil {
			a.SetEdns0(1232, false)
		}
		b, err := a.PackBuffer(out)
		if err != nil {
			return nil
		}
		return b
	}
}

type events struct {
	mu sync.Mutex
	ev []trace.Event
}

func (e *events) Send(ev trace.Event) { e.mu.Lock(); e.ev = append(e.ev, ev); e.mu.Unlock() }

func startServer(t *testing.T, cfg dnsserver.Config, h dnsserver.Handler) *dnsserver.Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	s := dnsserver.New(cfg, h)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestServeUDPAndTCP(t *testing.T) {
	panics := 0
	var mu sync.Mutex
	s := startServer(t, dnsserver.Config{UDPSockets: 2, MaxUDPSize: 1232, OnPanic: func(any) { mu.Lock(); panics++; mu.Unlock() }}, txtHandler(20))
	addr := s.Addrs()[0].String()
	if a := s.Addrs(); len(a) != 2 || a[0].String() != a[1].String() || a[0].Network() != "tcp" || a[1].Network() != "udp" {
		t.Fatalf("addrs %v", a)
	}
	tests := []struct {
		name, net, qname string
		edns             uint16
		rcode            int
		tc               bool
		answers          int
	}{
		{"udp 512 truncated", "udp", "big.", 0, dns.RcodeSuccess, true, 0},
		{"udp edns 1232 truncated", "udp", "big.", 4096, dns.RcodeSuccess, true, 0},
		{"tcp whole", "tcp", "big.", 0, dns.RcodeSuccess, false, 20},
		{"udp panic", "udp", "boom.", 1232, dns.RcodeServerFailure, false, 0},
		{"tcp panic", "tcp", "boom.", 0, dns.RcodeServerFailure, false, 0},
		{"udp answered later", "udp", "later.", 0, dns.RcodeSuccess, false, 1},
		{"tcp answered at once", "tcp", "later.", 0, dns.RcodeSuccess, false, 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := new(dns.Msg)
			q.SetQuestion(tc.qname, dns.TypeTXT)
			if tc.edns > 0 {
				q.SetEdns0(tc.edns, false)
			}
			c := &dns.Client{Net: tc.net, Timeout: 2 * time.Second, UDPSize: 65535}
			m, _, err := c.Exchange(q, addr)
			if err != nil {
				t.Fatal(err)
			}
			if m.Id != q.Id || m.Rcode != tc.rcode || m.Truncated != tc.tc || len(m.Answer) != tc.answers {
				t.Fatalf("got id %d rcode %s tc %v %d answers", m.Id, dns.RcodeToString[m.Rcode], m.Truncated, len(m.Answer))
			}
			if tc.edns > 0 && m.IsEdns0() == nil {
				t.Error("reply lost its OPT record")
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if panics != 2 {
		t.Errorf("%d panics reported, want 2", panics)
	}
}

func TestTraceSummaries(t *testing.T) {
	bus := trace.NewBus(nil)
	rec := &events{}
	cancel := bus.Subscribe(trace.SinkFunc(rec.Send))
	defer cancel()
	s := startServer(t, dnsserver.Config{Trace: bus}, txtHandler(1))
	q := new(dns.Msg)
	q.SetQuestion("www.example.", dns.TypeTXT)
	if _, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(q, s.Addrs()[1].String()); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.ev) != 2 || rec.ev[0].Summary != "query rd TXT www.example." || !strings.HasPrefix(rec.ev[1].Summary, "response NOERROR rd TXT www.example. 1/0/0: TXT ") ||
		rec.ev[0].Proto != "dns/udp" || rec.ev[0].To != s.Local() || rec.ev[1].From != s.Local() {
		t.Errorf("events %+v", rec.ev)
	}
}

func TestTruncate(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("big.example.", dns.TypeTXT)
	a := new(dns.Msg)
	a.SetReply(q)
	a.Authoritative = true
	for range 5 {
		a.Answer = append(a.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: "big.example.", Rrtype: dns.TypeTXT, Class: dns.ClassINET}, Txt: []string{"x"}})
	}
	a.Ns = append(a.Ns, &dns.NS{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeNS, Class: dns.ClassINET}, Ns: "ns.example."})
	plain, _ := a.Pack()
	a.SetEdns0(1232, true)
	withOPT, _ := a.Pack()
	for _, tc := range []struct {
		name  string
		reply []byte
		opt   bool
	}{{"no edns", plain, false}, {"edns", withOPT, true}} {
		t.Run(tc.name, func(t *testing.T) {
			var m dns.Msg
			if err := m.Unpack(dnsserver.Truncate(tc.reply, nil)); err != nil {
				t.Fatal(err)
			}
			if !m.Truncated || !m.Authoritative || m.Id != q.Id || len(m.Question) != 1 || m.Question[0].Name != "big.example." || len(m.Answer)+len(m.Ns) != 0 {
				t.Errorf("truncated reply %v", &m)
			}
			if opt := m.IsEdns0(); (opt != nil) != tc.opt || (opt != nil && (!opt.Do() || opt.UDPSize() != 1232)) {
				t.Errorf("OPT %v, want kept: %v", opt, tc.opt)
			}
		})
	}
	if got := dnsserver.Truncate([]byte{1, 2}, nil); got != nil {
		t.Errorf("short input: % x", got)
	}
}

func TestRequest(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("WwW.Example.", dns.TypeA)
	q.SetEdns0(4096, true)
	wire, _ := q.Pack()
	orig := string(wire)
	tests := []struct {
		proto  dnsserver.Proto
		maxUDP int
		want   int
	}{{dnsserver.UDP, 0, 4096}, {dnsserver.UDP, 1232, 1232}, {dnsserver.UDP, 100, 512}, {dnsserver.TCP, 1232, 65535}}
	for _, tc := range tests {
		r := &dnsserver.Request{Wire: wire, Proto: tc.proto, MaxUDP: tc.maxUDP}
		if got := r.MaxSize(); got != tc.want {
			t.Errorf("%v max %d: MaxSize %d, want %d", tc.proto, tc.maxUDP, got, tc.want)
		}
	}
	r := &dnsserver.Request{Wire: wire}
	pq, ok := r.Query()
	if !ok || pq.Qtype != dns.TypeA || !pq.DO || string(pq.Key[:4]) != "\x03www" {
		t.Fatalf("query %+v %v", pq, ok)
	}
	m1, _ := r.Msg()
	m2, _ := r.Msg()
	if m1 != m2 {
		t.Error("Msg unpacked twice")
	}
	c := r.Clone()
	c.Wire[2] ^= 0xff
	if string(wire) != orig {
		t.Error("Clone shares the wire bytes")
	}
	if cq, ok := c.Query(); !ok || &cq.Key[0] == &pq.Key[0] {
		t.Error("Clone shares the parsed key")
	}
	// Without EDNS the parse fails (ANY goes to the slow path): the size
	// comes from the full unpack.
	q.Question[0].Qtype = dns.TypeANY
	wire, _ = q.Pack()
	if got := (&dnsserver.Request{Wire: wire, MaxUDP: 1232}).MaxSize(); got != 1232 {
		t.Errorf("slow path MaxSize %d", got)
	}
}

func TestStartFailsOnTakenPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := dnsserver.New(dnsserver.Config{Addr: ln.Addr().String()}, txtHandler(1))
	if err := s.Start(context.Background()); err == nil {
		s.Shutdown(context.Background())
		t.Fatal("started on a port another listener holds")
	}
}
