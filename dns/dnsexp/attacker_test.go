package dnsexp

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestAttackerSendsOnlyInsideTheLab: the attacker refuses destinations and
// forged sources outside the lab's block (loopback outside it, or not
// loopback at all) and sends inside it, with the forged source address.
func TestAttackerSendsOnlyInsideTheLab(t *testing.T) {
	block := netip.MustParsePrefix("127.201.7.0/24")
	a, err := startAttacker(block, netip.MustParseAddr("127.201.7.66"), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	victim, err := net.ListenPacket("udp4", "127.201.7.53:0")
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	to := victim.LocalAddr().(*net.UDPAddr).AddrPort()
	inLab := netip.MustParseAddr("127.201.7.3")
	for _, tc := range []struct {
		name     string
		src      netip.Addr
		dst      netip.AddrPort
		refusing string
	}{
		{"destination on loopback outside the block", inLab, netip.MustParseAddrPort("127.0.0.1:53"), "127.0.0.1"},
		{"destination off loopback", inLab, netip.MustParseAddrPort("192.0.2.1:53"), "192.0.2.1"},
		{"forged source outside the block", netip.MustParseAddr("198.51.100.7"), to, "198.51.100.7"},
	} {
		if err := a.spoof([]byte("x"), tc.src, tc.dst); err == nil || !strings.Contains(err.Error(), tc.refusing) {
			t.Errorf("%s: spoof = %v, want a refusal naming %s", tc.name, err, tc.refusing)
		}
	}
	if err := a.spoof([]byte("forged"), inLab, to); err != nil {
		t.Fatalf("spoof inside the lab: %v", err)
	}
	victim.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 64)
	n, from, err := victim.ReadFrom(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := from.(*net.UDPAddr).AddrPort(); string(b[:n]) != "forged" || got.Addr().Unmap() != inLab || int(got.Port()) != a.conn.LocalAddr().(*net.UDPAddr).Port {
		t.Errorf("got %q from %v, want \"forged\" from %s on the attacker's port", b[:n], got, inLab)
	}
	if a.spoofed.Load() != 1 {
		t.Errorf("%d sent, want 1", a.spoofed.Load())
	}
}

// TestForgeryGuess: a guess sets the ID and the case of each letter of the
// question, which the answer's compressed owner name follows.
func TestForgeryGuess(t *testing.T) {
	f, err := newForgery("abcde.umass.edu.", netip.MustParseAddr("127.0.0.66"))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.letters) != nameLetters {
		t.Fatalf("%d letters, want %d", len(f.letters), nameLetters)
	}
	for _, tc := range []struct {
		id      uint16
		pattern uint64
		want    string
	}{{0x1234, 0, "abcde.umass.edu."}, {7, 0b1_0000_0000_0101, "AbCde.umass.edU."}, {65535, 1<<13 - 1, "ABCDE.UMASS.EDU."}} {
		m := new(dns.Msg)
		if err := m.Unpack(f.guess(tc.id, tc.pattern)); err != nil {
			t.Fatal(err)
		}
		if m.Id != tc.id || m.Question[0].Name != tc.want || m.Answer[0].Header().Name != tc.want || !m.Response || !m.Authoritative {
			t.Errorf("guess(%d, %b) = id %d, question %s, answer owner %s", tc.id, tc.pattern, m.Id, m.Question[0].Name, m.Answer[0].Header().Name)
		}
		// The authority and glue names are compressed against the
		// question: their case follows it, which DNS ignores.
		if ns := m.Ns[0].(*dns.NS); !strings.EqualFold(ns.Hdr.Name, "umass.edu.") || !strings.EqualFold(ns.Ns, "dns.umass.edu.") {
			t.Errorf("authority %v", ns)
		}
		if g := m.Extra[0].(*dns.A); !strings.EqualFold(g.Hdr.Name, "dns.umass.edu.") || !g.A.Equal(net.ParseIP("127.0.0.66")) {
			t.Errorf("glue %v", g)
		}
	}
}
