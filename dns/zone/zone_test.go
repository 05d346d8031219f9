package zone

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestParseErrorsNameFileAndLine(t *testing.T) {
	text := "$TTL 60\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 192.0.2.300\n"
	_, err := Parse(strings.NewReader(text), "example.", "db.example", false)
	if err == nil || !strings.Contains(err.Error(), "db.example") || !strings.Contains(err.Error(), "line: 4") {
		t.Fatalf("error %v lacks file and line", err)
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct{ name, text string }{
		{"no soa", "@ 60 NS ns\n"},
		{"out of zone", "@ 60 SOA ns hm 1 2 3 4 5\nother.org. 60 A 192.0.2.1\n"},
		{"cname and data", "@ 60 SOA ns hm 1 2 3 4 5\nx 60 CNAME y\nx 60 A 192.0.2.1\n"},
		{"two soa", "@ 60 SOA ns hm 1 2 3 4 5\n@ 60 SOA ns hm 2 2 3 4 5\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse(strings.NewReader(tc.text), "example.", "t", false); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestEmptyNonTerminalsAndOrder(t *testing.T) {
	z, err := Parse(strings.NewReader("@ 60 SOA ns hm 1 2 3 4 5\na.b.c 60 TXT x\nZ 60 A 192.0.2.1\n*.z 60 A 192.0.2.1\n"), "example.", "t", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"b.c.example.", "c.example."} {
		if n := z.Node(k); n == nil || !n.Empty() {
			t.Errorf("%s is not an empty non-terminal: %v", k, n)
		}
	}
	got := strings.Join(z.Names(), " ")
	want := "example. c.example. b.c.example. a.b.c.example. z.example. *.z.example."
	if got != want {
		t.Errorf("canonical order\n got %s\nwant %s", got, want)
	}
}

func TestCompare(t *testing.T) {
	// RFC 4034 section 6.1's example, in order.
	names := []string{"example.", "a.example.", "yljkjljk.a.example.", "z.a.example.", "zabc.a.example.", "z.example.", `\001.z.example.`, "*.z.example.", `\200.z.example.`}
	for i := 1; i < len(names); i++ {
		if Compare(names[i-1], names[i]) >= 0 {
			t.Errorf("%s should sort before %s", names[i-1], names[i])
		}
	}
}

// FuzzParse feeds arbitrary master-file text to the zone loader: it must
// return a zone or an error, never panic.
func FuzzParse(f *testing.F) {
	f.Add("$TTL 60\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n*.w TXT \"x\"\n")
	f.Add("$ORIGIN example.\n@ 60 SOA ns hm 1 2 3 4 5\nwww CNAME @\n$INCLUDE /etc/passwd\n")
	f.Add("@ 60 SOA ns hm 1 2 3 4 5\nx 60 NSEC3 1 0 0 - ABCDEFGH A\n")
	f.Fuzz(func(t *testing.T, text string) {
		z, err := Parse(strings.NewReader(text), "example.", "fuzz", false)
		if err != nil {
			return
		}
		if z.SOA == nil || z.Node(z.Origin) == nil {
			t.Fatal("zone without apex")
		}
		_ = z.Records()
		z.CoveringNSEC("nope.example.")
		z.NSEC3For("nope.example.")
		_ = dns.Fqdn(z.Origin)
	})
}
