package resolver

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/lab"
)

// TestHazardsRefusedOutsideLoopbackLab: the weakening switches of the
// dns-poisoning lesson start only inside a lab whose block is loopback,
// with the listen address, root hints and forwarders all in it; the
// defaults (no hazards) start anywhere.
func TestHazardsRefusedOutsideLoopbackLab(t *testing.T) {
	labPlan := &lab.Plan{Block: netip.MustParsePrefix("127.77.1.0/24")}
	remote := &lab.Plan{Block: netip.MustParsePrefix("10.1.2.0/24")}
	wide := &lab.Plan{Block: netip.MustParsePrefix("64.0.0.0/2")}
	ok := Config{Listen: "127.77.1.5:53", RootHints: []string{"127.77.1.1"}}
	for _, tc := range []struct {
		name  string
		cfg   Config
		h     *Hazards
		error string // "" = starts
	}{
		{"no hazards outside a lab", Config{Listen: "10.0.0.1:53", RootHints: []string{"192.0.2.1"}}, nil, ""},
		{"hazards all off", Config{Listen: "10.0.0.1:53"}, &Hazards{}, ""},
		{"sequential IDs in a loopback lab", ok, &Hazards{Lab: labPlan, SequentialIDs: true}, ""},
		{"every hazard in a loopback lab", ok, &Hazards{Lab: labPlan, SequentialIDs: true, FixedPort: 5353, NoBailiwick: true}, ""},
		{"not in a lab", ok, &Hazards{SequentialIDs: true}, "only inside a lab"},
		{"a lab on a remote block", Config{Listen: "10.1.2.5:53", RootHints: []string{"10.1.2.1"}}, &Hazards{Lab: remote, FixedPort: 5353}, "not loopback"},
		{"a block wider than loopback", ok, &Hazards{Lab: wide, NoBailiwick: true}, "not loopback"},
		{"listening outside the lab", Config{Listen: "0.0.0.0:53", RootHints: []string{"127.77.1.1"}}, &Hazards{Lab: labPlan, NoBailiwick: true}, "listen"},
		{"listening on loopback outside the block", Config{Listen: "127.0.0.1:53", RootHints: []string{"127.77.1.1"}}, &Hazards{Lab: labPlan, NoBailiwick: true}, "listen"},
		{"a root outside the lab", Config{Listen: "127.77.1.5:53", RootHints: []string{"198.41.0.4"}}, &Hazards{Lab: labPlan, SequentialIDs: true}, "root_hints[0]"},
		{"a forwarder outside the lab", Config{Listen: "127.77.1.5:53", Forwarders: []string{"9.9.9.9"}}, &Hazards{Lab: labPlan, FixedPort: 5353}, "forwarders[0]"},
		{"root hints from a file", Config{Listen: "127.77.1.5:53", RootHintsFile: "/usr/share/dns/root.hints"}, &Hazards{Lab: labPlan, SequentialIDs: true}, "root_hints_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Hazards = tc.h
			s, err := New(cfg, service.Deps{})
			if tc.error == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.error) {
				t.Fatalf("New = %v, %v; want an error about %q", s, err, tc.error)
			}
			if _, err := NewEngine(cfg, service.Deps{}); err == nil {
				t.Errorf("NewEngine started with %+v", tc.h)
			}
		})
	}
}

// TestHazardsBehaviour: sequential IDs count up by one; without the
// bailiwick hazard a reply's extra sections are not cached, with it its
// NS and addresses replace the cached ones whatever their owner.
func TestHazardsBehaviour(t *testing.T) {
	plan := &lab.Plan{Block: netip.MustParsePrefix("127.77.1.0/24")}
	base := Config{Listen: "127.77.1.5:0", RootHints: []string{"127.77.1.1"}}
	mk := func(h *Hazards) *Engine {
		c := base
		c.Hazards = h
		e, err := NewEngine(c, service.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	seq := mk(&Hazards{Lab: plan, SequentialIDs: true})
	a := seq.queryID()
	for i := 1; i <= 3; i++ {
		if b := seq.queryID(); b != a+uint16(i) {
			t.Fatalf("sequential ID %d after %d, want %d", b, a, a+uint16(i))
		}
	}
	random := mk(nil)
	same := 0
	for a, i := random.queryID(), 0; i < 20; i++ {
		if b := random.queryID(); b == a+1 {
			same++
		} else {
			a = b
		}
	}
	if same > 2 {
		t.Errorf("default IDs look sequential (%d of 20 successors)", same)
	}

	forged := new(dns.Msg)
	forged.SetQuestion("r1.umass.edu.", dns.TypeA)
	forged.Ns = []dns.RR{mustRR(t, "umass.edu. 3600 IN NS dns.umass.edu.")}
	forged.Extra = []dns.RR{mustRR(t, "dns.umass.edu. 3600 IN A 127.77.1.66"), mustRR(t, "www.nyu.edu. 3600 IN A 127.77.1.66")}
	for _, tc := range []struct {
		name   string
		e      *Engine
		cached bool
	}{{"defences on", mk(nil), false}, {"no bailiwick", mk(&Hazards{Lab: plan, NoBailiwick: true}), true}} {
		e := tc.e
		e.putRRs("dns.umass.edu.", dns.TypeA, []dns.RR{mustRR(t, "dns.umass.edu. 3600 IN A 127.77.1.3")}, nil, rankAnswer, verdict{}, e.deps.Now())
		m := forged.Copy()
		e.trustEverything(m)
		sanitize(m, "umass.edu.")
		for _, name := range []string{"dns.umass.edu.", "www.nyu.edu."} {
			got := e.cachedAddrs(name)
			poisoned := len(got) == 1 && got[0].Addr() == netip.MustParseAddr("127.77.1.66")
			if poisoned != tc.cached {
				t.Errorf("%s: %s cached as %v, poisoned %v, want %v", tc.name, name, got, poisoned, tc.cached)
			}
		}
	}
}

func mustRR(t *testing.T, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return rr
}
