package resolver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeAuth is a small authoritative server for tests: it serves fixed
// zones from presentation-format text with referrals, glue, CNAMEs,
// DNAMEs, NXDOMAIN and NODATA.
type fakeAuth struct {
	addr    netip.AddrPort
	zones   map[string][]dns.RR
	queries atomic.Int64
	// hook, when set, may rewrite or replace the reply.
	mu   sync.Mutex
	hook func(req, resp *dns.Msg, tcp bool) *dns.Msg
	srv  []*dns.Server
}

// testNet picks a random 127.x.y.0/24 (avoiding 127.0 and 127.1, which the
// lab uses) and a port shared by every server of a test hierarchy.
type testNet struct {
	prefix [3]byte
	port   int
}

func newTestNet(t *testing.T, port int) *testNet {
	n := &testNet{prefix: [3]byte{127, byte(10 + rand.IntN(200)), byte(rand.IntN(250))}, port: port}
	if port == 0 {
		// Find a port free on the first address; other addresses of the
		// /24 almost surely have it free too.
		pc, err := net.ListenPacket("udp", n.ip(1).String()+":0")
		if err != nil {
			t.Fatal(err)
		}
		n.port = pc.LocalAddr().(*net.UDPAddr).Port
		pc.Close()
	}
	return n
}

func (n *testNet) ip(host byte) netip.Addr {
	return netip.AddrFrom4([4]byte{n.prefix[0], n.prefix[1], n.prefix[2], host})
}

// zoneText substitutes {N} with the net's /24 prefix ("127.x.y").
func (n *testNet) zoneText(s string) string {
	return strings.ReplaceAll(s, "{N}", fmt.Sprintf("%d.%d.%d", n.prefix[0], n.prefix[1], n.prefix[2]))
}

func parseZone(t testing.TB, origin, text string) []dns.RR {
	zp := dns.NewZoneParser(strings.NewReader(text), origin, "")
	zp.SetDefaultTTL(3600)
	var out []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		out = append(out, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("zone %s: %v", origin, err)
	}
	return out
}

// startAuth serves zones (apex -> text) on addr over UDP and TCP.
func startAuth(t *testing.T, n *testNet, host byte, zones map[string]string) *fakeAuth {
	t.Helper()
	a := &fakeAuth{addr: netip.AddrPortFrom(n.ip(host), uint16(n.port)), zones: map[string][]dns.RR{}}
	for apex, text := range zones {
		a.zones[dns.Fqdn(apex)] = parseZone(t, dns.Fqdn(apex), n.zoneText(text))
	}
	pc, err := net.ListenPacket("udp", a.addr.String())
	if err != nil {
		t.Fatalf("fake auth: %v", err)
	}
	ln, err := net.Listen("tcp", a.addr.String())
	if err != nil {
		pc.Close()
		t.Fatalf("fake auth: %v", err)
	}
	var wg sync.WaitGroup
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: a}, {Listener: ln, Handler: a}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		wg.Add(1)
		go func() { defer wg.Done(); s.ActivateAndServe() }()
		<-started
		a.srv = append(a.srv, s)
	}
	t.Cleanup(func() { a.stop(); wg.Wait() })
	return a
}

func (a *fakeAuth) setHook(h func(req, resp *dns.Msg, tcp bool) *dns.Msg) {
	a.mu.Lock()
	a.hook = h
	a.mu.Unlock()
}

func (a *fakeAuth) stop() {
	for _, s := range a.srv {
		s.Shutdown()
	}
	a.srv = nil
}

func (a *fakeAuth) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	a.queries.Add(1)
	resp := a.answer(req)
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	a.mu.Lock()
	hook := a.hook
	a.mu.Unlock()
	if hook != nil {
		resp = hook(req, resp, tcp)
		if resp == nil {
			return
		}
	}
	w.WriteMsg(resp)
}

func (a *fakeAuth) answer(req *dns.Msg) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetReply(req)
	if len(req.Question) != 1 {
		resp.Rcode = dns.RcodeFormatError
		return resp
	}
	if o := req.IsEdns0(); o != nil {
		resp.SetEdns0(1232, o.Do())
	}
	q := req.Question[0]
	qname := lowerName(q.Name)
	apex := ""
	for z := range a.zones {
		if dns.IsSubDomain(z, qname) && len(z) > len(apex) {
			apex = z
		}
	}
	if apex == "" {
		resp.Rcode = dns.RcodeRefused
		return resp
	}
	rrs := a.zones[apex]
	// Delegation below the apex?
	for _, rr := range rrs {
		h := rr.Header()
		if h.Rrtype == dns.TypeNS && !equalName(h.Name, apex) && dns.IsSubDomain(lowerName(h.Name), qname) {
			cut := lowerName(h.Name)
			for _, x := range rrs {
				if x.Header().Rrtype == dns.TypeNS && equalName(x.Header().Name, cut) {
					resp.Ns = append(resp.Ns, x)
					for _, g := range rrs {
						gt := g.Header().Rrtype
						if (gt == dns.TypeA || gt == dns.TypeAAAA) && equalName(g.Header().Name, x.(*dns.NS).Ns) {
							resp.Extra = append(resp.Extra, g)
						}
					}
				}
			}
			return resp
		}
	}
	resp.Authoritative = true
	cur := qname
	for hop := 0; hop < 8; hop++ {
		exists, found := false, false
		for _, rr := range rrs {
			h := rr.Header()
			if dns.IsSubDomain(cur, lowerName(h.Name)) {
				exists = true
			}
			if equalName(h.Name, cur) && (h.Rrtype == q.Qtype) {
				resp.Answer = append(resp.Answer, rr)
				found = true
			}
		}
		if found {
			return resp
		}
		for _, rr := range rrs {
			if c, ok := rr.(*dns.CNAME); ok && equalName(c.Hdr.Name, cur) {
				resp.Answer = append(resp.Answer, c)
				cur = lowerName(c.Target)
				if !dns.IsSubDomain(apex, cur) {
					return resp
				}
				found = true
			}
			if d, ok := rr.(*dns.DNAME); ok && !found && dns.IsSubDomain(lowerName(d.Hdr.Name), cur) && !equalName(d.Hdr.Name, cur) {
				labels := dns.CountLabel(cur) - dns.CountLabel(d.Hdr.Name)
				target := cur[:dns.Split(cur)[labels]] + d.Target
				resp.Answer = append(resp.Answer, d, &dns.CNAME{Hdr: dns.RR_Header{Name: cur, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: d.Hdr.Ttl}, Target: target})
				cur = lowerName(target)
				if !dns.IsSubDomain(apex, cur) {
					return resp
				}
				found = true
			}
		}
		if found {
			continue
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == dns.TypeSOA {
				resp.Ns = append(resp.Ns, rr)
			}
		}
		if !exists {
			resp.Rcode = dns.RcodeNameError
		}
		return resp
	}
	return resp
}

// fakeClock is a settable clock for TTL tests.
type fakeClock struct{ off atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *fakeClock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// query sends one query to the resolver over UDP (or TCP) and returns the reply.
func ask(t *testing.T, server string, name string, qtype uint16, opts ...func(*dns.Msg)) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	for _, o := range opts {
		o(m)
	}
	c := &dns.Client{Timeout: 8 * time.Second}
	r, _, err := c.ExchangeContext(context.Background(), m, server)
	if err != nil {
		t.Fatalf("query %s %s: %v", name, dns.TypeToString[qtype], err)
	}
	return r
}
