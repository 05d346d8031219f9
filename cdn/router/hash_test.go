package router

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/dnsserver"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
)

// TestConsistentHashingKeepsObjects: with four edges in a cluster, when
// one leaves only the objects it held move; every other object keeps its
// edge (and its warm cache). Objects spread over all four.
func TestConsistentHashingKeepsObjects(t *testing.T) {
	var edges []*edgeState
	for i := range 4 {
		name := fmt.Sprintf("edge%d.umass", i)
		edges = append(edges, &edgeState{name: name, hash: hashString(name)})
	}
	all := func(*edgeState) bool { return true }
	const n = 10000
	before := make([]int, n)
	count := make([]int, len(edges))
	for i := range n {
		before[i] = pick(hashString(fmt.Sprintf("seg-%d.kingcdn.com.", i)), edges, all)
		count[before[i]]++
	}
	for i, c := range count {
		if c < n/4*8/10 || c > n/4*12/10 {
			t.Errorf("edge %d holds %d of %d objects (want about a quarter)", i, c, n)
		}
	}
	gone := 2
	without := func(e *edgeState) bool { return e != edges[gone] }
	moved := 0
	for i := range n {
		after := pick(hashString(fmt.Sprintf("seg-%d.kingcdn.com.", i)), edges, without)
		if after == gone {
			t.Fatal("picked the edge that left")
		}
		if before[i] != gone && after != before[i] {
			t.Fatalf("object %d moved from %d to %d though its edge stayed", i, before[i], after)
		}
		if after != before[i] {
			moved++
		}
	}
	if moved != count[gone] {
		t.Errorf("%d objects moved, want exactly the %d of the edge that left", moved, count[gone])
	}
	t.Logf("edge %d left: %d of %d objects moved (%.1f%%), the rest kept their edge", gone, moved, n, 100*float64(moved)/n)
}

func TestHashIgnoresCase(t *testing.T) {
	if hashBytes([]byte("\x05Video\x07KingCDN\x03com\x00")) != hashBytes([]byte("\x05video\x07kingcdn\x03com\x00")) {
		t.Error("names differing in case hash differently")
	}
}

// TestDecisionSummaryFitsTheTraceSchema: the longest decision (a 253-byte
// name, eight clusters skipped) is cut to the schema's summary limit.
func TestDecisionSummaryFitsTheTraceSchema(t *testing.T) {
	var yaml strings.Builder
	yaml.WriteString("clusters:\n")
	for i := range 9 {
		fmt.Fprintf(&yaml, "  - {name: cluster-with-a-long-name-%d, edges: [{name: e, addr: 192.0.2.%d}]}\n", i, i+1)
	}
	m, err := ParseMap([]byte(yaml.String()))
	if err != nil {
		t.Fatal(err)
	}
	bus := trace.NewBus(nil)
	var got []trace.Event
	defer bus.Subscribe(trace.SinkFunc(func(e trace.Event) { got = append(got, e) }))()
	s, err := New(Config{Addr: "127.0.0.1:0", Domain: "kingcdn.com", Map: m}, service.Deps{Trace: bus})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range s.t.clusters {
		if i < 8 {
			c.edges[0].up.Store(false)
		}
	}
	name := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + "." + strings.Repeat("d", 55) + ".kingcdn.com."
	q := new(dns.Msg)
	q.SetQuestion(name, dns.TypeA)
	wire, _ := q.Pack()
	s.Respond(&dnsserver.Request{Wire: wire, From: netip.MustParseAddrPort("127.0.0.1:5353"), Local: "127.0.0.1:53", Now: time.Unix(1, 0)}, nil)
	var route *trace.Event
	for i := range got {
		if got[i].Proto == "cdn/route" {
			route = &got[i]
		}
	}
	if route == nil {
		t.Fatal("no decision traced")
	}
	if err := trace.Validate(*route); err != nil {
		t.Errorf("%v: %q", err, route.Summary)
	}
}
