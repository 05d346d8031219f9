package resolver

import (
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestRespell(t *testing.T) {
	tests := []struct {
		name, from, to string
		exact          bool
		want           string
	}{
		{"ns1.nYu.edu.", "www.nYu.edu.", "www.nyu.edu.", true, "ns1.nyu.edu."},
		{"tp.c95e7e602-frontier.AMAzoN.coM.", "www.AMAzoN.coM.", "www.amazon.com.", true, "tp.c95e7e602-frontier.amazon.com."},
		{"www.NYU.edu.", "www.nYu.edu.", "www.nyu.edu.", true, "www.NYU.edu."}, // the zone's own spelling stays
		{"mail.example.test.", "example.test.", "Example.TEST.", false, "mail.Example.TEST."},
		{"xexample.test.", "example.test.", "Example.TEST.", false, "xexample.TEST."}, // label-aligned only
		{"other.org.", "example.test.", "Example.TEST.", false, "other.org."},
		{".", "example.test.", "Example.TEST.", false, "."},
		{"", "a.", "A.", false, ""},
	}
	for _, tc := range tests {
		if got := respell(tc.name, tc.from, tc.to, tc.exact); got != tc.want {
			t.Errorf("respell(%q, %q, %q, %v) = %q, want %q", tc.name, tc.from, tc.to, tc.exact, got, tc.want)
		}
	}
}

// compressLikeNSD rewrites a fake server's reply the way a server that
// compresses names against the question (NSD, Knot, ours) sends it: every
// name sharing a suffix with the question takes the question's spelling,
// here the resolver's 0x20 random one.
func compressLikeNSD(req, resp *dns.Msg, _ bool) *dns.Msg {
	q := req.Question[0].Name
	for _, sec := range [][]dns.RR{resp.Answer, resp.Ns, resp.Extra} {
		for i, rr := range sec {
			c := dns.Copy(rr)
			forNames(c, false, func(n *string) { *n = respell(*n, strings.ToLower(q), q, false) })
			sec[i] = c
		}
	}
	return resp
}

// TestNo0x20Leak: with an upstream that compresses against the (random
// case) question, no reply to any client carries a random spelling, from
// the first answer or from the cache: names sharing a suffix with the
// question are spelled as that client asked, the rest as the zone does.
func TestNo0x20Leak(t *testing.T) {
	h := newHierarchy(t, 0)
	for _, a := range []*fakeAuth{h.root, h.tld, h.example} {
		a.setHook(compressLikeNSD)
	}
	r := startResolver(t, h, nil)
	tests := []struct {
		name   string
		qtype  uint16
		answer []string
		ns     []string
	}{
		{"example.test", dns.TypeMX, []string{"example.test. 0 IN MX 10 mail.example.test."}, nil},
		{"EXAMPLE.TEST", dns.TypeMX, []string{"EXAMPLE.TEST. 0 IN MX 10 mail.EXAMPLE.TEST."}, nil},
		{"example.test", dns.TypeMX, []string{"example.test. 0 IN MX 10 mail.example.test."}, nil},
		{"Example.Test", dns.TypeNS, []string{"Example.Test. 0 IN NS ns.Example.Test."}, nil},
		{"example.test", dns.TypeNS, []string{"example.test. 0 IN NS ns.example.test."}, nil},
		{"alias.example.test", dns.TypeA, []string{"alias.example.test. 0 IN CNAME www.example.test.", "www.example.test. 0 IN A 192.0.2.10", "www.example.test. 0 IN A 192.0.2.11"}, nil},
		{"ext.example.test", dns.TypeA, []string{"ext.example.test. 0 IN CNAME www.glueless.test.", "www.glueless.test. 0 IN A 192.0.2.20"}, nil},
		{"nope.example.test", dns.TypeA, nil, []string{"example.test. 0 IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 300"}},
		{"NOPE.example.test", dns.TypeA, nil, []string{"example.test. 0 IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 300"}},
		{"www.example.test", dns.TypeTXT, nil, []string{"example.test. 0 IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 300"}},
	}
	for _, tc := range tests {
		m := ask(t, r.addr, tc.name, tc.qtype)
		got, want := rrStrings(m.Answer), slices.Clone(tc.answer)
		slices.Sort(got) // address sets rotate
		slices.Sort(want)
		if got, want := strings.Join(got, "\n"), strings.Join(want, "\n"); got != want {
			t.Errorf("%s %s: answer\n%s\nwant\n%s", tc.name, dns.TypeToString[tc.qtype], got, want)
		}
		if got, want := strings.Join(rrStrings(m.Ns), "\n"), strings.Join(tc.ns, "\n"); got != want {
			t.Errorf("%s %s: authority\n%s\nwant\n%s", tc.name, dns.TypeToString[tc.qtype], got, want)
		}
	}
}
