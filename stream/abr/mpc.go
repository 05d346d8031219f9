package abr

import "math"

// MPC is robust model-predictive control.
type MPC struct {
	// Horizon is how many segments ahead it plans. Default 5.
	Horizon int
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

// Choose implements Algorithm.
func (m *MPC) Choose(s *State) int {
	if m.Predictor == nil {
		m.Predictor = &Robust{}
	}
	bw := m.Predictor.Predict(s.Throughputs)
	if bw <= 0 {
		return 0
	}
	return m.ChooseFor(s, bw)
}

// ChooseFor is MPC's choice for a given throughput prediction (bit/s): the
// first rung of the plan over the horizon maximizing QoE_lin.
func (m *MPC) ChooseFor(s *State, bw float64) int {
	h := m.Horizon
	if h == 0 {
		h = 5
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
	plan := make([]int, h)
	best, bestQ := 0, math.Inf(-1)
	maxBuf := s.MaxBuffer
	if maxBuf == 0 {
		maxBuf = math.Inf(1)
	}
	safety := m.Safety
	if safety == 0 {
		safety = 0.15
	}
	var walk func(depth int, buf, q float64, last int)
	walk = func(depth int, buf, q float64, last int) {
		if depth == h {
			if q > bestQ {
				best, bestQ = plan[0], q
			}
			return
		}
		for r := range n {
			dl := s.size(s.Index+depth, r) * 8 / bw
			if depth == 0 && r > 0 && safety > 0 && buf > 0 && dl/(1-min(safety, 0.99)) > buf {
				continue
			}
			rebuf := math.Max(dl-buf, 0)
			nb := math.Min(math.Max(buf-dl, 0)+s.SegDur, maxBuf)
			nq := q + s.Bitrates[r]/1e6 - mu*rebuf
			if last >= 0 {
				nq -= math.Abs(s.Bitrates[r]-s.Bitrates[last]) / 1e6
			}
			plan[depth] = r
			walk(depth+1, nb, nq, r)
		}
	}
	walk(0, s.Buffer, 0, s.Last)
	return best
}
