package abr

import "math"

// MPC is robust model-predictive control with a long plan: the rung
// sequence maximizing QoE_lin over the next Horizon segments (to the end
// of the presentation when it is nearer), found by dynamic programming,
// whose first rung is taken. The plan's first Near segments download at
// the short-term prediction (Predictor); the rest at the larger of that
// and the long-run throughput (LongRun over LongWindow seconds of
// downloads, times LongFactor). So a dip (a tunnel, a sawtooth's trough)
// that a full buffer rides out does not pull the whole plan down, the way
// robustMPC's five-segment plan at the short prediction does, and a plan
// that reaches the end of the presentation spends the buffer it would
// otherwise leave unplayed.
type MPC struct {
	// Horizon is how many segments ahead it plans. Default 30.
	Horizon int
	// Near is how many of the plan's first segments use the short-term
	// prediction alone. Default 3.
	Near int
	// LongWindow is the long-run estimate's window, seconds of download
	// time. Default 20; negative: no long-run estimate (robustMPC: the
	// short-term prediction for the whole plan).
	LongWindow float64
	// LongFactor discounts the long-run estimate. Default 0.9.
	LongFactor float64
	// Mu is QoE_lin's rebuffering penalty per second (in Mbit/s units).
	// Default the top rung's rate in Mbit/s.
	Mu float64
	// Safety keeps the first move from planning a stall: with media
	// buffered, a rung above the lowest is chosen only if its segment
	// would arrive before the buffer empties at the prediction lowered by
	// Safety (a fraction). QoE_lin alone trades a short stall for a
	// higher rung; a stall the lowest rung avoids is worse to watch than
	// the score says. Default 0.15; negative: off.
	Safety float64
	// Predictor predicts throughput. Default a Robust harmonic mean.
	Predictor *Robust
	// Discount weighs the plan's segment j's QoE by Discount^j. Without
	// it a plan to the end of the presentation is indifferent to when a
	// rung is played, and of equal plans the one that builds buffer at
	// the lowest rung first and spends it on higher rungs later wins (one
	// switch instead of several): re-planned each segment, "later" keeps
	// moving on, and the player sat at the lowest rung while a higher one
	// was sustainable (on the sawtooth for the first 8 segments at 0.8-1.5
	// Mbit/s, buffer growing to 10 s). Default 0.98; negative: none.
	Discount float64
}

// Name implements Algorithm.
func (*MPC) Name() string { return "mpc" }

// Robust predicts the next throughput as the harmonic mean of the last
// Window samples divided by 1 + the largest relative over-prediction of
// its last Window predictions (robustMPC's lower bound), the error capped
// at MaxError: after a sudden drop (20 to 1 Mbit/s, an error of 19) the
// uncapped discount would predict 50 kbit/s and throw away a full buffer.
//
// The defaults (4 samples, 15% cap, over-predictions only) were chosen on
// the simulated clock over the bench's step, sawtooth and commute
// schedules and eight synthetic Markov traces (docs/BENCHMARKS.md), from
// robustMPC's 5 samples and symmetric error, which lagged behind rising
// throughput and kept discounting after it rose.
type Robust struct {
	// Window is how many samples the harmonic mean and the error cover.
	// Default 4.
	Window int
	// MaxError caps the relative error. Default 0.15 (at most 13% off the
	// harmonic mean); negative: no cap.
	MaxError float64
	// Symmetric counts under-predictions as errors too (robustMPC's
	// |predicted - actual| / actual). By default only over-predictions
	// count: a throughput that rose is no reason to predict lower.
	Symmetric   bool
	predictions []float64
	errors      []float64
	seen        int
}

func (p *Robust) maxError() float64 {
	switch {
	case p.MaxError < 0:
		return math.Inf(1)
	case p.MaxError == 0:
		return 0.15
	}
	return p.MaxError
}

// Predict returns the prediction for the next segment after observing
// history (throughputs, oldest first).
func (p *Robust) Predict(history []float64) float64 {
	w := p.Window
	if w == 0 {
		w = 4
	}
	// Score the previous prediction against what happened.
	for p.seen < len(history) {
		if p.seen < len(p.predictions) && p.predictions[p.seen] > 0 {
			actual := history[p.seen]
			e := (p.predictions[p.seen] - actual) / actual
			if p.Symmetric {
				e = math.Abs(e)
			}
			p.errors = append(p.errors, max(e, 0))
		}
		p.seen++
	}
	hm := HarmonicMean(history, w)
	maxErr := 0.0
	errs := p.errors
	if len(errs) > w {
		errs = errs[len(errs)-w:]
	}
	for _, e := range errs {
		maxErr = max(maxErr, e)
	}
	for len(p.predictions) < len(history) {
		p.predictions = append(p.predictions, 0)
	}
	p.predictions = append(p.predictions[:len(history)], hm)
	return hm / (1 + min(maxErr, p.maxError()))
}

// LongRun is the throughput over the newest downloads covering window
// seconds of download time (their bits over their seconds: the time
// average while downloads run back to back), or the harmonic mean of all
// samples without Times.
func LongRun(s *State, window float64) float64 {
	if len(s.Times) != len(s.Throughputs) {
		return HarmonicMean(s.Throughputs, len(s.Throughputs))
	}
	var bits, secs float64
	for i := len(s.Times) - 1; i >= 0 && secs < window; i-- {
		bits += s.Throughputs[i] * s.Times[i]
		secs += s.Times[i]
	}
	if secs <= 0 {
		return 0
	}
	return bits / secs
}

// Choose implements Algorithm.
func (m *MPC) Choose(s *State) int {
	if m.Predictor == nil {
		m.Predictor = &Robust{}
	}
	bw := m.Predictor.Predict(s.Throughputs)
	if bw <= 0 {
		return 0
	}
	if m.LongWindow < 0 {
		return m.ChooseFor(s, bw)
	}
	win, lf, near := m.LongWindow, m.LongFactor, m.Near
	if win == 0 {
		win = 20
	}
	if lf == 0 {
		lf = 0.9
	}
	if near == 0 {
		near = 3
	}
	far := max(bw, lf*LongRun(s, win))
	return m.plan(s, func(j int) float64 {
		if j < near {
			return bw
		}
		return far
	})
}

// ChooseFor is MPC's choice for a given throughput prediction (bit/s): the
// first rung of the plan over the horizon maximizing QoE_lin.
func (m *MPC) ChooseFor(s *State, bw float64) int {
	return m.plan(s, func(int) float64 { return bw })
}

// plan is the first rung of the plan over the horizon that maximizes
// QoE_lin when segment j of the plan downloads at bw(j) bit/s, found by
// dynamic programming over (last rung, buffer level in 50 ms steps): of
// the plans reaching the same state, the one with the higher QoE (then
// the fuller buffer) goes on.
func (m *MPC) plan(s *State, bw func(j int) float64) int {
	h := m.Horizon
	if h == 0 {
		h = 30
	}
	if s.Segments > 0 {
		h = min(h, s.Segments-s.Index)
	}
	if h <= 0 {
		return max(s.Last, 0)
	}
	mu := m.Mu
	if mu == 0 {
		mu = s.Bitrates[len(s.Bitrates)-1] / 1e6
	}
	n := len(s.Bitrates)
	maxBuf := s.MaxBuffer
	if maxBuf == 0 {
		maxBuf = math.Inf(1)
	}
	safety := m.Safety
	if safety == 0 {
		safety = 0.15
	}
	type node struct {
		q, buf      float64
		last, first int
	}
	type key struct{ last, bucket int }
	const step = 0.05
	layer := []node{{buf: s.Buffer, last: s.Last, first: -1}}
	disc := m.Discount
	switch {
	case disc == 0:
		disc = 0.98
	case disc < 0:
		disc = 1
	}
	w := 1.0
	for depth := range h {
		if depth > 0 {
			w *= disc
		}
		b := bw(depth)
		index := map[key]int{}
		var next []node
		for _, nd := range layer {
			for r := range n {
				dl := s.size(s.Index+depth, r) * 8 / b
				if depth == 0 && r > 0 && safety > 0 && nd.buf > 0 && dl/(1-min(safety, 0.99)) > nd.buf {
					continue
				}
				rebuf := math.Max(dl-nd.buf, 0)
				nb := math.Min(math.Max(nd.buf-dl, 0)+s.SegDur, maxBuf)
				g := s.Bitrates[r]/1e6 - mu*rebuf
				if nd.last >= 0 {
					g -= math.Abs(s.Bitrates[r]-s.Bitrates[nd.last]) / 1e6
				}
				nq := nd.q + w*g
				first := nd.first
				if depth == 0 {
					first = r
				}
				c := node{q: nq, buf: nb, last: r, first: first}
				k := key{r, int(nb / step)}
				if i, ok := index[k]; ok {
					if o := next[i]; o.q > nq || (o.q == nq && o.buf >= nb) {
						continue
					}
					next[i] = c
					continue
				}
				index[k] = len(next)
				next = append(next, c)
			}
		}
		layer = next
	}
	best := 0
	for i := range layer {
		if layer[i].q > layer[best].q {
			best = i
		}
	}
	return layer[best].first
}
