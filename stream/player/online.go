package player

import (
	"errors"
	"math"
	"time"

	"github.com/applayer/applayer/stream/shape"
)

// Bound is OnlineBound's answer.
type Bound struct {
	// Ratio is the largest share of the offline optimum a causal player
	// can reach on every schedule of the family at once (an upper bound:
	// after the branch the player is told which schedule it is on).
	Ratio float64
	// Prefix is the common decisions (rungs chosen before the branch)
	// that reach it.
	Prefix []int
	// Ratios and Optima are, per schedule, the share reached with Prefix
	// and the schedule's own offline optimum.
	Ratios, Optima []float64
}

// OnlineBound bounds what any causal player (one that sees only the
// past) can guarantee over a family of schedules identical until branch
// seconds: its decisions before branch are the same on all of them (it
// cannot tell them apart), so the best it can guarantee is the maximum,
// over those common decisions, of the minimum over the family of its QoE
// over that schedule's optimum. The player is credited with the best
// continuation on each schedule once the branch is passed (as if it were
// told which one it is on), so the bound is generous: no causal player
// does better on all of them. Sched in the input is ignored; the
// playback model is Optimum's (the player's). Common decisions are
// enumerated by dynamic programming merging states of equal rung,
// initialization segments fetched, buffer and time (in 50 ms).
func OnlineBound(in OptimumInput, family []*shape.Schedule, branch float64) (Bound, error) {
	if len(family) == 0 || in.Segments == 0 || len(in.Bitrates) == 0 {
		return Bound{}, errors.New("player: an empty family or presentation")
	}
	for _, s := range family[1:] {
		for at := 0.0; at < branch; at += 0.01 {
			d := time.Duration(at * float64(time.Second))
			if s.Rate(d) != family[0].Rate(d) {
				return Bound{}, errors.New("player: the family's schedules differ before the branch")
			}
		}
	}
	mds := make([]model, len(family))
	out := Bound{Ratio: math.Inf(-1), Ratios: make([]float64, len(family)), Optima: make([]float64, len(family))}
	for c, s := range family {
		ci := in
		ci.Sched = s
		mds[c] = newModel(ci)
		out.Optima[c], _ = mds[c].best(pstate{last: -1}, 0)
	}
	type node struct {
		pstate
		plan []int
	}
	// leaf scores the common decisions plan, whose state on schedule c
	// before segment k is at(c).
	// The schedule that last fell below the best so far goes first: it
	// usually ends the leaf's evaluation after one search.
	order := make([]int, len(family))
	for c := range order {
		order[c] = c
	}
	leaf := func(plan []int, k int, at func(c int) pstate) {
		worst := math.Inf(1)
		ratios := make([]float64, len(family))
		for i, c := range order {
			q, _ := mds[c].best(at(c), k)
			ratios[c] = q / out.Optima[c]
			worst = min(worst, ratios[c])
			if worst <= out.Ratio {
				copy(order[1:i+1], order[:i])
				order[0] = c
				return
			}
		}
		out.Ratio, out.Prefix, out.Ratios = worst, append([]int(nil), plan...), ratios
	}
	type key struct {
		last, bb, tb int
		started      bool
		inits        uint64
	}
	const step = 0.05
	layer := []node{{pstate: pstate{last: -1}}}
	md := mds[0]
	for k := 0; len(layer) > 0; k++ {
		best := map[key]int{}
		var next []node
		for _, nd := range layer {
			if k == in.Segments {
				leaf(nd.plan, k, func(int) pstate { return nd.pstate })
				continue
			}
			if over := nd.b - (md.maxBf - in.SegDur); nd.t+max(over, 0) >= branch {
				leaf(nd.plan, k, func(int) pstate { return nd.pstate }) // the next decision comes after the branch
				continue
			}
			for r := range in.Bitrates {
				ns, _, _, _ := md.next(nd.pstate, k, r)
				plan := append(append([]int(nil), nd.plan...), r)
				if ns.t > branch { // the download runs past the branch: the last common decision
					leaf(plan, k+1, func(c int) pstate { s, _, _, _ := mds[c].next(nd.pstate, k, r); return s })
					continue
				}
				kk := key{r, int(math.Round(ns.b / step)), int(math.Round(ns.t / step)), ns.started, ns.inits}
				if j, ok := best[kk]; ok {
					if next[j].q < ns.q {
						next[j] = node{ns, plan}
					}
					continue
				}
				best[kk] = len(next)
				next = append(next, node{ns, plan})
			}
		}
		layer = next
	}
	return out, nil
}
