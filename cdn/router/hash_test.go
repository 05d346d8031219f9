package router

import (
	"fmt"
	"testing"
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
