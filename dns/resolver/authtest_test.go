package resolver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/dnstest"
)

// fakeAuth is one authoritative server of a test hierarchy: a real
// authority server (dnstest.StartZones, as every test hierarchy) behind a
// dnstest.Tap that counts its queries and lets a test kill it or rewrite
// its answers (lying, truncating, spoofing servers).
type fakeAuth struct {
	*dnstest.Tap
}

func (a *fakeAuth) setHook(h func(req, resp *dns.Msg, tcp bool) *dns.Msg) { a.SetHook(h) }
func (a *fakeAuth) stop()                                                 { a.Stop() }

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

// startAuth serves zones (apex -> text) on the host's address at the
// net's port, over UDP and TCP.
func startAuth(t *testing.T, n *testNet, host byte, zones map[string]string) *fakeAuth {
	t.Helper()
	var zs []dnstest.Zone
	for apex, text := range zones {
		zs = append(zs, dnstest.Zone{Origin: apex, Addr: n.ip(host), Text: n.zoneText(text)})
	}
	sv, err := dnstest.StartZones(t, 0, zs)
	if err != nil {
		t.Fatalf("test server: %v", err)
	}
	tap, err := dnstest.StartTap(t, netip.AddrPortFrom(n.ip(host), uint16(n.port)), netip.AddrPortFrom(n.ip(host), uint16(sv.Port)).String())
	if err != nil {
		t.Fatalf("test server: %v", err)
	}
	return &fakeAuth{Tap: tap}
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
