package player

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/stream/abr"
	"github.com/applayer/applayer/stream/shape"
)

// fixedPlan plays a given rung per segment.
type fixedPlan []int

func (fixedPlan) Name() string              { return "plan" }
func (p fixedPlan) Choose(s *abr.State) int { return p[s.Index] }

// TestOptimumPlanPlayable: the offline optimum honours the player's own
// constraints, no looser: the player itself, handed the optimum's plan
// (abandonment off), plays it on the simulated network to the optimum's
// QoE_lin, on every bench schedule, with the startup free and charged,
// initialization segments (audio and each rung's) and audio segments
// fetched as the player fetches them. Replay of the plan agrees too.
func TestOptimumPlanPlayable(t *testing.T) {
	const n, segDur, mu = 30, 2.0, 2.5
	const initV, initA = 20000.0, 15000.0 // bytes: large, so a model without them would show
	data := simMPDAudio(t, benchLadder, benchAudio, n, segDur)
	size := func(i, r int) float64 { return (benchLadder[r] + benchAudio) * segDur / 8 }
	for name, sched := range benchSchedules(t) {
		for _, charged := range []bool{false, true} {
			in := OptimumInput{Sched: sched, Bitrates: benchLadder, Segments: n, SegDur: segDur, Size: size, Mu: mu, MaxBuffer: 30,
				Init: func(int) float64 { return initV }, FirstExtra: initA, CountStartup: charged}
			opt, plan := Optimum(in)
			if q, _ := Replay(in, plan); math.Abs(q-opt) > 1e-9 {
				t.Errorf("%s: Replay %.4f, Optimum %.4f", name, q, opt)
			}
			clock := NewSimClock(time.Unix(1e9, 0))
			net := &SimNet{Clock: clock, Sched: sched,
				Body: func(u string) ([]byte, bool) { return data, strings.HasSuffix(u, ".mpd") },
				Size: func(u string) (int64, error) {
					f := u[strings.LastIndex(u, "/")+1:]
					var r, k int
					switch {
					case f == "init-a0.m4s":
						return initA, nil
					case strings.HasPrefix(f, "init-"):
						return initV, nil
					case strings.HasPrefix(f, "seg-a0-"):
						return int64(benchAudio * segDur / 8), nil
					}
					if _, err := fmt.Sscanf(f, "seg-v%d-%d.m4s", &r, &k); err != nil {
						return 0, fmt.Errorf("no such object %s", u)
					}
					return int64(benchLadder[r] * segDur / 8), nil
				}}
			rep, err := Play(context.Background(), "http://sim.test/v/manifest.mpd", Options{Fetcher: net, Clock: clock, Algorithm: fixedPlan(plan), NoAbandon: true, Mu: mu})
			if err != nil {
				t.Fatal(err)
			}
			got := rep.QoE
			if charged {
				got -= mu * rep.Startup
			}
			t.Logf("%s, startup charged %v: optimum %.4f, the player playing its plan %.4f", name, charged, opt/n, got/n)
			if math.Abs(got-opt) > 1e-3 {
				t.Errorf("%s, startup charged %v: the player playing the optimum's plan %v scores %.4f, the optimum says %.4f", name, charged, plan, got, opt)
			}
		}
	}
}

// TestOptimumStateMerge: Optimum merges plans reaching the same rung and
// buffer (100 ms) and keeps the better; a finer search that also keeps
// the time (buffer in 20 ms, time in 50 ms) finds no better plan on the
// bench's sawtooth, startup free and charged, so the reference is not
// lowered by the merging (on step and commute the optimum plays the top
// rung throughout, which no plan beats; the same search agreed there
// too when this was written, in a few seconds more).
func TestOptimumStateMerge(t *testing.T) {
	if testing.Short() {
		testkit.Skip(t, "the fine search takes seconds")
	}
	size := func(i, r int) float64 { return (benchLadder[r] + benchAudio) * 2 / 8 }
	for _, name := range []string{"sawtooth"} {
		sched := benchSchedules(t)[name]
		for _, charged := range []bool{false, true} {
			in := OptimumInput{Sched: sched, Bitrates: benchLadder, Segments: 30, SegDur: 2, Size: size, Mu: 2.5, MaxBuffer: 30, CountStartup: charged}
			q, _ := Optimum(in)
			fine := optimumFine(in, 0.02, 0.05)
			if fine > q+1e-6 {
				t.Errorf("%s, startup charged %v: the fine search finds %.4f per chunk, Optimum %.4f", name, charged, fine/30, q/30)
			}
		}
	}
}

// optimumFine is Optimum keeping the time in the state too.
func optimumFine(in OptimumInput, bstep, tstep float64) float64 {
	md := newModel(in)
	type key struct {
		rung, bb, tb int
		started      bool
	}
	layer := []pstate{{last: -1}}
	for k := range in.Segments {
		best := map[key]int{}
		var next []pstate
		for _, s := range layer {
			for r := range in.Bitrates {
				ns, _, _, _ := md.next(s, k, r)
				kk := key{r, int(ns.b / bstep), int(ns.t / tstep), ns.started}
				if j, ok := best[kk]; ok {
					if next[j].q < ns.q {
						next[j] = ns
					}
					continue
				}
				best[kk] = len(next)
				next = append(next, ns)
			}
		}
		layer = next
	}
	q := math.Inf(-1)
	for _, s := range layer {
		q = max(q, s.q)
	}
	return q
}

// TestOnlineBound: on one schedule the bound is the optimum itself (1).
// A pair identical for its first second at 3 Mbit/s, of which one falls
// to 0.4 Mbit/s: before the branch a player cannot tell them apart, and
// a top-rung segment (1.7 s at 3 Mbit/s) started then takes seconds on
// the second, so the best it can do is fill the second with lowest-rung
// segments (0.2 s each) and only then climb: at most 54% of the first
// schedule's optimum. The bound is what its own prefix guarantees, and
// no other prefix (the top rung first) guarantees more.
func TestOnlineBound(t *testing.T) {
	rungs := []float64{0.3e6, 2.5e6}
	in := OptimumInput{Bitrates: rungs, Segments: 10, SegDur: 2, Mu: 2.5, MaxBuffer: 30, CountStartup: true}
	three := constant(t, 3)
	b, err := OnlineBound(in, []*shape.Schedule{three}, 5)
	if err != nil || math.Abs(b.Ratio-1) > 1e-9 {
		t.Fatalf("one schedule: bound %v (%v), want 1", b.Ratio, err)
	}
	drop, err := three.Splice(time.Second, constant(t, 0.4), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	family := []*shape.Schedule{three, drop}
	b, err = OnlineBound(in, family, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bound %.3f with prefix %v: ratios %.3f, optima %.2f", b.Ratio, b.Prefix, b.Ratios, b.Optima)
	// guarantee is the worst share of the optimum over the family after
	// the common decisions prefix, each schedule then played at its best.
	guarantee := func(prefix []int) float64 {
		worst := math.Inf(1)
		for c, s := range family {
			ci := in
			ci.Sched = s
			md := newModel(ci)
			st := pstate{last: -1}
			for k, r := range prefix {
				st, _, _, _ = md.next(st, k, r)
			}
			q, _ := md.best(st, len(prefix))
			worst = min(worst, q/b.Optima[c])
		}
		return worst
	}
	if want := 11.3 / 20.83; math.Abs(b.Ratio-want) > 0.01 || !slices.Equal(b.Prefix, []int{0, 0, 0, 0, 0}) {
		t.Errorf("bound %.3f with prefix %v, want %.3f with five lowest-rung segments", b.Ratio, b.Prefix, want)
	}
	if g := guarantee(b.Prefix); math.Abs(g-b.Ratio) > 1e-9 {
		t.Errorf("the bound's prefix guarantees %.4f, the bound says %.4f", g, b.Ratio)
	}
	if g := guarantee([]int{1}); g > b.Ratio {
		t.Errorf("the top rung first guarantees %.3f, above the bound %.3f", g, b.Ratio)
	}
	if _, err := OnlineBound(in, []*shape.Schedule{three, constant(t, 2)}, 1); err == nil {
		t.Error("a family that differs before the branch was accepted")
	}
}
