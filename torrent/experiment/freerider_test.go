package experiment

import (
	"testing"
	"time"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

// TestFreeRiders: with tit-for-tat the peer that never uploads finishes
// last (it gets pieces only from the seed, optimistic unchokes and peers
// that have finished); the same swarm runs without tit-for-tat.
func TestFreeRiders(t *testing.T) {
	c := FreeRiderConfig{FileSize: 8 << 20, SeedUp: 1 << 20, PeerUp: 256 << 10, Peers: 12,
		Dir: t.TempDir(), Block: "127.88.3.", ChokeInterval: time.Second, Timeout: 2 * time.Minute}
	rows, err := FreeRiders(testkit.Context(t, 5*time.Minute), c, service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || !rows[0].TitForTat || rows[1].TitForTat {
		t.Fatalf("rows = %+v, want tit-for-tat on then off", rows)
	}
	for _, r := range rows {
		t.Logf("tit-for-tat %v: cooperative %v (mean %v), free rider %v, place %d of %d",
			r.TitForTat, r.Cooperative, r.Mean(), r.FreeRider, r.Rank(), len(r.Cooperative)+1)
		for i, d := range append(r.Cooperative, r.FreeRider) {
			if d <= 0 {
				t.Errorf("peer %d has no completion time", i)
			}
		}
	}
	if on := rows[0]; on.Rank() != len(on.Cooperative)+1 {
		t.Errorf("with tit-for-tat the free rider finished %d of %d (%v vs cooperative %v), want last",
			on.Rank(), len(on.Cooperative)+1, on.FreeRider, on.Cooperative)
	}
}
