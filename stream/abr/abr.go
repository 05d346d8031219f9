// Package abr holds the rate-adaptation (ABR) algorithms of the DASH
// player, each choosing the rung of the next segment from what the player
// knows: the ladder, the buffer level, the throughput of past downloads.
//
//   - Throughput: the highest rung under a safety factor times the
//     harmonic mean of the last few segments' throughput.
//   - BOLA (Spiteri, Urgaonkar, Sitaraman, INFOCOM 2016): buffer-based,
//     maximizing (V (v_m + gamma p) - Q) / S_m with the parameters dash.js
//     derives from its stable buffer time.
//   - Dynamic: dash.js's DYNAMIC hybrid, throughput while the buffer is
//     low and BOLA once it has grown past the stable buffer time (back
//     below half of it).
//   - MPC (after Yin et al., SIGCOMM 2015, robust MPC): the rung sequence
//     over the next 30 segments maximizing QoE_lin, by dynamic
//     programming, its first segments at a throughput prediction
//     discounted by the largest recent prediction error, the rest at the
//     larger of that and the long-run throughput.
//
// Algorithms are pure functions of a State: the player's tests run them on
// a simulated clock.
package abr

import (
	"fmt"
	"math"
	"strings"
)

// State is what an algorithm sees before choosing segment Index.
type State struct {
	Bitrates []float64 // bit/s per rung, ascending
	SegDur   float64   // seconds per segment
	Index    int       // the segment about to be fetched (0-based)
	Segments int       // segments in the presentation
	Buffer   float64   // seconds of media buffered ahead of playback
	// MaxBuffer is the buffer the player fills to (seconds).
	MaxBuffer float64
	// Last is the rung of the previous segment, -1 before the first.
	Last int
	// Throughputs are the past segments' measured throughputs (bit/s),
	// oldest first.
	Throughputs []float64
	// Times are how long each of Throughputs' downloads took (seconds),
	// parallel to it; nil counts every sample alike.
	Times []float64
	// Size, when set, is the size in bytes of segment i at rung r (the
	// player knows sizes it has seen); otherwise bit rate times duration.
	Size func(i, r int) float64
	// Extra is the bit rate of what is downloaded with every segment
	// whatever the rung (the audio track), bit/s: a segment's download
	// carries its duration times Extra more bits.
	Extra float64
}

// size is segment i's bytes at rung r, with what comes with it (Extra).
func (s *State) size(i, r int) float64 {
	extra := s.Extra * s.SegDur / 8
	if s.Size != nil {
		if v := s.Size(i, r); v > 0 {
			return v + extra
		}
	}
	return s.Bitrates[r]*s.SegDur/8 + extra
}

// Algorithm chooses rungs. Implementations may keep state between calls
// (one instance per playback).
type Algorithm interface {
	Name() string
	Choose(s *State) int
}

// Names lists the algorithms New knows.
var Names = []string{"throughput", "bola", "dynamic", "mpc"}

// New returns a fresh instance of the named algorithm with its defaults;
// mu is QoE_lin's rebuffering penalty (MPC optimizes it).
func New(name string, mu float64) (Algorithm, error) {
	switch strings.ToLower(name) {
	case "throughput", "rate":
		return &Throughput{}, nil
	case "bola":
		return &BOLA{}, nil
	case "dynamic":
		return &Dynamic{}, nil
	case "mpc", "robustmpc":
		return &MPC{Mu: mu}, nil
	}
	return nil, fmt.Errorf("abr: unknown algorithm %q (want %s)", name, strings.Join(Names, ", "))
}

// HarmonicMean is the harmonic mean of the last n values of xs (all of
// them if fewer); 0 with none.
func HarmonicMean(xs []float64, n int) float64 {
	if len(xs) > n {
		xs = xs[len(xs)-n:]
	}
	if len(xs) == 0 {
		return 0
	}
	var inv float64
	for _, x := range xs {
		if x <= 0 {
			return 0
		}
		inv += 1 / x
	}
	return float64(len(xs)) / inv
}

// highestBelow is the highest rung whose bit rate is at most bw (0 if
// none).
func highestBelow(bitrates []float64, bw float64) int {
	r := 0
	for i, b := range bitrates {
		if b <= bw {
			r = i
		}
	}
	return r
}

// Throughput is the rate-based rule.
type Throughput struct {
	// Window is how many segments the harmonic mean covers. Default 5.
	Window int
	// Safety scales the estimate. Default 0.9.
	Safety float64
}

// Name implements Algorithm.
func (*Throughput) Name() string { return "throughput" }

// Choose implements Algorithm: the lowest rung with no history.
func (t *Throughput) Choose(s *State) int {
	w, f := t.Window, t.Safety
	if w == 0 {
		w = 5
	}
	if f == 0 {
		f = 0.9
	}
	bw := HarmonicMean(s.Throughputs, w)
	if bw == 0 {
		return 0
	}
	return highestBelow(s.Bitrates, f*bw)
}

// BOLA is BOLA-BASIC with dash.js's parameters.
type BOLA struct {
	// StableBuffer is the buffer (s) BOLA aims at; dash.js's default 12s,
	// raised to 10 + 2 per rung as dash.js does.
	StableBuffer float64
}

// Name implements Algorithm.
func (*BOLA) Name() string { return "bola" }

// Params are BOLA's V (seconds) and gamma*p for a ladder.
func (b *BOLA) Params(bitrates []float64) (vp, gp float64, utilities []float64) {
	const minBuffer, perLevel = 10.0, 2.0
	stable := b.StableBuffer
	if stable == 0 {
		stable = 12
	}
	target := max(stable, minBuffer+perLevel*float64(len(bitrates)))
	utilities = make([]float64, len(bitrates))
	for i, r := range bitrates {
		utilities[i] = math.Log(r/bitrates[0]) + 1 // lowest rung has utility 1
	}
	gp = (utilities[len(utilities)-1] - 1) / (target/minBuffer - 1)
	if gp <= 0 { // one rung
		gp = 1
	}
	vp = minBuffer / gp
	return vp, gp, utilities
}

// Choose implements Algorithm: the rung maximizing
// (Vp (u_m + gp) - buffer) / bitrate_m.
func (b *BOLA) Choose(s *State) int {
	vp, gp, u := b.Params(s.Bitrates)
	best, bestScore := 0, math.Inf(-1)
	for i, r := range s.Bitrates {
		score := (vp*(u[i]+gp) - s.Buffer) / r
		if score >= bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

// Dynamic switches between Throughput and BOLA on the buffer level, like
// dash.js's DYNAMIC strategy.
type Dynamic struct {
	// StableBuffer is where BOLA takes over. Default 12s; throughput
	// returns below half of it.
	StableBuffer float64
	T            Throughput
	B            BOLA
	useBOLA      bool
}

// Name implements Algorithm.
func (*Dynamic) Name() string { return "dynamic" }

// UsingBOLA says which rule chose last.
func (d *Dynamic) UsingBOLA() bool { return d.useBOLA }

// Choose implements Algorithm.
func (d *Dynamic) Choose(s *State) int {
	stable := d.StableBuffer
	if stable == 0 {
		stable = 12
	}
	switch {
	case !d.useBOLA && s.Buffer >= stable:
		d.useBOLA = true
	case d.useBOLA && s.Buffer < stable/2:
		d.useBOLA = false
	}
	if d.useBOLA {
		// dash.js keeps BOLA from stepping above what throughput supports.
		b := d.B.Choose(s)
		if bw := HarmonicMean(s.Throughputs, 5); bw > 0 {
			b = min(b, highestBelow(s.Bitrates, bw))
		}
		return b
	}
	return d.T.Choose(s)
}
