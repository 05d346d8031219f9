package player

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/stream/abr"
	"github.com/applayer/applayer/stream/shape"
)

// The bench's ladder (bench/stream-qoe.sh): four video rungs and 128k
// audio, 30 segments of 2 s.
var (
	benchLadder = []float64{0.3e6, 0.8e6, 1.4e6, 2.5e6}
	benchAudio  = 0.128e6
)

// benchSchedules are bench/streamqoe's default schedules.
func benchSchedules(t testing.TB) map[string]*shape.Schedule {
	t.Helper()
	out := map[string]*shape.Schedule{}
	for name, spec := range map[string]string{
		"step":     "20M:20s,1M:20s,8M:15s",
		"sawtooth": "0.5M:3s,1M:3s,1.5M:3s,2M:3s,2.5M:3s,3M:3s,3.5M:3s",
	} {
		s, err := shape.ParseSteps(spec)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = s
	}
	data, err := os.ReadFile("../../bench/stream-commute.cooked")
	if err != nil {
		t.Fatal(err)
	}
	if out["commute"], err = shape.ParseCooked(data); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAudioProbe: with no throughput sample, the first segment's audio
// goes first and its rate is the first sample, so on a fast link the
// first video segment is already at the top rung; without audio there is
// no sample and the first segment is at the lowest.
func TestAudioProbe(t *testing.T) {
	for _, c := range []struct {
		audio float64
		want  int
	}{{benchAudio, 3}, {0, 0}} {
		for _, name := range []string{"throughput", "mpc"} {
			alg, _ := abr.New(name, 0)
			rep := simRunAudio(t, benchLadder, c.audio, 5, 2, constant(t, 20), Options{Algorithm: alg})
			if got := rep.Segments[0].Rung; got != c.want {
				t.Errorf("%s, audio %v: first segment at rung %d, want %d", name, c.audio, got, c.want)
			}
			// 20 Mbit/s: 2.628 Mbit/s x 2 s takes 0.263 s with audio.
			if c.audio > 0 && (rep.Startup < 0.26 || rep.Startup > 0.27) {
				t.Errorf("%s: startup %.3fs, want the audio and top-rung segment's 0.263s", name, rep.Startup)
			}
		}
	}
	// The order of requests: audio init and segment 1, then video.
	var log []string
	data := simMPDAudio(t, benchLadder, benchAudio, 3, 2)
	clock := NewSimClock(time.Unix(1e9, 0))
	net := &SimNet{Clock: clock, Sched: constant(t, 20), Log: func(u string) { log = append(log, u[strings.LastIndex(u, "/")+1:]) },
		Body: func(u string) ([]byte, bool) { return data, strings.HasSuffix(u, ".mpd") },
		Size: func(string) (int64, error) { return 1000, nil }}
	if _, err := Play(t.Context(), "http://sim.test/v/manifest.mpd", Options{Fetcher: net, Clock: clock, Algorithm: &abr.MPC{}}); err != nil {
		t.Fatal(err)
	}
	want := "manifest.mpd init-a0.m4s seg-a0-1.m4s init-v3.m4s seg-v3-1.m4s seg-v3-2.m4s seg-a0-2.m4s"
	if got := strings.Join(log[:min(len(log), 7)], " "); got != want {
		t.Errorf("requests %s, want %s", got, want)
	}
}

// TestOptimumCountStartup: counting the startup costs mu times the first
// segment's download: one 1 Mbit/s rung at 10 Mbit/s, 0.2 s x mu 2.5.
func TestOptimumCountStartup(t *testing.T) {
	in := OptimumInput{Sched: constant(t, 10), Bitrates: []float64{1e6}, Segments: 10, SegDur: 2, Mu: 2.5}
	free, _ := Optimum(in)
	in.CountStartup = true
	counted, _ := Optimum(in)
	if !near(free, 10) || !near(counted, 10-0.5) {
		t.Errorf("QoE %v free, %v with startup; want 10 and 9.5", free, counted)
	}
}

// TestQoEAgainstOptimum pins, on the simulated clock, MPC's QoE_lin
// against the offline optimum on the bench's schedules with the bench's
// ladder: at least the ratio measured when MPC's defaults were set
// (docs/BENCHMARKS.md), with and without the startup counted, at least
// every other algorithm's, never above the optimum, and no stall for any
// algorithm (the lowest rung and audio, 428 kbit/s, fit every schedule
// but the commute's tunnel, which a buffer rides out). RobustMPC's
// five-segment plan at the short-term prediction (MPC{Horizon: 5,
// LongWindow: -1}) scores 0.70 on the sawtooth and, with abandonment
// judged after a tenth of a segment as before, 0.89 on the commute.
func TestQoEAgainstOptimum(t *testing.T) {
	const n, mu = 30, 2.5
	size := func(i, r int) float64 { return (benchLadder[r] + benchAudio) * 2 / 8 }
	for name, c := range map[string]struct{ ratio, counted float64 }{
		"step":     {0.99, 0.99},
		"sawtooth": {0.79, 0.87},
		"commute":  {0.95, 0.95},
	} {
		sched := benchSchedules(t)[name]
		t.Run(name, func(t *testing.T) {
			in := OptimumInput{Sched: sched, Bitrates: benchLadder, Segments: n, SegDur: 2, Size: size, Mu: mu, MaxBuffer: 30}
			opt, _ := Optimum(in)
			in.CountStartup = true
			optCounted, _ := Optimum(in)
			qoe := map[string]float64{}
			for _, a := range abr.Names {
				alg, _ := abr.New(a, 0)
				rep := simRunAudio(t, benchLadder, benchAudio, n, 2, sched, Options{Algorithm: alg})
				if rep.Stalls != 0 {
					t.Errorf("%s stalled %d times (%.2fs)", a, rep.Stalls, rep.StallTime)
				}
				if rep.QoE > opt+1e-6 {
					t.Errorf("%s: QoE %.3f above the optimum %.3f", a, rep.QoE, opt)
				}
				qoe[a] = rep.QoE
				if a != "mpc" {
					continue
				}
				r, rc := rep.QoE/opt, (rep.QoE-mu*rep.Startup)/optCounted
				t.Logf("mpc: %.3f per chunk, %.1f%% of the optimum; startup counted %.1f%%", rep.QoEPerChunk, 100*r, 100*rc)
				if r < c.ratio || rc < c.counted {
					t.Errorf("mpc at %.3f (%.3f with startup) of the optimum, want at least %.2f (%.2f)", r, rc, c.ratio, c.counted)
				}
			}
			for a, q := range qoe {
				if q > qoe["mpc"]+1e-9 {
					t.Errorf("%s's QoE %.3f beats mpc's %.3f", a, q, qoe["mpc"])
				}
			}
		})
	}
}

// recorder wraps an algorithm and records how many throughput samples it
// saw at each choice.
type recorder struct {
	abr.Algorithm
	samples []int
}

func (r *recorder) Choose(s *abr.State) int {
	r.samples = append(r.samples, len(s.Throughputs))
	return r.Algorithm.Choose(s)
}

// TestAbandonOnceInATunnel: the commute at 90% of its rate, two seconds
// in, puts a top-rung download at the tunnel's mouth, where the rate
// keeps falling. The player abandons it once and rides the retry out
// (abandoned again and again, 3 -> 2 -> 1 -> 0, every byte fetched in the
// tunnel was thrown away), and the algorithm sees one throughput sample
// per segment (plus the first segment's audio probe), the whole download
// with its abandoned part: an abandoned part counted as a sample of its
// own filled the predictor's window with the tunnel (in the bench's
// second round MPC then stayed at the lowest rung for five segments).
func TestAbandonOnceInATunnel(t *testing.T) {
	data, err := os.ReadFile("../../bench/stream-commute.cooked")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		var at, mbps float64
		if _, err := fmt.Sscanf(line, "%g %g", &at, &mbps); err != nil || at < 2 {
			continue
		}
		fmt.Fprintf(&b, "%g %g\n", at-2, 0.9*mbps)
	}
	sched, err := shape.ParseCooked([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{Algorithm: &abr.MPC{}}
	rep := simRunAudio(t, benchLadder, benchAudio, 30, 2, sched, Options{Algorithm: rec})
	if rep.Abandoned == 0 {
		t.Fatalf("nothing abandoned; the test wants a tunnel")
	}
	for _, s := range rep.Segments {
		if len(s.Abandoned) > 1 {
			t.Errorf("segment %d abandoned at rungs %v", s.Index+1, s.Abandoned)
		}
	}
	for i, n := range rec.samples {
		if n != i+1 {
			t.Fatalf("choice %d saw %d samples, want %d", i+1, n, i+1)
		}
	}
	if rep.Stalls != 0 {
		t.Errorf("%d stalls", rep.Stalls)
	}
}

// TestSawtoothFamily plays the bench's sawtooth (0.5 to 3.5 Mbit/s in
// seven 3 s steps) started at each of its seven steps and scaled by 0.9,
// 1 and 1.1: 21 schedules, bitrate-exact sizes, 30 segments. The bench's
// one sawtooth is one draw of this family, and which draw decides a few
// rung choices (each worth several points of the optimum), so the
// family's mean is what an algorithm reaches on a sawtooth. It pins
// MPC's mean share of the offline optimum, startup free and charged,
// at the figures measured when it was written (docs/BENCHMARKS.md,
// 2026-12-04: 80.6% and 81.2%), MPC's mean above every other
// algorithm's and robustMPC's (five segments at the short-term
// prediction), and no algorithm above the optimum on any schedule.
func TestSawtoothFamily(t *testing.T) {
	if testing.Short() {
		testkit.Skip(t, "21 schedules, each with two offline optima: seconds")
	}
	const n, mu = 30, 2.5
	size := func(i, r int) float64 { return (benchLadder[r] + benchAudio) * 2 / 8 }
	algs := map[string]func() abr.Algorithm{"robustmpc": func() abr.Algorithm { return &abr.MPC{Horizon: 5, LongWindow: -1} }}
	for _, a := range abr.Names {
		algs[a] = func() abr.Algorithm { alg, _ := abr.New(a, 0); return alg }
	}
	free, charged := map[string]float64{}, map[string]float64{}
	family := sawtoothFamily(t)
	count := float64(len(family))
	for _, f := range family {
		in := OptimumInput{Sched: f.sched, Bitrates: benchLadder, Segments: n, SegDur: 2, Size: size, Mu: mu, MaxBuffer: 30}
		opt, _ := Optimum(in)
		in.CountStartup = true
		optCounted, _ := Optimum(in)
		for name, mk := range algs {
			rep := simRunAudio(t, benchLadder, benchAudio, n, 2, f.sched, Options{Algorithm: mk()})
			if rep.QoE > opt+1e-6 || rep.QoE-mu*rep.Startup > optCounted+1e-6 {
				t.Errorf("%s on %s: QoE %.3f above the optimum %.3f", name, f.spec, rep.QoE, opt)
			}
			free[name] += rep.QoE / opt
			charged[name] += (rep.QoE - mu*rep.Startup) / optCounted
		}
	}
	for name := range algs {
		free[name] /= count
		charged[name] /= count
		t.Logf("%-10s %.1f%% of the optimum, %.1f%% with the startup charged", name, 100*free[name], 100*charged[name])
	}
	if free["mpc"] < 0.80 || charged["mpc"] < 0.80 {
		t.Errorf("mpc at %.3f (%.3f with the startup charged) of the optimum on the family, want at least 0.80", free["mpc"], charged["mpc"])
	}
	for name := range algs {
		if name != "mpc" && (free[name] > free["mpc"] || charged[name] > charged["mpc"]) {
			t.Errorf("%s's %.3f (%.3f charged) beats mpc's %.3f (%.3f)", name, free[name], charged[name], free["mpc"], charged["mpc"])
		}
	}
}

// familyMember is one of sawtoothFamily's schedules, with its steps.
type familyMember struct {
	spec  string
	sched *shape.Schedule
}

// sawtoothFamily is the bench's sawtooth (0.5 to 3.5 Mbit/s in seven 3 s
// steps) started at each of its steps and scaled by 0.9, 1 and 1.1.
func sawtoothFamily(t testing.TB) []familyMember {
	t.Helper()
	rates := []float64{0.5, 1, 1.5, 2, 2.5, 3, 3.5}
	var out []familyMember
	for start := range rates {
		for _, scale := range []float64{0.9, 1, 1.1} {
			var steps []string
			for i := range rates {
				steps = append(steps, fmt.Sprintf("%gM:3s", rates[(start+i)%len(rates)]*scale))
			}
			spec := strings.Join(steps, ",")
			sched, err := shape.ParseSteps(spec)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, familyMember{spec, sched})
		}
	}
	return out
}
