package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"

	"github.com/applayer/applayer/internal/testkit"
)

// RFC 7208 appendix A's example.com: each record of A.1 is served by a
// zone of its own (a1.test. ...) holding appendix A's addresses and MX,
// so the "a" and "mx" mechanisms see the same names as in the RFC.
const appendixA = `{D} 3600 IN MX 10 mail-a.{D}
{D} 3600 IN MX 20 mail-b.{D}
{D} 3600 IN A 192.0.2.10
{D} 3600 IN A 192.0.2.11
amy.{D} 3600 IN A 192.0.2.65
bob.{D} 3600 IN A 192.0.2.66
mail-a.{D} 3600 IN A 192.0.2.129
mail-b.{D} 3600 IN A 192.0.2.130
{D} 3600 IN TXT "{R}"
`

func TestSPFAppendixA(t *testing.T) {
	tried := []string{"192.0.2.10", "192.0.2.11", "192.0.2.65", "192.0.2.128", "192.0.2.129", "192.0.2.130", "192.0.2.131", "192.0.2.140", "192.0.2.141", "192.0.2.143", "192.0.2.144", "198.51.100.7", "2001:db8::1", "2001:db9::1"}
	cases := []struct {
		record string
		pass   []string // addresses that pass; every other tried one fails
	}{
		{"v=spf1 +all", tried},
		{"v=spf1 a -all", []string{"192.0.2.10", "192.0.2.11"}},
		{"v=spf1 a:example.org -all", nil},
		{"v=spf1 mx -all", []string{"192.0.2.129", "192.0.2.130"}},
		{"v=spf1 mx:example.org -all", []string{"192.0.2.140"}},
		{"v=spf1 mx mx:example.org -all", []string{"192.0.2.129", "192.0.2.130", "192.0.2.140"}},
		{"v=spf1 mx/30 mx:example.org/30 -all", []string{"192.0.2.128", "192.0.2.129", "192.0.2.130", "192.0.2.131", "192.0.2.140", "192.0.2.141", "192.0.2.143"}},
		{"v=spf1 ip4:192.0.2.128/28 -all", []string{"192.0.2.128", "192.0.2.129", "192.0.2.130", "192.0.2.131", "192.0.2.140", "192.0.2.141", "192.0.2.143"}},
		{"v=spf1 ip6:2001:db8::/32 -all", []string{"2001:db8::1"}},
		{"v=spf1 include:example.org -all", []string{"192.0.2.140"}},
		{"v=spf1 redirect=example.org", []string{"192.0.2.140"}},
		{"v=spf1 exists:%{ir}.in.example.org -all", []string{"192.0.2.65"}},
	}
	zones := map[string]string{
		"example.org.": `example.org. 3600 IN MX 10 mail-c.example.org.
mail-c.example.org. 3600 IN A 192.0.2.140
example.org. 3600 IN TXT "v=spf1 mx -all"
65.2.0.192.in.example.org. 3600 IN A 127.0.0.2
`,
	}
	for i, c := range cases {
		d := fmt.Sprintf("a%d.test.", i)
		zones[d] = strings.NewReplacer("{D}", d, "{R}", c.record).Replace(appendixA)
	}
	res := serveZones(t, zones)
	ctx := testkit.Context(t, 60*time.Second)
	v := &Verifier{Resolver: res, AuthServID: "mx.test"}
	for i, c := range cases {
		for _, ip := range tried {
			want := authres.ResultValue(authres.ResultFail)
			for _, p := range c.pass {
				if p == ip {
					want = authres.ResultPass
				}
			}
			r := v.Check(ctx, Message{IP: netip.MustParseAddr(ip), Helo: "client.test", MailFrom: fmt.Sprintf("user@a%d.test", i), Body: []byte("\r\n")})
			if r.SPF != want {
				t.Errorf("%q from %s: %s (%s), want %s", c.record, ip, r.SPF, r.SPFReason, want)
			}
		}
	}
}

// Limits and errors (RFC 7208 4.6.4, 4.5, 5.5, 7): the ten-lookup limit,
// the void-lookup limit, macros, a missing record, two records, syntax.
func TestSPFLimitsAndMacros(t *testing.T) {
	var incl []string
	zones := map[string]string{}
	for i := range 11 {
		incl = append(incl, fmt.Sprintf("include:i%d.limit.test", i))
	}
	zones["limit.test."] = `limit.test. 3600 IN TXT "v=spf1 ` + strings.Join(incl, " ") + ` -all"
ten.limit.test. 3600 IN TXT "v=spf1 ` + strings.Join(incl[:10], " ") + ` +all"
`
	for i := range 11 {
		zones["limit.test."] += fmt.Sprintf("i%d.limit.test. 3600 IN TXT \"v=spf1 -ip4:10.0.0.%d\"\n", i, i)
	}
	zones["void.test."] = `void.test. 3600 IN TXT "v=spf1 a:nx1.void.test a:nx2.void.test a:nx3.void.test +all"
two.void.test. 3600 IN TXT "v=spf1 a:nx1.void.test a:nx2.void.test +all"
`
	zones["macro.test."] = `macro.test. 3600 IN TXT "v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all"
3.2.0.192.strong._spf.macro.test. 3600 IN A 127.0.0.2
`
	zones["broken.test."] = `broken.test. 3600 IN TXT "v=spf1 ip4:300.1.2.3 -all"
two.broken.test. 3600 IN TXT "v=spf1 -all"
two.broken.test. 3600 IN TXT "v=spf1 +all"
none.broken.test. 3600 IN TXT "not spf"
soft.broken.test. 3600 IN TXT "v=spf1 ~all"
neutral.broken.test. 3600 IN TXT "v=spf1 ?all"
`
	res := serveZones(t, zones)
	ctx := testkit.Context(t, 60*time.Second)
	v := &Verifier{Resolver: res, AuthServID: "mx.test"}
	for _, tc := range []struct {
		ip, from string
		want     authres.ResultValue
	}{
		{"192.0.2.1", "a@limit.test", authres.ResultPermError},
		{"192.0.2.1", "a@ten.limit.test", authres.ResultPass},
		{"192.0.2.1", "a@void.test", authres.ResultPermError},
		{"192.0.2.1", "a@two.void.test", authres.ResultPass},
		{"192.0.2.3", "strong-bad@macro.test", authres.ResultPass},
		{"192.0.2.4", "strong-bad@macro.test", authres.ResultFail},
		{"192.0.2.3", "weak-bad@macro.test", authres.ResultFail},
		{"192.0.2.1", "a@broken.test", authres.ResultPermError},
		{"192.0.2.1", "a@two.broken.test", authres.ResultPermError},
		{"192.0.2.1", "a@none.broken.test", authres.ResultNone},
		{"192.0.2.1", "a@soft.broken.test", authres.ResultSoftFail},
		{"192.0.2.1", "a@neutral.broken.test", authres.ResultNeutral},
	} {
		r := v.Check(ctx, Message{IP: netip.MustParseAddr(tc.ip), Helo: "client.test", MailFrom: tc.from, Body: []byte("\r\n")})
		if r.SPF != tc.want {
			t.Errorf("%s from %s: %s (%s), want %s", tc.from, tc.ip, r.SPF, r.SPFReason, tc.want)
		}
	}
}
