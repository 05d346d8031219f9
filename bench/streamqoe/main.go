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
	"flag"
	"fmt"
	"log"
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
	Rungs      []int     `json:"rungs"`
	Rates      []float64 `json:"rates"`
	Requests   int       `json:"segment_requests"` // video segment requests (more than segments: refetched)
	FirstRungs []int     `json:"first_rungs,omitempty"`
	Err        string    `json:"error,omitempty"`
}

func main() {
	video := flag.String("video", "", "packaged video directory (manifest.mpd)")
	dashjs := flag.String("dashjs", "stream/testdata/dashjs/dash.mediaplayer.min.js", "dash.js file")
	shaka := flag.String("shaka", "", "shaka-player.compiled.js")
	chromium := flag.String("chromium", "chromium", "chromium binary")
	out := flag.String("out", "bench-stream-qoe", "output directory (JSON, plots)")
	schedules := flag.String("schedules", "step=20M:20s,1M:20s,8M:15s;sawtooth=0.5M:3s,1M:3s,1.5M:3s,2M:3s,2.5M:3s,3M:3s,3.5M:3s;commute=@bench/stream-commute.cooked", "NAME=STEPS or NAME=@COOKED-FILE, separated by ;")
	players := flag.String("players", "dashjs,dashjs-bola,shaka,throughput,bola,dynamic,mpc", "players")
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
	var all []result
	for _, spec := range strings.Split(*schedules, ";") {
		name, def, _ := strings.Cut(spec, "=")
		sched, err := parseSchedule(def)
		if err != nil {
			log.Fatalf("%s: %v", name, err)
		}
		opt, _ := player.Optimum(player.OptimumInput{Sched: sched, Bitrates: pres.Bitrates, Segments: n, SegDur: pres.SegDur, Size: size, Mu: mu, MaxBuffer: 30})
		optRes := result{Schedule: name, Player: "offline optimum", QoE: opt / float64(n)}
		var rs []result
		var mu2 sync.Mutex
		var wg sync.WaitGroup
		for _, pl := range strings.Split(*players, ",") {
			switch pl {
			case "dashjs", "dashjs-bola", "shaka":
				continue // one at a time, below
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := runOurs(*video, sched, pl, mu)
				r.Schedule = name
				mu2.Lock()
				rs = append(rs, r)
				mu2.Unlock()
			}()
		}
		wg.Wait()
		for _, pl := range strings.Split(*players, ",") {
			switch pl {
			case "dashjs", "dashjs-bola", "shaka":
				r := runBrowser(*video, sched, pl, *dashjs, *shaka, *chromium, pres, mu)
				r.Schedule = name
				rs = append(rs, r)
			}
		}
		sort.Slice(rs, func(i, j int) bool { return rs[i].Player < rs[j].Player })
		rs = append(rs, optRes)
		fmt.Printf("\n== schedule %s (%s), %d segments of %.0f s, mu %.2f\n", name, def, n, pres.SegDur, mu)
		fmt.Printf("%-20s %9s %10s %7s %8s %9s %8s %9s\n", "player", "QoE/chunk", "avg kbit/s", "stalls", "stall s", "switches", "startup", "requests")
		for _, r := range rs {
			if r.Err != "" {
				fmt.Printf("%-20s error: %s\n", r.Player, r.Err)
				continue
			}
			fmt.Printf("%-20s %9.3f %10.0f %7d %8.2f %9d %8.2f %9d\n", r.Player, r.QoE, r.AvgRate/1e3, r.Stalls, r.StallTime, r.Switches, r.Startup, r.Requests)
		}
		all = append(all, rs...)
		chart := plot.Chart{Title: "Chosen bit rate per segment, schedule " + name, XLabel: "segment", YLabel: "Mbit/s"}
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
		if err := chart.Save(filepath.Join(*out, "stream-qoe-"+name+".png"), filepath.Join(*out, "stream-qoe-"+name+".svg")); err != nil {
			log.Print(err)
		}
	}
	data, _ := json.MarshalIndent(all, "", "  ")
	os.WriteFile(filepath.Join(*out, "stream-qoe.json"), data, 0o644)
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
	r := result{Player: "applayer " + alg, QoE: rep.QoEPerChunk, AvgRate: rep.AvgBitrate, Stalls: rep.Stalls, StallTime: rep.StallTime, Switches: rep.Switches, Startup: rep.Startup}
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
