package authority

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

// TestRRL: over UDP, a client network that asks more than the rate per
// second for one kind of answer gets the excess dropped, every slip-th
// sent truncated (TC, no records); a random-name flood (NXDOMAIN) shares
// the zone's budget; TCP is never limited; loopback is exempt unless the
// config says otherwise (here it does: the test runs on loopback).
func TestRRL(t *testing.T) {
	// The limiter counts per second of the server's clock: pinned here.
	clock := testkit.NewClock(time.Now())
	s, err := New(Config{Addr: "127.0.0.1:0", Zones: []ZoneConfig{{Origin: "example.com.", File: "testdata/example.com.zone"}, {Origin: "example.org", File: "testdata/example.org.zone"}},
		RateLimit: RateLimitConfig{Rate: 5, Slip: 2, Loopback: true}}, service.Deps{Logger: testkit.Logger(t), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	start(t, s)
	addr := s.Addrs()[0].String()
	c := &dns.Client{Timeout: 300 * time.Millisecond}
	count := func(name func(i int) string, n int) (answered, slipped, dropped int) {
		for i := 0; i < n; i++ {
			q := new(dns.Msg)
			q.SetQuestion(name(i), dns.TypeA)
			r, _, err := c.Exchange(q, addr)
			switch {
			case err != nil:
				dropped++
			case r.Truncated && len(r.Answer)+len(r.Ns) == 0:
				slipped++
			default:
				answered++
			}
		}
		return
	}
	a, sl, d := count(func(int) string { return "www.example.com." }, 15)
	if a != 5 || sl != 5 || d != 5 {
		t.Errorf("15 same answers at rate 5 slip 2: %d answered, %d truncated, %d dropped; want 5, 5, 5", a, sl, d)
	}
	clock.Advance(time.Second) // a new second: a fresh budget
	if a, _, _ := count(func(int) string { return "www.example.com." }, 5); a != 5 {
		t.Errorf("next second: %d of 5 answered", a)
	}
	a, sl, d = count(func(i int) string { return string(rune('a'+i)) + "nope.example.org." }, 10)
	if a != 5 || sl+d != 5 {
		t.Errorf("10 random NXDOMAIN names: %d answered, %d limited; want them to share one budget of 5", a, sl+d)
	}
	q := new(dns.Msg)
	q.SetQuestion("www.example.com.", dns.TypeA)
	tc := &dns.Client{Net: "tcp", Timeout: time.Second}
	if r, _, err := tc.Exchange(q, addr); err != nil || len(r.Answer) == 0 {
		t.Errorf("over TCP after the limit: %v %v", err, r)
	}

	// Defaults: loopback is exempt.
	d2 := newTestServer(t, Config{})
	start(t, d2)
	addr = d2.Addrs()[0].String()
	if a, _, _ := count(func(int) string { return "www.example.com." }, 300); a != 300 {
		t.Errorf("loopback client limited by default: %d of 300 answered", a)
	}
	// ...but not other clients: the check on its own, with NSD's 200.
	d2.rrl.now = clock.Now
	zs := d2.zones.Load()
	ans := d2.Handle(q, netip.MustParseAddrPort("192.0.2.9:53"), false)
	wire, _ := ans.Pack()
	limited := 0
	for i := 0; i < 300; i++ {
		if d2.rrl.check(netip.MustParseAddr("192.0.2.9"), append([]byte(nil), wire...), zs) != rrlSend {
			limited++
		}
	}
	if limited != 100 {
		t.Errorf("default limiter: %d of 300 limited, want 100", limited)
	}
	if off := newTestServer(t, Config{RateLimit: RateLimitConfig{Rate: -1}}); off.rrl != nil {
		t.Error("rate -1 did not turn RRL off")
	}
}

// TestInteropDigThroughRRL: with every limited answer slipped (slip 1),
// dig, a real client, gets TC over UDP, retries over TCP and still gets
// its answer: the limiter cuts amplification, not service.
func TestInteropDigThroughRRL(t *testing.T) {
	dig := peer(t, "dig")
	s, err := New(Config{Addr: "127.0.0.1:0", Zones: []ZoneConfig{{Origin: "example.com.", File: "testdata/example.com.zone"}},
		RateLimit: RateLimitConfig{Rate: 1, Slip: 1, Loopback: true}}, service.Deps{Logger: testkit.Logger(t), Now: testkit.NewClock(time.Now()).Now})
	if err != nil {
		t.Fatal(err)
	}
	start(t, s)
	h, p := hostPort(t, s)
	for i := 0; i < 3; i++ {
		out, err := exec.Command(dig, "@"+h, "-p", p, "+norecurse", "+time=2", "+tries=1", "www.example.com", "A").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "status: NOERROR") || !strings.Contains(string(out), "www.example.com.\t3600\tIN\tA\t192.0.2.10") {
			t.Fatalf("dig #%d: %v\n%s", i+1, err, out)
		}
		if truncated := strings.Contains(string(out), "Truncated, retrying in TCP mode"); truncated != (i > 0) {
			t.Errorf("dig #%d: truncated=%v, want %v (rate 1, slip 1)\n%s", i+1, truncated, i > 0, out)
		}
	}
}
