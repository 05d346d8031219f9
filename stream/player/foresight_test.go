package player

import (
	"math"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/stream/abr"
	"github.com/applayer/applayer/stream/shape"
)

// seer is a player that sees the link's next Look seconds exactly: before
// each segment it plans the rest of the presentation with the offline
// optimum's own search (model.best from the player's state, the startup
// charged), over a schedule that is the true one for Look seconds and then
// flat at MPC's causal forecast (the larger of the short-term prediction
// and 0.9 x the long-run throughput), and takes the plan's first rung.
// Look 0 is a causal player; an unbounded Look is the offline optimum,
// played segment by segment.
type seer struct {
	sched *shape.Schedule
	clock *SimClock
	t0    time.Time
	look  time.Duration
	mu    float64
	pred  abr.Robust
}

func (*seer) Name() string { return "seer" }

func (o *seer) Choose(s *abr.State) int {
	bw := o.pred.Predict(s.Throughputs)
	if bw <= 0 {
		bw = s.Bitrates[0]
	}
	flat, err := shape.Constant(max(bw, 0.9*abr.LongRun(s, 20)) / 1e6)
	if err != nil {
		panic(err)
	}
	now := o.clock.Now().Sub(o.t0)
	sched := o.sched
	if o.look < time.Hour {
		if sched, err = o.sched.Splice(now+o.look, flat, now+o.look+time.Hour); err != nil {
			panic(err)
		}
	}
	in := OptimumInput{Sched: sched, Bitrates: s.Bitrates, Segments: s.Segments, SegDur: s.SegDur, Mu: o.mu,
		MaxBuffer: s.MaxBuffer, CountStartup: true,
		Size: func(i, r int) float64 { return (s.Bitrates[r] + s.Extra) * s.SegDur / 8 }}
	_, plan := newModel(in).best(pstate{t: now.Seconds(), b: s.Buffer, started: s.Last >= 0, last: s.Last}, s.Index)
	if len(plan) == 0 {
		return 0
	}
	return plan[0]
}

// TestForesight: how much of the offline optimum (startup charged) a
// player reaches on TestSawtoothFamily's 21 sawtooths when it knows the
// link's next L seconds exactly and plans the rest with the optimum's own
// search (seer): the value of foresight, free of any one algorithm's
// planning. It checks the machinery: with the whole schedule known the
// player scores the optimum on every schedule, within 1% (the search
// rounds the buffer to 100 ms, the player does not), so what is lost at
// shorter foresight is the forecast's, not the planner's. It logs the
// curve (docs/BENCHMARKS.md, 2026-12-04: 85.9% with no foresight, 89.1%
// at 6 s, 92.9% at 10 s).
func TestForesight(t *testing.T) {
	if testing.Short() {
		testkit.Skip(t, "84 plays, each re-planned 30 times with the offline search: seconds")
	}
	const n, mu = 30, 2.5
	size := func(i, r int) float64 { return (benchLadder[r] + benchAudio) * 2 / 8 }
	looks := []time.Duration{0, 6 * time.Second, 10 * time.Second, time.Hour}
	sums := make([]float64, len(looks))
	family := sawtoothFamily(t)
	count := len(family)
	for _, f := range family {
		opt, _ := Optimum(OptimumInput{Sched: f.sched, Bitrates: benchLadder, Segments: n, SegDur: 2, Size: size, Mu: mu, MaxBuffer: 30, CountStartup: true})
		for i, look := range looks {
			clock := NewSimClock(time.Unix(1e9, 0))
			alg := &seer{sched: f.sched, clock: clock, t0: clock.Now(), look: look, mu: mu}
			rep := simRunClock(t, benchLadder, benchAudio, n, 2, f.sched, clock, Options{Algorithm: alg, NoAbandon: true})
			q := rep.QoE - mu*rep.Startup
			if look == time.Hour && math.Abs(q-opt) > 0.01*math.Abs(opt) {
				t.Errorf("%s: seeing everything, QoE %.3f, the optimum %.3f", f.spec, q, opt)
			}
			sums[i] += q / opt
		}
	}
	for i, look := range looks {
		t.Logf("foresight %v: %.1f%% of the optimum (startup charged), mean of %d sawtooths", look, 100*sums[i]/float64(count), count)
	}
}
