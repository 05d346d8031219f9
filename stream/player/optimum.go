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
// rounded to 100 ms), with the same playback model as Play (startup
// threshold, stall and resume after one segment, downloads held while
// the buffer is full). The plan found is feasible, so its QoE is
// achievable; the rounding can miss plans that differ by less than the
// buffer step. It returns the QoE and the rung of each segment.
func Optimum(in OptimumInput) (float64, []int) {
	n, m := in.Segments, len(in.Bitrates)
	if n == 0 || m == 0 {
		return 0, nil
	}
	size := func(i, r int) float64 {
		if in.Size != nil {
			if v := in.Size(i, r); v > 0 {
				return v
			}
		}
		return in.Bitrates[r] * in.SegDur / 8
	}
	startup := in.Startup
	if startup <= 0 {
		startup = in.SegDur
	}
	maxBuf := in.MaxBuffer
	if maxBuf <= 0 {
		maxBuf = 30
	}
	maxBuf = max(maxBuf, startup+in.SegDur)
	const step = 0.1
	type node struct {
		q, t, b float64
		started bool
		prev    int // index into the previous layer
		rung    int
	}
	type key struct {
		rung, bucket int
		started      bool
	}
	layers := make([][]node, 0, n+1)
	layers = append(layers, []node{{prev: -1, rung: -1}})
	for k := range n {
		best := map[key]int{}
		var next []node
		for pi, s := range layers[k] {
			t, b := s.t, s.b
			if over := b - (maxBuf - in.SegDur); over > 0 {
				t, b = t+over, b-over
			}
			for r := range m {
				dl := in.RTT.Seconds() + in.Sched.TransferTime(time.Duration(t*float64(time.Second)), size(k, r)).Seconds()
				q := s.q + in.Bitrates[r]/1e6
				if s.rung >= 0 {
					q -= math.Abs(in.Bitrates[r]-in.Bitrates[s.rung]) / 1e6
				}
				nb := b + in.SegDur
				started := s.started
				if !started && in.CountStartup {
					q -= in.Mu * dl
				}
				if started {
					rebuf := math.Max(dl-b, 0)
					q -= in.Mu * rebuf
					nb = math.Max(b-dl, 0) + in.SegDur
				}
				if nb >= startup-1e-9 {
					started = true
				}
				nd := node{q: q, t: t + dl, b: nb, started: started, prev: pi, rung: r}
				kk := key{r, int(math.Round(nb / step)), started}
				if j, ok := best[kk]; ok {
					if o := next[j]; o.q > q || (o.q == q && o.t <= nd.t) {
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
	last := layers[n]
	for i := range last {
		if last[i].q > last[bi].q {
			bi = i
		}
	}
	plan := make([]int, n)
	for k, i := n, bi; k > 0; k-- {
		plan[k-1] = layers[k][i].rung
		i = layers[k][i].prev
	}
	return last[bi].q, plan
}
