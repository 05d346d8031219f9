package dig_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/dig"
	"github.com/applayer/applayer/dns/dnstest"
	"github.com/applayer/applayer/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

func TestRunPrintsLikeDig(t *testing.T) {
	h := dnstest.Start(t, dnstest.Chapter(), dnstest.Options{Signed: []string{".", "edu", "umass.edu"}, Records: map[string][]string{
		"amazon.com.": {"www CNAME edge", "edge A 192.0.2.1", "edge A 192.0.2.2"},
	}})
	server := h.Servers["dns.amazon.com"].Addrs()[0].String()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tests := []struct {
		name string
		o    dig.Options
		want []string
		not  []string
	}{
		{"answer", dig.Options{Name: "www.amazon.com", Type: dns.TypeA, NoRecurse: true}, []string{
			";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: ",
			";; flags: qr aa; QUERY: 1, ANSWER: 3, AUTHORITY: 0, ADDITIONAL: 1",
			";; QUESTION SECTION:\n;www.amazon.com.\t\tIN\tA",
			";; ANSWER SECTION:\nwww.amazon.com.\t3600\tIN\tCNAME\tedge.amazon.com.",
			";; SERVER: " + strings.Replace(server, ":", "#", 1), "(UDP)", ";; MSG SIZE  rcvd: ",
		}, nil},
		{"short", dig.Options{Name: "www.amazon.com", Type: dns.TypeA, Short: true}, []string{"edge.amazon.com.\n", "192.0.2.1\n", "192.0.2.2\n"}, []string{"HEADER"}},
		{"tcp", dig.Options{Name: "www.amazon.com", TCP: true}, []string{"(TCP)"}, nil},
		{"nxdomain", dig.Options{Name: "nope.amazon.com"}, []string{"status: NXDOMAIN", ";; AUTHORITY SECTION:\namazon.com.\t300\tIN\tSOA"}, nil},
		{"rd", dig.Options{Name: "amazon.com", Type: dns.TypeNS}, []string{";; flags: qr aa rd;"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			tc.o.Server = server
			if err := dig.Run(ctx, &out, tc.o); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tc.not {
				if strings.Contains(out.String(), w) {
					t.Errorf("output has %q:\n%s", w, out.String())
				}
			}
		})
	}
	t.Run("dnssec", func(t *testing.T) {
		var out bytes.Buffer
		o := dig.Options{Server: h.Servers["dns.umass.edu"].Addrs()[0].String(), Name: "www.umass.edu", DNSSEC: true}
		if err := dig.Run(ctx, &out, o); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "; EDNS: version: 0, flags: do; udp: 1232") || !strings.Contains(out.String(), "\tRRSIG\tA 13 3 3600") {
			t.Errorf("no DO or RRSIG:\n%s", out.String())
		}
	})
	t.Run("hints", func(t *testing.T) {
		hints, err := dig.ReadHints(h.HintsFile(t, dnstest.Chapter()), h.Port)
		if err != nil || len(hints) != 1 || hints[0] != h.Root(dnstest.Chapter()).String() {
			t.Fatalf("hints %v %v", hints, err)
		}
	})
}
