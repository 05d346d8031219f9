package authority

import (
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/service"
)

// TestNotifyAcceptance: NOTIFY is taken from the primary's address, from
// what allow_notify lists, and, with a primary_key, only when signed with
// it (as NSD's allow-notify and Knot's notify acl).
func TestNotifyAcceptance(t *testing.T) {
	primary := "127.9.0.1:53"
	cases := []struct {
		name   string
		zc     ZoneConfig
		from   string
		key    string
		rcode  int
		kicked bool
	}{
		{"from the primary", ZoneConfig{}, "127.9.0.1:4000", "", dns.RcodeSuccess, true},
		{"from elsewhere", ZoneConfig{}, "127.0.0.1:4000", "", dns.RcodeRefused, false},
		{"listed prefix", ZoneConfig{AllowNotify: []string{"127.0.0.0/8"}}, "127.0.0.1:4000", "", dns.RcodeSuccess, true},
		{"outside the list", ZoneConfig{AllowNotify: []string{"127.0.0.1"}}, "127.0.0.2:4000", "", dns.RcodeRefused, false},
		{"listed with key, unsigned", ZoneConfig{AllowNotify: []string{"127.0.0.0/8 key:xfr-key"}}, "127.0.0.1:4000", "", dns.RcodeRefused, false},
		{"listed with key, signed", ZoneConfig{AllowNotify: []string{"127.0.0.0/8 key:xfr-key"}}, "127.0.0.1:4000", tsigName, dns.RcodeSuccess, true},
		{"primary key, signed, any address", ZoneConfig{PrimaryKey: "xfr-key"}, "127.0.0.7:4000", tsigName, dns.RcodeSuccess, true},
		{"primary key, unsigned from the primary", ZoneConfig{PrimaryKey: "xfr-key"}, "127.9.0.1:4000", "", dns.RcodeRefused, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			zc := tc.zc
			zc.Origin, zc.Primary = "example.net", primary
			s := newTestServer(t, Config{TSIGKeys: testKeys, Zones: []ZoneConfig{zc}})
			q := new(dns.Msg)
			q.SetNotify("example.net.")
			if tc.key != "" {
				q.SetTsig(tc.key, dns.HmacSHA256, 300, time.Now().Unix())
			}
			m := s.Handle(q, netip.MustParseAddrPort(tc.from), false)
			if m.Rcode != tc.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.rcode])
			}
			kicked := len(s.sources["example.net."].kick) == 1
			if kicked != tc.kicked {
				t.Errorf("refresh started: %v, want %v", kicked, tc.kicked)
			}
		})
	}
	if _, err := New(Config{Addr: "127.0.0.1:0", Zones: []ZoneConfig{{Origin: "example.net", Text: "@ SOA a b 1 1 1 1 1", AllowNotify: []string{"127.0.0.1"}}}}, service.Deps{}); err == nil {
		t.Error("allow_notify on a primary zone accepted")
	}
	if _, err := New(Config{Addr: "127.0.0.1:0", Zones: []ZoneConfig{{Origin: "example.net", Primary: primary, AllowNotify: []string{"not an address"}}}}, service.Deps{}); err == nil {
		t.Error("a bad allow_notify entry accepted")
	}
}
