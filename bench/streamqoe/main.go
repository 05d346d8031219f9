// Command streamqoe is bench/stream-qoe.sh's driver: it plays one packaged
// DASH video under the same bandwidth schedules with dash.js (default
// rules and BOLA) and Shaka in headless Chromium and with each of
// applayer's ABR algorithms, every player behind its own shaping proxy
// (stream/shape.Proxy: the origin-to-player direction held to the
// schedule, started by the player's first connection), and prints QoE_lin
// per chunk, average bit rate, stalls, switches and startup side by side
// with the offline optimum.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/applayer/applayer/internal/plot"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/stream"
	"github.com/applayer/applayer/stream/abr"
	"github.com/applayer/applayer/stream/origin"
	"github.com/applayer/applayer/stream/player"
	"github.com/applayer/applayer/stream/shape"
	"github.com/applayer/applayer/web/client"
	"github.com/applayer/applayer/web/server"
)

type result struct {
	Schedule   string    `json:"schedule"`
	Player     string    `json:"player"`
	QoE        float64   `json:"qoe_per_chunk"`
	AvgRate    float64   `json:"avg_bitrate"`
	Stalls     int       `json:"stalls"`
	StallTime  float64   `json:"stall_s"`
	Switches   int       `json:"switches"`
	Startup    float64   `json:"startup_s"`
	QoEStartup float64   `json:"qoe_per_chunk_startup"` // the startup counted as rebuffering
	Round      int       `json:"round"`
	Rungs      []int     `json:"rungs"`
	Rates      []float64 `json:"rates"`
	Requests   int       `json:"segment_requests"` // video segment requests (more than segments: refetched)
	FirstRungs []int     `json:"first_rungs,omitempty"`
	// Segments are applayer's players' segment logs (times, throughput,
	// buffer, abandoned rungs).
	Segments []player.SegmentLog `json:"segments,omitempty"`
	Err      string              `json:"error,omitempty"`
}

func main() {
	video := flag.String("video", "", "packaged video directory (manifest.mpd)")
	dashjs := flag.String("dashjs", "stream/testdata/dashjs/dash.mediaplayer.min.js", "dash.js file")
	shaka := flag.String("shaka", "", "shaka-player.compiled.js")
	chromium := flag.String("chromium", "chromium", "chromium binary")
	out := flag.String("out", "bench-stream-qoe", "output directory (JSON, plots)")
	schedules := flag.String("schedules", "step=20M:20s,1M:20s,8M:15s;sawtooth=0.5M:3s,1M:3s,1.5M:3s,2M:3s,2.5M:3s,3M:3s,3.5M:3s;commute=@bench/stream-commute.cooked", "NAME=STEPS or NAME=@COOKED-FILE, separated by ;")
	players := flag.String("players", "dashjs,dashjs-bola,shaka,throughput,bola,dynamic,mpc", "players")
	rounds := flag.Int("rounds", 1, "rounds: each plays every schedule with every player, and the medians over rounds are printed")
	verbose := flag.Bool("v", false, "with -sim: every segment's rung, times, throughput and buffer")
	sim := flag.Bool("sim", false, "play applayer's algorithms on the simulated clock and network only (player.SimNet: no browser, no HTTP), with the video's real segment sizes")
	bound := flag.String("bound", "", "with -sim: for each schedule, the online bound at these branch times (seconds, comma-separated): the best share of the offline optimum any causal player can guarantee over the schedule, the schedule restarted at the branch, and its rate at the branch held (player.OnlineBound); slow (minutes for late branches)")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		log.Fatal(err)
	}
	mpdData, err := os.ReadFile(filepath.Join(*video, "manifest.mpd"))
	if err != nil {
		log.Fatal(err)
	}
	base, _ := url.Parse("http://origin/manifest.mpd")
	pres, err := player.Load(mpdData, base)
	if err != nil {
		log.Fatal(err)
	}
	mu := pres.Bitrates[len(pres.Bitrates)-1] / 1e6
	n := len(pres.Video[0].Segments)
	// Segment sizes (video + audio of the same index) for the optimum and
	// for mapping requests to rungs.
	size := func(i, r int) float64 {
		var s float64
		for _, u := range []string{pres.Video[r].Segments[i].URL, audioURL(pres, i)} {
			if u == "" {
				continue
			}
			p, _ := url.Parse(u)
			if fi, err := os.Stat(filepath.Join(*video, p.Path)); err == nil {
				s += float64(fi.Size())
			}
		}
		return s
	}
	// The initialization segments, fetched by every player before a
	// rung's first segment (and the audio's before the first).
	audioInit := 0.0
	if pres.Audio != nil {
		audioInit = fileSize(*video, pres.Audio.Init)
	}
	var scheds []schedule
	for _, spec := range strings.Split(*schedules, ";") {
		name, def, _ := strings.Cut(spec, "=")
		sched, err := parseSchedule(def)
		if err != nil {
			log.Fatalf("%s: %v", name, err)
		}
		in := player.OptimumInput{Sched: sched, Bitrates: pres.Bitrates, Segments: n, SegDur: pres.SegDur, Size: size, Mu: mu, MaxBuffer: 30,
			Init: func(r int) float64 { return fileSize(*video, pres.Video[r].Init) }, FirstExtra: audioInit}
		opt, plan := player.Optimum(in)
		in.CountStartup = true
		optS, planS := player.Optimum(in)
		in.CountStartup = false
		scheds = append(scheds, schedule{name, def, sched, opt / float64(n), optS / float64(n), in, plan, planS})
	}
	if *sim && *bound != "" {
		onlineBounds(scheds, *bound, float64(n)*pres.SegDur)
		return
	}
	if *sim {
		simulate(*video, mpdData, scheds, strings.Split(*players, ","), mu, n, *verbose)
		return
	}
	var all []result
	for round := 1; round <= *rounds; round++ {
		for _, sc := range scheds {
			rs := runSchedule(sc.name, sc.sched, strings.Split(*players, ","), func(pl string) result {
				switch pl {
				case "dashjs", "dashjs-bola", "shaka":
					return runBrowser(*video, sc.sched, pl, *dashjs, *shaka, *chromium, pres, mu)
				}
				return runOurs(*video, sc.sched, pl, mu)
			})
			for i := range rs {
				rs[i].Round = round
				rs[i].QoEStartup = rs[i].QoE - mu*rs[i].Startup/float64(n)
			}
			rs = append(rs, result{Schedule: sc.name, Player: "offline optimum", Round: round, QoE: sc.opt, QoEStartup: sc.optS})
			fmt.Printf("\n== round %d, schedule %s (%s), %d segments of %.0f s, mu %.2f; load %s\n", round, sc.name, sc.def, n, pres.SegDur, mu, loadavg())
			fmt.Printf("%-20s %9s %9s %10s %7s %8s %9s %8s %9s\n", "player", "QoE/chunk", "+startup", "avg kbit/s", "stalls", "stall s", "switches", "startup", "requests")
			for _, r := range rs {
				if r.Err != "" {
					fmt.Printf("%-20s error: %s\n", r.Player, r.Err)
					continue
				}
				fmt.Printf("%-20s %9.3f %9.3f %10.0f %7d %8.2f %9d %8.2f %9d\n", r.Player, r.QoE, r.QoEStartup, r.AvgRate/1e3, r.Stalls, r.StallTime, r.Switches, r.Startup, r.Requests)
			}
			all = append(all, rs...)
			chart := plot.Chart{Title: fmt.Sprintf("Chosen bit rate per segment, schedule %s, round %d", sc.name, round), XLabel: "segment", YLabel: "Mbit/s"}
			for _, r := range rs {
				if len(r.Rates) == 0 {
					continue
				}
				var x, y []float64
				for i, v := range r.Rates {
					x = append(x, float64(i+1))
					y = append(y, v/1e6)
				}
				chart.Series = append(chart.Series, plot.Series{Name: r.Player, X: x, Y: y})
			}
			if err := chart.Save(filepath.Join(*out, "stream-qoe-"+sc.name+".png"), filepath.Join(*out, "stream-qoe-"+sc.name+".svg")); err != nil {
				log.Print(err)
			}
		}
	}
	if *rounds > 1 {
		printMedians(all, *rounds)
	}
	data, _ := json.MarshalIndent(all, "", "  ")
	os.WriteFile(filepath.Join(*out, "stream-qoe.json"), data, 0o644)
}

// schedule is one bandwidth schedule with its offline optima.
type schedule struct {
	name, def string
	sched     *shape.Schedule
	opt, optS float64 // QoE per chunk; optS counts the startup
	in        player.OptimumInput
	plan      []int // the optimum's rungs (startup not counted)
	planS     []int // with the startup counted
}

// runSchedule plays sched with every player: applayer's at the same time
// (each with its own origin, proxy and bucket), then the browsers one
// after the other.
func runSchedule(name string, sched *shape.Schedule, players []string, run func(pl string) result) []result {
	var rs []result
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, pl := range players {
		if isBrowser(pl) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := run(pl)
			mu.Lock()
			rs = append(rs, r)
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, pl := range players {
		if isBrowser(pl) {
			rs = append(rs, run(pl))
		}
	}
	for i := range rs {
		rs[i].Schedule = name
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].Player < rs[j].Player })
	return rs
}

func isBrowser(pl string) bool { return pl == "dashjs" || pl == "dashjs-bola" || pl == "shaka" }

func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	return strings.Join(f[:min(3, len(f))], " ")
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// printMedians prints, per schedule and player, the medians over the
// rounds that finished.
func printMedians(all []result, rounds int) {
	type key struct{ sched, player string }
	by := map[key][]result{}
	var order []key
	for _, r := range all {
		k := key{r.Schedule, r.Player}
		if _, ok := by[k]; !ok {
			order = append(order, k)
		}
		if r.Err == "" {
			by[k] = append(by[k], r)
		}
	}
	opt := map[string][2]float64{}
	for _, r := range all {
		if r.Player == "offline optimum" {
			opt[r.Schedule] = [2]float64{r.QoE, r.QoEStartup}
		}
	}
	fmt.Printf("\n== medians over %d rounds (QoE per chunk; %% of the offline optimum; + startup: the startup counted as rebuffering, against the optimum that counts it too)\n", rounds)
	fmt.Printf("%-10s %-20s %5s %9s %7s %9s %7s %10s %8s %9s %8s\n", "schedule", "player", "runs", "QoE", "%opt", "+startup", "%opt", "avg kbit/s", "stall s", "switches", "startup")
	for _, k := range order {
		rs := by[k]
		get := func(f func(r result) float64) float64 {
			var xs []float64
			for _, r := range rs {
				xs = append(xs, f(r))
			}
			return median(xs)
		}
		q, qs := get(func(r result) float64 { return r.QoE }), get(func(r result) float64 { return r.QoEStartup })
		o := opt[k.sched]
		fmt.Printf("%-10s %-20s %5d %9.3f %6.1f%% %9.3f %6.1f%% %10.0f %8.2f %9.1f %8.2f\n", k.sched, k.player, len(rs), q, 100*q/o[0], qs, 100*qs/o[1],
			get(func(r result) float64 { return r.AvgRate / 1e3 }), get(func(r result) float64 { return r.StallTime }),
			get(func(r result) float64 { return float64(r.Switches) }), get(func(r result) float64 { return r.Startup }))
	}
}

// simulate plays each of applayer's algorithms on the simulated clock and
// network over each schedule, with the packaged video's real segment
// sizes, and prints QoE against the offline optimum: deterministic and
// fast, for evaluating the algorithms on many traces.
func simulate(dir string, mpdData []byte, scheds []schedule, players []string, mu float64, n int, verbose bool) {
	fmt.Printf("%-18s %-12s %9s %7s %9s %7s %8s %9s %8s\n", "schedule", "player", "QoE", "%opt", "+startup", "%opt", "stall s", "switches", "startup")
	for _, sc := range scheds {
		for _, pl := range players {
			if isBrowser(pl) {
				continue
			}
			alg, err := abr.New(pl, mu)
			if err != nil {
				log.Fatal(err)
			}
			clock := player.NewSimClock(time.Unix(1e9, 0))
			net := &player.SimNet{Clock: clock, Sched: sc.sched,
				Body: func(u string) ([]byte, bool) { return mpdData, strings.HasSuffix(u, ".mpd") },
				Size: func(u string) (int64, error) {
					p, err := url.Parse(u)
					if err != nil {
						return 0, err
					}
					fi, err := os.Stat(filepath.Join(dir, p.Path))
					if err != nil {
						return 0, err
					}
					return fi.Size(), nil
				}}
			rep, err := player.Play(context.Background(), "http://origin/manifest.mpd", player.Options{Fetcher: net, Clock: clock, Algorithm: alg, Mu: mu, MaxBuffer: 30 * time.Second})
			if err != nil {
				log.Fatalf("%s on %s: %v", pl, sc.name, err)
			}
			qs := (rep.QoE - mu*rep.Startup) / float64(n)
			var rungs []string
			for _, sg := range rep.Segments {
				rungs = append(rungs, strconv.Itoa(sg.Rung))
			}
			fmt.Printf("%-18s %-12s %9.3f %6.1f%% %9.3f %6.1f%% %8.2f %9d %8.2f  %s\n", sc.name, pl, rep.QoEPerChunk, 100*rep.QoEPerChunk/sc.opt, qs, 100*qs/sc.optS, rep.StallTime, rep.Switches, rep.Startup, strings.Join(rungs, ""))
			if verbose {
				printPaths(rep, sc.in, sc.plan, mu, "")
				in := sc.in
				in.CountStartup = true
				printPaths(rep, in, sc.planS, mu, "the startup charged, ")
			}
		}
		fmt.Printf("%-18s %-12s %9.3f %7s %9.3f\n", sc.name, "optimum", sc.opt, "", sc.optS)
	}
}

// printPaths sets an algorithm's segments beside the offline optimum's
// (its plan replayed on the trace), then QoE_lin's three terms for both
// and their difference: where the gap goes.
func printPaths(rep *player.Report, in player.OptimumInput, plan []int, mu float64, what string) {
	optQ, opt := player.Replay(in, plan)
	fmt.Printf("    %sagainst the optimum:\n", what)
	fmt.Printf("    %3s | %4s %13s %6s %6s %7s | %4s %13s %6s %6s %7s\n", "seg", "rung", "download s", "Mbit/s", "buf s", "QoE", "opt", "download s", "buf s", "stall", "QoE")
	var q float64
	for i, sg := range rep.Segments {
		q += sg.Bitrate / 1e6
		if i > 0 {
			q -= math.Abs(sg.Bitrate-rep.Segments[i-1].Bitrate) / 1e6
		}
		o := opt[i]
		fmt.Printf("    %3d | %4d %6.2f-%6.2f %6.2f %6.2f %7.3f | %4d %6.2f-%6.2f %6.2f %6.2f %7.3f\n", i+1, sg.Rung, sg.Start, sg.End, sg.Throughput/1e6, sg.Buffer, q,
			o.Rung, o.Start, o.End, o.Buffer, o.Rebuffer, o.QoE)
	}
	rates := func(rs []float64) (sum, sw float64) {
		for i, r := range rs {
			sum += r / 1e6
			if i > 0 {
				sw += math.Abs(r-rs[i-1]) / 1e6
			}
		}
		return sum, sw
	}
	var ours, best []float64
	var stall float64
	for _, sg := range rep.Segments {
		ours = append(ours, sg.Bitrate)
	}
	for _, o := range opt {
		best = append(best, in.Bitrates[o.Rung])
		stall += o.Rebuffer
	}
	a, as := rates(ours)
	b, bs := rates(best)
	q = rep.QoE
	var su, osu float64
	if in.CountStartup {
		su, osu = mu*rep.Startup, mu*opt[0].End
		q -= su
	}
	fmt.Printf("    QoE_lin's terms (Mbit/s, summed over segments), %s against the optimum: bit rate %.2f vs %.2f (%+.2f), switching -%.2f vs -%.2f (%+.2f), rebuffering -%.2f vs -%.2f (%+.2f), startup (%.2f s vs %.2f s) -%.2f vs -%.2f (%+.2f); QoE %.2f vs %.2f (%+.2f)\n",
		rep.Algorithm, a, b, a-b, as, bs, bs-as, mu*rep.StallTime, mu*stall, mu*stall-mu*rep.StallTime, rep.Startup, opt[0].End, su, osu, osu-su, q, optQ, q-optQ)
}

// onlineBounds prints, per schedule and branch time T, the online bound
// over the family {the schedule; the schedule restarted at T; its rate
// at T held}, with the startup free and charged.
func onlineBounds(scheds []schedule, branches string, dur float64) {
	length := time.Duration(5*dur) * time.Second
	for _, sc := range scheds {
		for _, f := range strings.Split(branches, ",") {
			T, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil || T <= 0 {
				log.Fatalf("-bound: bad branch time %q", f)
			}
			at := time.Duration(T * float64(time.Second))
			restart, err1 := sc.sched.Splice(at, sc.sched, length)
			held, _ := shape.Constant(sc.sched.Rate(at-time.Millisecond) / 1e6)
			hold, err2 := sc.sched.Splice(at, held, length)
			if err := errors.Join(err1, err2); err != nil {
				log.Fatal(err)
			}
			for _, charged := range []bool{false, true} {
				in := sc.in
				in.CountStartup = charged
				t0 := time.Now()
				b, err := player.OnlineBound(in, []*shape.Schedule{sc.sched, restart, hold}, T)
				if err != nil {
					log.Fatal(err)
				}
				fmt.Printf("%-10s branch %5.1f s  startup charged %-5v  bound %5.1f%%  (schedule, restarted, held: %5.1f%% %5.1f%% %5.1f%%; optima %.3f %.3f %.3f per chunk)  common rungs %v  [%v]\n",
					sc.name, T, charged, 100*b.Ratio, 100*b.Ratios[0], 100*b.Ratios[1], 100*b.Ratios[2],
					b.Optima[0]/float64(in.Segments), b.Optima[1]/float64(in.Segments), b.Optima[2]/float64(in.Segments), b.Prefix, time.Since(t0).Round(time.Second))
			}
		}
	}
}

// fileSize is the size of the packaged file at u (0 if missing).
func fileSize(dir, u string) float64 {
	p, err := url.Parse(u)
	if err != nil || u == "" {
		return 0
	}
	fi, err := os.Stat(filepath.Join(dir, p.Path))
	if err != nil {
		return 0
	}
	return float64(fi.Size())
}

func audioURL(p *player.Presentation, i int) string {
	if p.Audio == nil || i >= len(p.Audio.Segments) {
		return ""
	}
	return p.Audio.Segments[i].URL
}

func parseSchedule(def string) (*shape.Schedule, error) {
	if f, ok := strings.CutPrefix(def, "@"); ok {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		return shape.ParseCooked(data)
	}
	return shape.ParseSteps(def)
}

// originAndProxy starts an origin for dir (its segment requests on bus)
// and a shaping proxy in front of it.
func originAndProxy(dir string, sched *shape.Schedule, bus *trace.Bus) (*stream.Server, *shape.Proxy) {
	srv, err := stream.NewServer(server.Config{Addr: "127.0.0.1:0"}, origin.Config{Dir: dir}, service.Deps{Trace: bus})
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		log.Fatal(err)
	}
	px, err := shape.NewProxy("127.0.0.1:0", srv.Addrs()[0].String(), sched)
	if err != nil {
		log.Fatal(err)
	}
	return srv, px
}

func runOurs(dir string, sched *shape.Schedule, alg string, mu float64) result {
	srv, px := originAndProxy(dir, sched, nil)
	defer srv.Shutdown(context.Background())
	defer px.Close()
	a, err := abr.New(alg, mu)
	if err != nil {
		return result{Player: alg, Err: err.Error()}
	}
	cl, _ := client.New(client.Options{Proto: client.ProtoH1})
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	rep, err := player.Play(ctx, "http://"+px.Addr().String()+"/manifest.mpd", player.Options{Fetcher: &player.HTTPFetcher{Client: cl}, Algorithm: a, Mu: mu, MaxBuffer: 30 * time.Second})
	if err != nil {
		return result{Player: "applayer " + alg, Err: err.Error()}
	}
	r := result{Player: "applayer " + alg, QoE: rep.QoEPerChunk, AvgRate: rep.AvgBitrate, Stalls: rep.Stalls, StallTime: rep.StallTime, Switches: rep.Switches, Startup: rep.Startup, Segments: rep.Segments}
	for _, s := range rep.Segments {
		r.Rungs = append(r.Rungs, s.Rung)
		r.Rates = append(r.Rates, s.Bitrate)
		r.Requests += 1 + len(s.Abandoned)
	}
	return r
}

const page = `<!doctype html><html><body><video id="v" muted autoplay playsinline width="640" height="360"></video>
<script src="/player.js"></script><script>
const v = document.getElementById("v");
window.stats = {start: performance.now(), firstPlay: -1, stalls: 0, stallMs: 0, stallAt: -1, ended: false, errors: []};
const S = window.stats;
v.addEventListener("playing", () => {
  const now = performance.now();
  if (S.firstPlay < 0) S.firstPlay = now;
  if (S.stallAt >= 0) { S.stallMs += now - S.stallAt; S.stallAt = -1; }
});
v.addEventListener("waiting", () => { if (S.firstPlay >= 0 && S.stallAt < 0 && !v.ended) { S.stalls++; S.stallAt = performance.now(); } });
v.addEventListener("ended", () => { S.ended = true; });
const MPD = %q;
%s
</script></body></html>`

const dashjsInit = `const p = dashjs.MediaPlayer().create();
p.updateSettings({streaming: {buffer: {bufferTimeAtTopQuality: 30, bufferTimeAtTopQualityLongForm: 30}, abr: {rules: {throughputRule: {active: %t}, bolaRule: {active: true}}}}});
p.on(dashjs.MediaPlayer.events.ERROR, e => S.errors.push(JSON.stringify(e.error || e)));
p.initialize(v, MPD, true);`

const shakaInit = `shaka.polyfill.installAll();
const p = new shaka.Player();
p.configure({abr: {useNetworkInformation: false}, streaming: {bufferingGoal: 30}});
p.addEventListener("error", e => S.errors.push(JSON.stringify(e.detail)));
p.attach(v).then(() => p.load(MPD)).then(() => v.play()).catch(e => S.errors.push(String(e)));`

var segRE = regexp.MustCompile(`GET /seg-v(\d+)-(\d+)\.m4s`)

func runBrowser(dir string, sched *shape.Schedule, pl, dashjs, shakaJS, chromium string, pres *player.Presentation, mu float64) result {
	res := result{Player: pl}
	bus := trace.NewBus(nil)
	last := map[int]int{}  // segment index -> rung of its last request
	first := map[int]int{} // and of its first
	requests := 0
	var mu2 sync.Mutex
	bus.Subscribe(trace.SinkFunc(func(e trace.Event) {
		// The origin's own events (the web server publishes each request
		// too).
		if !strings.HasPrefix(e.Proto, "dash/") {
			return
		}
		if m := segRE.FindStringSubmatch(e.Summary); m != nil {
			r, _ := strconv.Atoi(m[1])
			i, _ := strconv.Atoi(m[2])
			mu2.Lock()
			last[i-1] = r
			if _, ok := first[i-1]; !ok {
				first[i-1] = r
			}
			requests++
			mu2.Unlock()
		}
	}))
	srv, px := originAndProxy(dir, sched, bus)
	defer srv.Shutdown(context.Background())
	defer px.Close()
	jsFile, init := dashjs, fmt.Sprintf(dashjsInit, pl == "dashjs")
	if pl == "shaka" {
		jsFile, init = shakaJS, shakaInit
	}
	js, err := os.ReadFile(jsFile)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	mpdURL := "http://" + px.Addr().String() + "/manifest.mpd"
	pageSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/player.js" {
			w.Header().Set("Content-Type", "text/javascript")
			w.Write(js)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, page, mpdURL, init)
	})}
	ln, err := netListen()
	if err != nil {
		res.Err = err.Error()
		return res
	}
	go pageSrv.Serve(ln)
	defer pageSrv.Close()
	tmp, _ := os.MkdirTemp("", "streamqoe-chromium-")
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(float64(len(pres.Video[0].Segments))*pres.SegDur*float64(time.Second))+3*time.Minute)
	defer cancel()
	actx, cancelA := chromedp.NewExecAllocator(ctx, chromedp.ExecPath(chromium), chromedp.UserDataDir(tmp),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("mute-audio", true), chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.*"))
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	if err := chromedp.Do(bctx, chromedp.Navigate("http://"+ln.Addr().String()+"/")); err != nil {
		res.Err = err.Error()
		return res
	}
	type stats struct {
		Start, FirstPlay, StallMs, StallAt float64
		Stalls                             int
		Ended                              bool
		Errors                             []string
	}
	var st stats
	for {
		time.Sleep(500 * time.Millisecond)
		s, err := chromedp.Run(bctx, chromedp.Evaluate[stats](`({Start: stats.start, FirstPlay: stats.firstPlay, StallMs: stats.stallMs, StallAt: stats.stallAt, Stalls: stats.stalls, Ended: stats.ended, Errors: stats.errors})`))
		if err != nil {
			res.Err = err.Error()
			return res
		}
		st = s
		if len(st.Errors) > 0 {
			res.Err = strings.Join(st.Errors, "; ")
			return res
		}
		if st.Ended {
			break
		}
	}
	mu2.Lock()
	defer mu2.Unlock()
	n := len(pres.Video[0].Segments)
	prev := -1
	for i := 0; i < n; i++ {
		r, ok := last[i]
		if !ok {
			res.Err = fmt.Sprintf("segment %d never requested", i+1)
			return res
		}
		res.Rungs = append(res.Rungs, r)
		res.FirstRungs = append(res.FirstRungs, first[i])
		res.Rates = append(res.Rates, pres.Bitrates[r])
		res.AvgRate += pres.Bitrates[r]
		if prev >= 0 && r != prev {
			res.Switches++
		}
		prev = r
	}
	res.AvgRate /= float64(n)
	res.Requests = requests
	res.Stalls, res.StallTime, res.Startup = st.Stalls, st.StallMs/1000, (st.FirstPlay-st.Start)/1000
	res.QoE = player.QoE(res.Rates, res.StallTime, mu) / float64(n)
	return res
}

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
