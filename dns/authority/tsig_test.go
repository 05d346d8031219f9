package authority

import (
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const (
	tsigName   = "xfr-key."
	tsigSecret = "c2VjcmV0LWtleS1mb3ItdGVzdGluZy10c2lnLTEyMzQ="
	tsigOther  = "b3RoZXItc2VjcmV0LWtleS1mb3ItdGVzdGluZy0xMjM="
)

var testKeys = []TSIGKey{{Name: "xfr-key", Algorithm: "hmac-sha256", Secret: tsigSecret}}

// axfr transfers example.com from s, signed with secret when not empty.
func axfr(t *testing.T, s *Server, secret string) ([]dns.RR, error) {
	t.Helper()
	m := new(dns.Msg)
	m.SetAxfr("example.com.")
	tr := &dns.Transfer{}
	if secret != "" {
		m.SetTsig(tsigName, dns.HmacSHA256, 300, time.Now().Unix())
		tr.TsigSecret = map[string]string{tsigName: secret}
	}
	env, err := tr.In(m, s.Addrs()[0].String())
	if err != nil {
		return nil, err
	}
	var out []dns.RR
	for e := range env {
		if e.Error != nil {
			return out, e.Error
		}
		out = append(out, e.RR...)
	}
	return out, nil
}

func TestTSIGTransferACL(t *testing.T) {
	tests := []struct {
		name   string
		acl    []string
		secret string
		ok     bool
	}{
		{"key only, signed", []string{"key:xfr-key"}, tsigSecret, true},
		{"key only, unsigned", []string{"key:xfr-key"}, "", false},
		{"key only, wrong secret", []string{"key:xfr-key"}, tsigOther, false},
		{"address and key, signed", []string{"127.0.0.1 key:xfr-key"}, tsigSecret, true},
		{"address and key, unsigned", []string{"127.0.0.1 key:xfr-key"}, "", false},
		{"other address and key", []string{"192.0.2.1 key:xfr-key"}, tsigSecret, false},
		{"address only, signed", []string{"127.0.0.0/8"}, tsigSecret, true},
		{"address only, unsigned", []string{"127.0.0.0/8"}, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, Config{AllowTransfer: tc.acl, TSIGKeys: testKeys})
			start(t, s)
			rrs, err := axfr(t, s, tc.secret)
			if tc.ok && (err != nil || len(rrs) < 5) {
				t.Fatalf("transfer: %v (%d records)", err, len(rrs))
			}
			if !tc.ok && err == nil {
				t.Fatalf("transfer allowed: %d records", len(rrs))
			}
		})
	}
}

// TestTSIGQuery: a signed query over UDP and TCP gets a signed answer
// (the client checks the MAC); a bad MAC gets NOTAUTH.
func TestTSIGQuery(t *testing.T) {
	s := newTestServer(t, Config{TSIGKeys: testKeys})
	start(t, s)
	for _, net := range []string{"udp", "tcp"} {
		for _, secret := range []string{tsigSecret, tsigOther} {
			c := &dns.Client{Net: net, TsigSecret: map[string]string{tsigName: secret}, Timeout: 2 * time.Second}
			q := new(dns.Msg)
			q.SetQuestion("www.example.com.", dns.TypeA)
			q.SetTsig(tsigName, dns.HmacSHA256, 300, time.Now().Unix())
			r, _, err := c.Exchange(q, s.Addrs()[0].String())
			if secret == tsigSecret {
				if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 || r.IsTsig() == nil {
					t.Errorf("%s signed query: %v %v", net, err, r)
				}
				continue
			}
			// The answer is unsigned (its MAC is empty): the client says so.
			if r == nil || r.Rcode != dns.RcodeNotAuth || r.IsTsig() == nil || r.IsTsig().Error != dns.RcodeBadSig {
				t.Errorf("%s badly signed query: %v %v", net, err, r)
			}
		}
	}
}

// TestTSIGKdig: kdig -y pulls AXFR with TSIG; without the key it is refused.
func TestTSIGKdig(t *testing.T) {
	kdig := peer(t, "kdig")
	s := newTestServer(t, Config{AllowTransfer: []string{"key:xfr-key"}, TSIGKeys: testKeys})
	start(t, s)
	h, p := hostPort(t, s)
	out, err := exec.Command(kdig, "@"+h, "-p", p, "-y", "hmac-sha256:xfr-key:"+tsigSecret, "example.com", "AXFR").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "www.example.com.") || strings.Contains(string(out), "failed") {
		t.Errorf("kdig -y AXFR: %v\n%s", err, out)
	}
	out, _ = exec.Command(kdig, "@"+h, "-p", p, "example.com", "AXFR").CombinedOutput()
	if strings.Contains(string(out), "www.example.com.") || !strings.Contains(string(out), "REFUSED") {
		t.Errorf("kdig AXFR without key:\n%s", out)
	}
	out, _ = exec.Command(kdig, "@"+h, "-p", p, "-y", "hmac-sha256:xfr-key:"+tsigOther, "example.com", "AXFR").CombinedOutput()
	if strings.Contains(string(out), "www.example.com.") {
		t.Errorf("kdig AXFR with a wrong key:\n%s", out)
	}
}

// TestTSIGSecondaryFollowsPrimary: secondary and primary both ours, the
// transfers and the NOTIFY signed, the primary allowing the key only.
func TestTSIGSecondaryFollowsPrimary(t *testing.T) {
	base := randomBlock()
	priAddr, secAddr := base.Next(), base.Next().Next()
	path := filepath.Join(t.TempDir(), "example.net.zone")
	writeZone(t, path, 1, "")
	port := uint16(freePort(t, secAddr))
	// The secondary expects NOTIFY from another address than the
	// primary's: only the key makes it acceptable.
	sec := newTestServer(t, Config{Addr: netip.AddrPortFrom(secAddr, port).String(), TSIGKeys: testKeys,
		Zones: []ZoneConfig{{Origin: "example.net", Primary: netip.AddrPortFrom(priAddr, port).String(), PrimaryKey: "xfr-key"}}})
	start(t, sec)
	pri := newTestServer(t, Config{
		Addr: netip.AddrPortFrom(priAddr, port).String(), TSIGKeys: testKeys, NotifyKey: "xfr-key",
		Zones:         []ZoneConfig{{Origin: "example.net", File: path}},
		AllowTransfer: []string{"key:xfr-key"},
		Notify:        []string{netip.AddrPortFrom(secAddr, port).String()},
	})
	start(t, pri)
	eventually(t, 10*time.Second, "signed transfer", func() bool { return sec.Zone("example.net") != nil })
	writeZone(t, path, 2, "new A 192.0.2.7")
	if err := pri.Reload(false); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "signed NOTIFY then IXFR", func() bool {
		z := sec.Zone("example.net")
		return z.SOA.Serial == 2 && z.Node("new.example.net.") != nil
	})
}

// TestTSIGSecondaryFromKnot: our secondary pulls from Knot, which allows
// transfers only with the key and signs its NOTIFY; the change is pulled by
// an IXFR that followed the NOTIFY (refresh is 60 s).
func TestTSIGSecondaryFromKnot(t *testing.T) {
	knotc := peer(t, "knotc")
	k := startKnot(t, tsigSecret)
	// Unsigned, Knot refuses.
	if _, err := axfrFrom(k.primary, "example.net.", ""); err == nil {
		t.Error("knot allowed an unsigned AXFR: the test's ACL is wrong")
	}
	sec, logs := newLoggedServer(t, Config{Addr: netip.AddrPortFrom(k.secAddr, uint16(k.port)).String(), TSIGKeys: testKeys,
		Zones: []ZoneConfig{{Origin: "example.net", Primary: k.primary, PrimaryKey: "xfr-key"}}})
	start(t, sec)
	eventually(t, 10*time.Second, "signed AXFR from knot", func() bool { return sec.Zone("example.net") != nil })
	checkTransfer(t, logs, 10, "AXFR")
	changeKnotZone(t, knotc, k, 11, "added TXT \"by ixfr\"")
	followNotify(t, sec, logs, 11)
	if z := sec.Zone("example.net"); z.Node("added.example.net.") == nil {
		t.Error("IXFR missed the added record")
	}
	checkTransfer(t, logs, 11, "IXFR")
	if !logShows(k.logs, "IXFR, outgoing") {
		t.Errorf("knot's log shows no outgoing IXFR (its ACL needs the key):\n%s", k.logs.String())
	}
}

func axfrFrom(addr, zone, secret string) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetAxfr(zone)
	tr := &dns.Transfer{}
	if secret != "" {
		m.SetTsig(tsigName, dns.HmacSHA256, 300, time.Now().Unix())
		tr.TsigSecret = map[string]string{tsigName: secret}
	}
	env, err := tr.In(m, addr)
	if err != nil {
		return nil, err
	}
	var out []dns.RR
	for e := range env {
		if e.Error != nil {
			return out, e.Error
		}
		out = append(out, e.RR...)
	}
	return out, nil
}
