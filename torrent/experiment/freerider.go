package experiment

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/plot"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
	labexp "github.com/applayer/applayer/lab/experiment"
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
	// Peers is the number of cooperative peers. Default 12: well over
	// the choker's Slots, or every interested peer gets a regular slot
	// and tit-for-tat has nothing to decide.
	Peers int
	// Slots is each peer's number of regular unchokes. Default 4.
	Slots int
	// ChokeInterval and OptimisticEvery scale the chapter's 10 s and 30 s
	// down together for a short run. Default 1 s and 3 s.
	ChokeInterval, OptimisticEvery time.Duration
	// Parallel runs the swarm without tit-for-tat at the same time as the
	// one with it, on ParallelBlock (another "127.x.y." prefix): the
	// same measurement in half the time (each swarm uses a few percent of
	// a core; the rates, not the CPU, set their pace).
	Parallel      bool
	ParallelBlock string
}

// Unchokes tallies the choke rounds of the cooperative peers while they
// were leeching, as the trace narrates them ("bittorrent/choke"): how
// often the free rider held a regular slot (for its rate, or at random
// without tit-for-tat), the optimistic slot, or was let into a slot that
// fell free between rounds.
type Unchokes struct {
	Rounds, Regular, Optimistic, FreeSlot int
	// Contested are the rounds in which the choker had to leave an
	// interested peer out (every regular slot taken and an optimistic
	// unchoke left over), and ContestedRegular the free rider's regular
	// slots in them: in the other rounds (at the start, before anyone has
	// traded, and at the end, once most peers have left) every
	// interested peer gets a slot, whatever it uploads.
	Contested, ContestedRegular int
	// Examples are a few of the trace's lines that unchoked the free
	// rider, with their time into the run.
	Examples []string
}

// Progress is one sample of the run: the free rider's fraction of the
// file and the cooperative peers' mean fraction.
type Progress struct {
	T                   time.Duration
	FreeRider, CoopMean float64
}

// FreeRiderRow is one run: each cooperative peer's completion time and
// the free rider's, where the free rider's bytes came from, and what the
// cooperative peers' choker did with it.
type FreeRiderRow struct {
	TitForTat   bool
	Cooperative []time.Duration
	FreeRider   time.Duration
	// FromSeed and FromPeers are the free rider's bytes by source.
	FromSeed, FromPeers int64
	Unchokes            Unchokes
	Progress            []Progress
}

// Mean is the cooperative peers' mean completion time.
func (r FreeRiderRow) Mean() time.Duration {
	var sum time.Duration
	for _, d := range r.Cooperative {
		sum += d
	}
	return sum / time.Duration(max(1, len(r.Cooperative)))
}

// Ratio is the free rider's completion time over the cooperative mean.
func (r FreeRiderRow) Ratio() float64 { return r.FreeRider.Seconds() / max(r.Mean().Seconds(), 1e-9) }

// AtFirstDone is the fraction of the file the free rider had, and the
// cooperative peers' mean fraction, when the first cooperative peer
// completed (the last progress sample before it).
func (r FreeRiderRow) AtFirstDone() (freeRider, coop float64) {
	if len(r.Cooperative) == 0 {
		return 0, 0
	}
	first := slices.Min(r.Cooperative)
	for _, p := range r.Progress {
		if p.T > first {
			break
		}
		freeRider, coop = p.FreeRider, p.CoopMean
	}
	return freeRider, coop
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

// FreeRiders runs the swarm with tit-for-tat and with the regular
// unchokes given at random (tit-for-tat off), the same seed and file each
// time, one after the other (or at once: Parallel). The free rider joins
// with the others and never unchokes anyone; peers leave once complete
// (the seed stays), so what the free rider lacks when the others are done
// it must get from the seed alone. deps.Trace, when set, receives the
// runs' events (the tally subscribes to it; without one it makes its
// own).
func FreeRiders(ctx context.Context, c FreeRiderConfig, deps service.Deps) ([]FreeRiderRow, error) {
	if c.FileSize <= 0 || c.SeedUp <= 0 || c.PeerUp <= 0 || c.Dir == "" || c.Block == "" {
		return nil, errors.New("experiment: size, rates, directory and address block are required")
	}
	if c.Peers <= 0 {
		c.Peers = 12
	}
	if c.Slots <= 0 {
		c.Slots = 4
	}
	if c.ChokeInterval <= 0 {
		c.ChokeInterval = time.Second
	}
	if c.OptimisticEvery <= 0 {
		c.OptimisticEvery = 3 * c.ChokeInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Minute
	}
	if deps.Trace == nil {
		deps.Trace = trace.NewBus(nil)
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
	if c.Parallel && (c.ParallelBlock == "" || c.ParallelBlock == c.Block) {
		return nil, errors.New("experiment: a parallel run needs its own address block")
	}
	run := func(tft bool, block string) (FreeRiderRow, error) {
		base := Config{FileSize: c.FileSize, SeedUp: c.SeedUp, PeerUp: c.PeerUp, Dir: c.Dir, Block: block, Timeout: c.Timeout}
		// runSwarm puts the seed on .2 and leecher i on .(10+i); the
		// free rider is the last leecher.
		seedIP := netip.MustParseAddr(block + "2")
		frIP := netip.MustParseAddr(fmt.Sprintf("%s%d", block, 10+c.Peers))
		peer := swarm.Config{UploadLimit: c.PeerUp, NoTitForTat: !tft, Slots: c.Slots,
			ChokeInterval: config.Duration(c.ChokeInterval), OptimisticEvery: config.Duration(c.OptimisticEvery)}
		leechers := make([]swarm.Config, c.Peers+1)
		for i := range leechers {
			leechers[i] = peer
		}
		leechers[c.Peers].FreeRider = true
		// A plain seed, as in the chapter: an initial seed spreading its
		// pieces (swarm's super-seeding) would hand the free rider pieces
		// no one else has, which muddies the lesson. It rotates its slots
		// round robin (libtorrent's default seed choker): by the rate it
		// uploads to each peer, the peer with the most requests waiting,
		// the free rider, would keep the seed's slots, and the lesson
		// would be about the seed's choker, not tit-for-tat.
		seed := peer
		seed.UploadLimit, seed.NoSuperSeed, seed.SeedChoking = c.SeedUp, true, swarm.SeedRoundRobin
		name := "tft"
		if !tft {
			name = "no-tft"
		}
		row := FreeRiderRow{TitForTat: tft}
		tally := &chokeTally{start: time.Now(), block: block, freeRider: frIP.String() + ":", seed: seedIP.String() + ":", slots: c.Slots}
		cancel := deps.Trace.Subscribe(tally)
		defer cancel()
		times, err := runSwarm(ctx, base, deps, name, seed, leechers, func(el time.Duration, cls []*swarm.Client, final bool) {
			fr := cls[len(cls)-1]
			if final {
				for ip, n := range fr.DownloadedFrom() {
					if ip == seedIP {
						row.FromSeed += n
					} else {
						row.FromPeers += n
					}
				}
				return
			}
			p := Progress{T: el, FreeRider: fraction(fr.Stats())}
			for _, cl := range cls[:len(cls)-1] {
				p.CoopMean += fraction(cl.Stats()) / float64(len(cls)-1)
			}
			row.Progress = append(row.Progress, p)
		})
		if err != nil {
			return row, err
		}
		row.Cooperative, row.FreeRider = times[:c.Peers], times[c.Peers]
		row.Unchokes = tally.result()
		return row, nil
	}
	if !c.Parallel {
		var rows []FreeRiderRow
		for _, tft := range []bool{true, false} {
			row, err := run(tft, c.Block)
			if err != nil {
				return rows, err
			}
			rows = append(rows, row)
		}
		return rows, nil
	}
	rows := make([]FreeRiderRow, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, block := range []string{c.Block, c.ParallelBlock} {
		wg.Go(func() { rows[i], errs[i] = run(i == 0, block) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return rows, nil
}

func fraction(s swarm.Stats) float64 {
	if s.Pieces == 0 {
		return 0
	}
	return float64(s.Have) / float64(s.Pieces)
}

// chokeTally reads the cooperative peers' choke decisions off the trace.
// The summaries are the swarm's: a round is "unchoke [REGULAR...]
// optimistic PEER (rotated B) snubbed [...]; MODE" and a slot filled
// between rounds is "unchoke PEER: ..." or "unchoke PEER in the slot ...".
type chokeTally struct {
	start           time.Time
	block           string // the swarm's "127.x.y." prefix
	freeRider, seed string // "ip:" prefixes
	slots           int

	mu sync.Mutex
	u  Unchokes
}

func (t *chokeTally) Event(e trace.Event) {
	if e.Proto != "bittorrent/choke" || !strings.HasPrefix(e.From, t.block) || strings.HasPrefix(e.From, t.freeRider) || strings.HasPrefix(e.From, t.seed) {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// Up to two lines of each kind: a regular slot, the optimistic one,
	// a freed slot.
	example := func(n int) {
		if n <= 2 {
			t.u.Examples = append(t.u.Examples, fmt.Sprintf("%5.1fs %s: %s", e.Time.Sub(t.start).Seconds(), e.From, e.Summary))
		}
	}
	rest, ok := strings.CutPrefix(e.Summary, "unchoke [")
	if !ok {
		if strings.HasPrefix(e.Summary, "unchoke "+t.freeRider) {
			t.u.FreeSlot++
			example(t.u.FreeSlot)
		}
		return
	}
	regular, rest, _ := strings.Cut(rest, "]")
	_, mode, _ := strings.Cut(rest, "; ")
	if !strings.HasPrefix(mode, "leeching") {
		return
	}
	t.u.Rounds++
	regs := strings.Fields(regular)
	contested := len(regs) == t.slots && !strings.HasPrefix(rest, " optimistic none")
	if contested {
		t.u.Contested++
	}
	for _, p := range regs {
		if strings.HasPrefix(p, t.freeRider) {
			t.u.Regular++
			if contested {
				t.u.ContestedRegular++
			}
			example(t.u.Regular)
		}
	}
	if strings.HasPrefix(rest, " optimistic "+t.freeRider) {
		t.u.Optimistic++
		example(t.u.Optimistic)
	}
}

func (t *chokeTally) result() Unchokes {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.u
	u.Examples = slices.Clone(u.Examples)
	return u
}

// FreeRiderTable writes the runs as a table.
func FreeRiderTable(w io.Writer, rows []FreeRiderRow) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "TIT-FOR-TAT\tCOOPERATIVE MEAN\tFASTEST\tSLOWEST\tFREE RIDER\tFREE RIDER / MEAN\tPLACE\tIT HAD WHEN THE FIRST WAS DONE\tFROM SEED\tREGULAR\tOPTIMISTIC\tFREED SLOT\tROUNDS\t\n")
	for _, r := range rows {
		fr, _ := r.AtFirstDone()
		fmt.Fprintf(tw, "%s\t%.1fs\t%.1fs\t%.1fs\t%.1fs\t%.2f\t%d of %d\t%.0f%%\t%.0f%%\t%d\t%d\t%d\t%d\t\n", onOff(r.TitForTat), r.Mean().Seconds(),
			slices.Min(r.Cooperative).Seconds(), slices.Max(r.Cooperative).Seconds(), r.FreeRider.Seconds(),
			r.Ratio(), r.Rank(), len(r.Cooperative)+1, 100*fr,
			100*float64(r.FromSeed)/float64(max(1, r.FromSeed+r.FromPeers)),
			r.Unchokes.Regular, r.Unchokes.Optimistic, r.Unchokes.FreeSlot, r.Unchokes.Rounds)
	}
	return tw.Flush()
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
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
		chart.Series = append(chart.Series, plot.Series{Name: "tit-for-tat " + onOff(r.TitForTat), X: xs, Y: ys, Points: true})
	}
	if err := chart.Save(paths...); err != nil {
		return fmt.Errorf("experiment: %w", err)
	}
	return nil
}

// FreeRiderProgressPlot draws the fraction of the file the free rider and
// the cooperative peers (their mean) had over time, with and without
// tit-for-tat.
func FreeRiderProgressPlot(rows []FreeRiderRow, paths ...string) error {
	chart := plot.Chart{
		Title:  "Free riding: fraction of the file over time",
		XLabel: "seconds",
		YLabel: "fraction of the file",
	}
	for _, r := range rows {
		var ts, fr, co []float64
		for _, p := range r.Progress {
			ts = append(ts, p.T.Seconds())
			fr = append(fr, p.FreeRider)
			co = append(co, p.CoopMean)
		}
		chart.Series = append(chart.Series,
			plot.Series{Name: "cooperative mean, tit-for-tat " + onOff(r.TitForTat), X: ts, Y: co},
			plot.Series{Name: "free rider, tit-for-tat " + onOff(r.TitForTat), X: ts, Y: fr})
	}
	if err := chart.Save(paths...); err != nil {
		return fmt.Errorf("experiment: %w", err)
	}
	return nil
}

// FreeRidersExperiment is `applayer lab experiment free-riders`: the
// chapter's claim that tit-for-tat starves a free rider except for the
// optimistic unchokes, measured with tit-for-tat on and off. Its rows are
// the free rider's time over the cooperative mean; the quick run's test
// (TestFreeRidersQuick) checks the stated ratios.
func FreeRidersExperiment() labexp.Experiment {
	return labexp.Experiment{
		Name:    "free-riders",
		Summary: "a BitTorrent swarm with one peer that never uploads: tit-for-tat starves it but for optimistic unchokes; without tit-for-tat it keeps up",
		Run: func(ctx context.Context, env labexp.Env) (*labexp.Result, error) {
			r := mrand.New(mrand.NewPCG(env.Seed, env.Seed^0x66726565))
			x, y := 100+r.IntN(100), r.IntN(249)
			c := FreeRiderConfig{FileSize: 8 << 20, SeedUp: 512 << 10, PeerUp: 192 << 10, Peers: 12, Slots: 4,
				ChokeInterval: time.Second, Block: fmt.Sprintf("127.%d.%d.", x, y)}
			if env.Quick {
				// A quarter of the file at half the rates (about half the
				// time), and the two swarms at once: each moves a few
				// hundred blocks a second and uses a few percent of a
				// core. (At a quarter of the rates, as many rounds as the
				// full run, a peer's partners send it a block or none in
				// a round, and the choker's ranking is mostly ties.)
				c.FileSize, c.SeedUp, c.PeerUp = 2<<20, 256<<10, 96<<10
				c.Parallel, c.ParallelBlock = true, fmt.Sprintf("127.%d.%d.", x, y+1)
			}
			dir, err := os.MkdirTemp("", "applayer-experiment-")
			if err != nil {
				return nil, err
			}
			defer os.RemoveAll(dir)
			c.Dir = dir
			fmt.Fprintf(env.Stdout, "free-riders: F = %d KiB, seed u_s = %d KiB/s, %d cooperative peers at u = %d KiB/s and one free rider that never uploads\n"+
				"(peers leave once complete, as most do; the seed stays and rotates its slots round robin); each peer unchokes %d peers for their rate,\n"+
				"re-evaluated every %v, plus one optimistic unchoke rotated every %v (the chapter's 4, 10 s and 30 s, time scaled alike).\n"+
				"Run with tit-for-tat and with the regular slots given at random%s.\n\n",
				c.FileSize>>10, c.SeedUp>>10, c.Peers, c.PeerUp>>10, c.Slots, c.ChokeInterval, 3*c.ChokeInterval,
				map[bool]string{true: " (the two swarms at once)", false: " (one after the other)"}[c.Parallel])
			rows, err := FreeRiders(ctx, c, env.Deps)
			if err != nil {
				return nil, err
			}
			if err := FreeRiderTable(env.Stdout, rows); err != nil {
				return nil, err
			}
			fmt.Fprintln(env.Stdout)
			res := &labexp.Result{Plots: []string{env.Path("free-riders.png"), env.Path("free-riders.svg"),
				env.Path("free-riders-progress.png"), env.Path("free-riders-progress.svg")}}
			for _, row := range rows {
				u := row.Unchokes
				fmt.Fprintf(env.Stdout, "tit-for-tat %s: the free rider got %.0f%% of its bytes from the seed, %.0f%% from peers; in the cooperative peers'\n"+
					"%d choke rounds while leeching it held a regular slot %d times (%d of them in the %d contested rounds) and the optimistic slot %d times\n"+
					"(a freed slot %d times). From the trace:\n",
					onOff(row.TitForTat), 100*float64(row.FromSeed)/float64(max(1, row.FromSeed+row.FromPeers)),
					100*float64(row.FromPeers)/float64(max(1, row.FromSeed+row.FromPeers)), u.Rounds, u.Regular, u.ContestedRegular, u.Contested, u.Optimistic, u.FreeSlot)
				for _, ex := range u.Examples {
					fmt.Fprintf(env.Stdout, "  %s\n", ex)
				}
				// Not a formula: the cooperative peers' mean, beside the
				// free rider's time.
				res.Rows = append(res.Rows, labexp.Row{Case: "free rider's time vs the cooperative mean, tit-for-tat " + onOff(row.TitForTat),
					Measured: row.FreeRider.Seconds(), Formula: row.Mean().Seconds(), Unit: "s"})
			}
			// Last or not: the free rider beside the slowest cooperative
			// peer.
			for _, row := range rows {
				res.Rows = append(res.Rows, labexp.Row{Case: "free rider's time vs the slowest cooperative peer's, tit-for-tat " + onOff(row.TitForTat),
					Measured: row.FreeRider.Seconds(), Formula: slices.Max(row.Cooperative).Seconds(), Unit: "s"})
			}
			// Its place among all the peers by completion time (formula:
			// last).
			for _, row := range rows {
				res.Rows = append(res.Rows, labexp.Row{Case: "free rider's place by completion time (1: first), tit-for-tat " + onOff(row.TitForTat),
					Measured: float64(row.Rank()), Formula: float64(len(row.Cooperative) + 1), Unit: "place"})
			}
			// How far behind it was while the others traded: its fraction
			// of the file when the first cooperative peer completed,
			// beside theirs.
			for _, row := range rows {
				fr, coop := row.AtFirstDone()
				res.Rows = append(res.Rows, labexp.Row{Case: "free rider's fraction of the file when the first cooperative peer completed vs theirs, tit-for-tat " + onOff(row.TitForTat),
					Measured: fr, Formula: coop, Unit: "of the file"})
			}
			// The mechanism itself: the share of the cooperative peers'
			// contested choke rounds in which the free rider held a
			// regular slot. With tit-for-tat the slots go by rate and it
			// sends nothing (formula 0); without, they go at random among
			// the Peers interested neighbours (Slots/Peers).
			for _, row := range rows {
				want := 0.0
				if !row.TitForTat {
					want = float64(c.Slots) / float64(c.Peers)
				}
				res.Rows = append(res.Rows, labexp.Row{Case: "free rider's share of regular slots in contested rounds, tit-for-tat " + onOff(row.TitForTat),
					Measured: float64(row.Unchokes.ContestedRegular) / float64(max(1, row.Unchokes.Contested)), Formula: want, Unit: "of rounds"})
			}
			fmt.Fprintln(env.Stdout)
			if err := FreeRiderPlot(rows, res.Plots[:2]...); err != nil {
				return nil, err
			}
			if err := FreeRiderProgressPlot(rows, res.Plots[2:]...); err != nil {
				return nil, err
			}
			return res, labexp.WriteTable(env.Stdout, res.Rows)
		},
	}
}
