package experiment

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/plot"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/torrent/swarm"
)

// FreeRiderConfig is the chapter's free-rider lesson: a swarm of Peers
// cooperative peers and one that never uploads, run with tit-for-tat and
// again without it.
type FreeRiderConfig struct {
	// FileSize, SeedUp, PeerUp, Dir, Block and Timeout are as in Config.
	FileSize       int64
	SeedUp, PeerUp int
	Dir, Block     string
	Timeout        time.Duration
	// Peers is the number of cooperative peers. Default 6: more than the
	// choker's Slots, or every interested peer gets a regular slot and
	// tit-for-tat has nothing to decide.
	Peers int
	// Slots is each peer's number of regular unchokes. Default 4.
	Slots int
	// ChokeInterval and OptimisticEvery scale the chapter's 10 s and 30 s
	// down together for a short run. Default 2 s and 6 s.
	ChokeInterval, OptimisticEvery time.Duration
}

// FreeRiderRow is one run: each cooperative peer's completion time and
// the free rider's.
type FreeRiderRow struct {
	TitForTat   bool
	Cooperative []time.Duration
	FreeRider   time.Duration
}

// Mean is the cooperative peers' mean completion time.
func (r FreeRiderRow) Mean() time.Duration {
	var sum time.Duration
	for _, d := range r.Cooperative {
		sum += d
	}
	return sum / time.Duration(max(1, len(r.Cooperative)))
}

// Rank is the free rider's place among all the peers by completion time
// (1: first; len(Cooperative)+1: last).
func (r FreeRiderRow) Rank() int {
	rank := 1
	for _, d := range r.Cooperative {
		if d < r.FreeRider {
			rank++
		}
	}
	return rank
}

// FreeRiders runs the swarm with tit-for-tat, then with the regular
// unchokes given at random (tit-for-tat off), the same seed and file each
// time.
func FreeRiders(ctx context.Context, c FreeRiderConfig, deps service.Deps) ([]FreeRiderRow, error) {
	if c.FileSize <= 0 || c.SeedUp <= 0 || c.PeerUp <= 0 || c.Dir == "" || c.Block == "" {
		return nil, errors.New("experiment: size, rates, directory and address block are required")
	}
	if c.Peers <= 0 {
		c.Peers = 6
	}
	if c.Slots <= 0 {
		c.Slots = 4
	}
	if c.ChokeInterval <= 0 {
		c.ChokeInterval = 2 * time.Second
	}
	if c.OptimisticEvery <= 0 {
		c.OptimisticEvery = 3 * c.ChokeInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Minute
	}
	seedDir := filepath.Join(c.Dir, "seed")
	if err := os.MkdirAll(seedDir, 0o755); err != nil {
		return nil, fmt.Errorf("experiment: %w", err)
	}
	data := make([]byte, c.FileSize)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(seedDir, "file.bin"), data, 0o644); err != nil {
		return nil, fmt.Errorf("experiment: %w", err)
	}
	base := Config{FileSize: c.FileSize, SeedUp: c.SeedUp, PeerUp: c.PeerUp, Dir: c.Dir, Block: c.Block, Timeout: c.Timeout}
	var rows []FreeRiderRow
	for _, tft := range []bool{true, false} {
		peer := swarm.Config{UploadLimit: c.PeerUp, NoTitForTat: !tft, Slots: c.Slots,
			ChokeInterval: config.Duration(c.ChokeInterval), OptimisticEvery: config.Duration(c.OptimisticEvery)}
		leechers := make([]swarm.Config, c.Peers+1)
		for i := range leechers {
			leechers[i] = peer
		}
		// The free rider is last: it joins with the others and never
		// unchokes anyone.
		leechers[c.Peers].FreeRider = true
		seed := swarm.Config{UploadLimit: c.SeedUp, NoTitForTat: !tft, Slots: c.Slots,
			ChokeInterval: config.Duration(c.ChokeInterval), OptimisticEvery: config.Duration(c.OptimisticEvery)}
		run := "tft"
		if !tft {
			run = "no-tft"
		}
		times, err := runSwarm(ctx, base, deps, run, seed, leechers)
		if err != nil {
			return rows, err
		}
		rows = append(rows, FreeRiderRow{TitForTat: tft, Cooperative: times[:c.Peers], FreeRider: times[c.Peers]})
	}
	return rows, nil
}

// FreeRiderTable writes the runs as a table.
func FreeRiderTable(w io.Writer, rows []FreeRiderRow) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "TIT-FOR-TAT\tCOOPERATIVE MEAN\tFASTEST\tSLOWEST\tFREE RIDER\tFREE RIDER / MEAN\tFREE RIDER'S PLACE\t\n")
	for _, r := range rows {
		on := "on"
		if !r.TitForTat {
			on = "off"
		}
		fmt.Fprintf(tw, "%s\t%.1fs\t%.1fs\t%.1fs\t%.1fs\t%.2f\t%d of %d\t\n", on, r.Mean().Seconds(),
			slices.Min(r.Cooperative).Seconds(), slices.Max(r.Cooperative).Seconds(), r.FreeRider.Seconds(),
			r.FreeRider.Seconds()/r.Mean().Seconds(), r.Rank(), len(r.Cooperative)+1)
	}
	return tw.Flush()
}

// FreeRiderPlot draws each peer's completion time, cooperative peers then
// the free rider, with and without tit-for-tat.
func FreeRiderPlot(rows []FreeRiderRow, paths ...string) error {
	chart := plot.Chart{
		Title:  "Free riding: completion time per peer (the last is the free rider)",
		XLabel: "peer (cooperative 1..N, then the free rider)",
		YLabel: "seconds",
	}
	for _, r := range rows {
		var xs, ys []float64
		for i, d := range append(slices.Clone(r.Cooperative), r.FreeRider) {
			xs = append(xs, float64(i+1))
			ys = append(ys, d.Seconds())
		}
		name := "tit-for-tat on"
		if !r.TitForTat {
			name = "tit-for-tat off"
		}
		chart.Series = append(chart.Series, plot.Series{Name: name, X: xs, Y: ys, Points: true, Dashed: !r.TitForTat})
	}
	if err := chart.Save(paths...); err != nil {
		return fmt.Errorf("experiment: %w", err)
	}
	return nil
}
