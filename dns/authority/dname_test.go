package authority

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

const dnameZone = `$ORIGIN dname.test.
$TTL 3600
@       SOA ns1 hostmaster 1 7200 3600 1209600 300
@       NS  ns1
ns1     A   192.0.2.1
old     600 DNAME new.dname.test.
www.new A   192.0.2.80
ext     DNAME example.net.
long    DNAME aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.dname.test.
`

// TestDNAME: RFC 6672 answers: the DNAME, the CNAME synthesized from it
// (the DNAME's TTL), and the target's data when it is in the zone.
func TestDNAME(t *testing.T) {
	s := newTestServer(t, Config{Zones: []ZoneConfig{{Origin: "dname.test", Text: dnameZone}}})
	long := strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + "." + strings.Repeat("d", 60) + ".long.dname.test."
	tests := []struct {
		name   string
		qtype  uint16
		rcode  int
		answer []string
		ns     int
	}{
		{"www.old.dname.test.", dns.TypeA, dns.RcodeSuccess, []string{
			"old.dname.test.\t600\tIN\tDNAME\tnew.dname.test.",
			"www.old.dname.test.\t600\tIN\tCNAME\twww.new.dname.test.",
			"www.new.dname.test.\t3600\tIN\tA\t192.0.2.80"}, 0},
		// The question's case is kept in the owners and the substituted prefix.
		{"WWW.Old.dname.test.", dns.TypeA, dns.RcodeSuccess, []string{
			"Old.dname.test.\t600\tIN\tDNAME\tnew.dname.test.",
			"WWW.Old.dname.test.\t600\tIN\tCNAME\tWWW.new.dname.test.",
			"WWW.new.dname.test.\t3600\tIN\tA\t192.0.2.80"}, 0},
		{"x.old.dname.test.", dns.TypeA, dns.RcodeNameError, []string{
			"old.dname.test.\t600\tIN\tDNAME\tnew.dname.test.",
			"x.old.dname.test.\t600\tIN\tCNAME\tx.new.dname.test."}, 1},
		{"a.b.ext.dname.test.", dns.TypeAAAA, dns.RcodeSuccess, []string{
			"ext.dname.test.\t3600\tIN\tDNAME\texample.net.",
			"a.b.ext.dname.test.\t3600\tIN\tCNAME\ta.b.example.net."}, 0},
		// The DNAME's own name is not redirected.
		{"old.dname.test.", dns.TypeDNAME, dns.RcodeSuccess, []string{"old.dname.test.\t600\tIN\tDNAME\tnew.dname.test."}, 0},
		{"old.dname.test.", dns.TypeA, dns.RcodeSuccess, nil, 1},
		// The synthesized name would be longer than 255 octets.
		{long, dns.TypeA, dns.RcodeYXDomain, []string{"long.dname.test.\t3600\tIN\tDNAME\t" + strings.Repeat("a", 60) + ".dname.test."}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name+dns.TypeToString[tc.qtype], func(t *testing.T) {
			q := new(dns.Msg)
			q.SetQuestion(tc.name, tc.qtype)
			m := s.Handle(q, client, false)
			if m.Rcode != tc.rcode || !m.Authoritative {
				t.Errorf("rcode %s aa %v, want %s", dns.RcodeToString[m.Rcode], m.Authoritative, dns.RcodeToString[tc.rcode])
			}
			if got := fullStrings(m.Answer); strings.Join(got, "\n") != strings.Join(tc.answer, "\n") {
				t.Errorf("answer:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.answer, "\n"))
			}
			if len(m.Ns) != tc.ns {
				t.Errorf("authority: %v", m.Ns)
			}
		})
	}
}

// TestDNAMEDig: dig and kdig read our DNAME answers (over UDP, compressed).
func TestDNAMEDig(t *testing.T) {
	s := newTestServer(t, Config{Zones: []ZoneConfig{{Origin: "dname.test", Text: dnameZone}}})
	start(t, s)
	h, p := hostPort(t, s)
	for _, tool := range []string{"dig", "kdig"} {
		bin := peer(t, tool)
		out, err := exec.Command(bin, "@"+h, "-p", p, "+norecurse", "www.old.dname.test", "A").CombinedOutput()
		o := string(out)
		if err != nil || !strings.Contains(o, "NOERROR") ||
			!regexpLine(o, "old.dname.test.", "DNAME", "new.dname.test.") ||
			!regexpLine(o, "www.old.dname.test.", "CNAME", "www.new.dname.test.") ||
			!regexpLine(o, "www.new.dname.test.", "A", "192.0.2.80") {
			t.Errorf("%s: %v\n%s", tool, err, o)
		}
	}
}

// regexpLine reports whether some line of out has the fields name, type
// and data (with TTL and class between).
func regexpLine(out, name, typ, data string) bool {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 5 && f[0] == name && f[len(f)-2] == typ && f[len(f)-1] == data {
			return true
		}
	}
	return false
}

func fullStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		out = append(out, rr.String())
	}
	return out
}
