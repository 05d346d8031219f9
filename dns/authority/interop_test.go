package authority

import (
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/applayer/applayer/internal/testkit"
)

// peer returns the path of an interop peer (testkit.Peer: PATH, then
// /usr/sbin and /sbin; a failure under APPLAYER_REQUIRE_PEERS).
func peer(t *testing.T, name string) string {
	t.Helper()
	return testkit.Peer(t, name)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(peer(t, name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func hostPort(t *testing.T, s *Server) (string, string) {
	h, p, err := net.SplitHostPort(s.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

func TestInteropDig(t *testing.T) {
	peer(t, "dig")
	s := newTestServer(t, Config{NSID: "applayer-test"})
	start(t, s)
	h, p := hostPort(t, s)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"answer", []string{"www.example.com", "A"}, []string{"status: NOERROR", "flags: qr aa;", "www.example.com.\t3600\tIN\tA\t192.0.2.1"}},
		{"nxdomain", []string{"nope.example.com", "A"}, []string{"status: NXDOMAIN", "example.com.\t\t300\tIN\tSOA"}},
		{"referral", []string{"www.sub.example.com", "A"}, []string{"status: NOERROR", "flags: qr;", "AUTHORITY: 2", "ns.sub.example.com.\t3600\tIN\tA\t192.0.2.53"}},
		{"refused", []string{"www.example.net", "A"}, []string{"status: REFUSED"}},
		{"nsid", []string{"+nsid", "www.example.com", "A"}, []string{`NSID: 61 70 70 6c 61 79 65 72 2d 74 65 73 74 ("applayer-test")`}},
		{"cookie", []string{"+cookie", "www.example.com", "A"}, []string{"COOKIE: ", "(good)"}},
		{"tc then tcp", []string{"+ignore", "+bufsize=512", "big.example.com", "TXT"}, []string{"flags: qr aa tc;"}},
		{"tcp fallback", []string{"big.example.com", "TXT"}, []string{"ANSWER: 40,"}},
		{"tcp", []string{"+tcp", "big.example.com", "TXT"}, []string{"ANSWER: 40,"}},
		{"badvers", []string{"+edns=1", "+noednsneg", "www.example.com", "A"}, []string{"status: BADVERS"}},
		{"case", []string{"WWW.EXAMPLE.com", "A"}, []string{"WWW.EXAMPLE.com.\t3600\tIN\tA"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"@" + h, "-p", p, "+norecurse", "+time=2", "+tries=1"}, tc.args...)
			out := run(t, "dig", args...)
			for _, w := range tc.want {
				if tc.name == "answer" && strings.HasPrefix(w, "www.example.com.") {
					w = "www.example.com.\t3600\tIN\tA\t192.0.2.1"
				}
				if !strings.Contains(out, w) {
					t.Errorf("dig output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestInteropKdig(t *testing.T) {
	peer(t, "kdig")
	s := newTestServer(t, Config{AllowTransfer: []string{"127.0.0.1"}})
	start(t, s)
	h, p := hostPort(t, s)
	t.Run("query", func(t *testing.T) {
		out := run(t, "kdig", "@"+h, "-p", p, "+norec", "alias.example.com", "A")
		for _, w := range []string{"status: NOERROR", "Flags: qr aa;", "alias.example.com.  \t3600\tIN\tCNAME\twww.example.com."} {
			if !strings.Contains(strings.ReplaceAll(out, "  \t", "\t"), strings.ReplaceAll(w, "  \t", "\t")) {
				t.Errorf("kdig output lacks %q:\n%s", w, out)
			}
		}
	})
	t.Run("axfr", func(t *testing.T) {
		out := run(t, "kdig", "@"+h, "-p", p, "example.com", "AXFR")
		if !strings.Contains(out, ";; Received") || strings.Count(out, "\tSOA\t") != 2 {
			t.Fatalf("kdig axfr:\n%s", out)
		}
		if !strings.Contains(out, "big.example.com.") || !strings.Contains(out, "_sip._udp.example.com.") {
			t.Errorf("axfr lacks records:\n%s", out)
		}
	})
}
