package player

import (
	"math"
	"time"

	"github.com/applayer/applayer/stream/shape"
)

// OptimumInput is the offline problem: the whole bandwidth trace known in
// advance.
type OptimumInput struct {
	Sched    *shape.Schedule
	Bitrates []float64 // bit/s, ascending
	Segments int
	SegDur   float64 // s
	// Size is segment i's size at rung r in bytes (default bit rate times
	// duration).
	Size func(i, r int) float64
	// Init is rung r's initialization segment in bytes, fetched before
	// the first segment at that rung, as the player does (nil: none).
	Init func(r int) float64
	// FirstExtra is fetched before the first segment (bytes: the audio
	// initialization segment).
	FirstExtra float64
	// Startup and MaxBuffer as the player's (seconds); Mu as QoE_lin's.
	Startup, MaxBuffer, Mu float64
	// RTT is added to every download (the player's audio and request
	// overheads are not modelled).
	RTT time.Duration
	// CountStartup penalises the startup delay at Mu like rebuffering
	// (the first segment's download is rebuffering in Pensieve's QoE, a
	// startup term weighted as rebuffering in MPC's); by default startup
	// is free, as in the player's QoE_lin.
	CountStartup bool
}

// Optimum returns the best QoE_lin a player could reach on the trace,
// found by dynamic programming over (segment, last rung, buffer level
// rounded to 100 ms, the rungs whose initialization segment was
// fetched), with the same playback model as Play (startup threshold,
// stall and resume after one segment, downloads held while the buffer is
// full, one download at a time, initialization segments fetched before a
// rung's first segment). Of the plans reaching the same state the one
// with the higher QoE goes on (then the earlier): keeping the time in the
// state too (50 ms steps, buffer in 20 ms) finds the same optimum on the
// bench's schedules (TestOptimumStateMerge). The plan found is feasible, so its QoE is
// achievable; the rounding can miss plans that differ by less than the
// buffer step. It returns the QoE and the rung of each segment.
// model is the playback model Optimum and Replay share: the player's
// (startup after Startup seconds are buffered, a stall resumes with the
// next segment, downloads held while the buffer is over MaxBuffer minus a
// segment, one download at a time, back to back).
type model struct {
	in             OptimumInput
	startup, maxBf float64
}

func newModel(in OptimumInput) model {
	startup := in.Startup
	if startup <= 0 {
		startup = in.SegDur
	}
	maxBuf := in.MaxBuffer
	if maxBuf <= 0 {
		maxBuf = 30
	}
	return model{in: in, startup: startup, maxBf: max(maxBuf, startup+in.SegDur)}
}

func (m model) size(i, r int) float64 {
	if m.in.Size != nil {
		if v := m.in.Size(i, r); v > 0 {
			return v
		}
	}
	return m.in.Bitrates[r] * m.in.SegDur / 8
}

// pstate is the playback after some segments: the time (s since the
// trace's start), the buffer (s), whether playback has started, the last
// rung (-1 before the first), the rungs whose initialization segment has
// been fetched (a bit each) and the QoE so far.
type pstate struct {
	t, b    float64
	started bool
	last    int
	inits   uint64
	q       float64
}

// next fetches segment k at rung r from s: it returns the state after the
// segment arrives, with the wait for buffer room, the download and the
// rebuffering it caused.
func (m model) next(s pstate, k, r int) (ns pstate, wait, dl, rebuf float64) {
	in := m.in
	t, b := s.t, s.b
	if over := b - (m.maxBf - in.SegDur); over > 0 {
		wait = over
		t, b = t+over, b-over
	}
	bytes, inits := m.size(k, r), s.inits
	if s.last < 0 {
		bytes += in.FirstExtra
	}
	if in.Init != nil && r < 64 && inits&(1<<r) == 0 {
		bytes += in.Init(r)
		inits |= 1 << r
	}
	dl = in.RTT.Seconds() + in.Sched.TransferTime(time.Duration(t*float64(time.Second)), bytes).Seconds()
	q := s.q + in.Bitrates[r]/1e6
	if s.last >= 0 {
		q -= math.Abs(in.Bitrates[r]-in.Bitrates[s.last]) / 1e6
	}
	nb := b + in.SegDur
	started := s.started
	if !started && in.CountStartup {
		q -= in.Mu * dl
	}
	if started {
		rebuf = math.Max(dl-b, 0)
		q -= in.Mu * rebuf
		nb = math.Max(b-dl, 0) + in.SegDur
	}
	if nb >= m.startup-1e-9 {
		started = true
	}
	return pstate{t: t + dl, b: nb, started: started, last: r, inits: inits, q: q}, wait, dl, rebuf
}

// Optimum returns the best QoE_lin a player could reach on the trace,
// found by dynamic programming over (segment, last rung, buffer level
// rounded to 100 ms, the rungs whose initialization segment was
// fetched), with the same playback model as Play (startup threshold,
// stall and resume after one segment, downloads held while the buffer is
// full, one download at a time, initialization segments fetched before a
// rung's first segment). Of the plans reaching the same state the one
// with the higher QoE goes on (then the earlier): keeping the time in the
// state too (50 ms steps, buffer in 20 ms) finds the same optimum on the
// bench's schedules (TestOptimumStateMerge). The plan found is feasible, so its QoE is
// achievable; the rounding can miss plans that differ by less than the
// buffer step. It returns the QoE and the rung of each segment.
func Optimum(in OptimumInput) (float64, []int) {
	if in.Segments == 0 || len(in.Bitrates) == 0 {
		return 0, nil
	}
	return newModel(in).best(pstate{last: -1}, 0)
}

// best is the best continuation from state from before segment k0: its
// QoE (from's included) and the rungs of segments k0 on.
func (md model) best(from pstate, k0 int) (float64, []int) {
	n, m := md.in.Segments, len(md.in.Bitrates)
	if k0 >= n {
		return from.q, nil
	}
	const step = 0.1
	type node struct {
		pstate
		prev int // index into the previous layer
	}
	type key struct {
		rung, bucket int
		started      bool
		inits        uint64
	}
	layers := make([][]node, 0, n-k0+1)
	layers = append(layers, []node{{pstate: from, prev: -1}})
	for k := k0; k < n; k++ {
		best := map[key]int{}
		var next []node
		for pi, s := range layers[k-k0] {
			for r := range m {
				ns, _, _, _ := md.next(s.pstate, k, r)
				nd := node{pstate: ns, prev: pi}
				kk := key{r, int(math.Round(ns.b / step)), ns.started, ns.inits}
				if j, ok := best[kk]; ok {
					if o := next[j]; o.q > ns.q || (o.q == ns.q && o.t <= ns.t) {
						continue
					}
					next[j] = nd
					continue
				}
				best[kk] = len(next)
				next = append(next, nd)
			}
		}
		layers = append(layers, next)
	}
	bi := 0
	last := layers[n-k0]
	for i := range last {
		if last[i].q > last[bi].q {
			bi = i
		}
	}
	plan := make([]int, n-k0)
	for k, i := n-k0, bi; k > 0; k-- {
		plan[k-1] = layers[k][i].last
		i = layers[k][i].prev
	}
	return last[bi].q, plan
}

// PlanStep is one segment of a plan played on the trace.
type PlanStep struct {
	Rung       int
	Start, End float64 // the download, s since the trace's start
	Buffer     float64 // s, after the segment arrived
	Rebuffer   float64 // s of stall while it downloaded
	QoE        float64 // QoE_lin so far
}

// Replay plays plan (a rung per segment) on the trace with Optimum's
// playback model: the QoE_lin it reaches and each segment's times and
// buffer, to set an algorithm's path beside the optimum's.
func Replay(in OptimumInput, plan []int) (float64, []PlanStep) {
	md := newModel(in)
	s := pstate{last: -1}
	var steps []PlanStep
	for k, r := range plan {
		ns, wait, dl, rebuf := md.next(s, k, r)
		steps = append(steps, PlanStep{Rung: r, Start: s.t + wait, End: s.t + wait + dl, Buffer: ns.b, Rebuffer: rebuf, QoE: ns.q})
		s = ns
	}
	return s.q, steps
}
