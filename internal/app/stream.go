package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/stream"
	"github.com/applayer/applayer/stream/abr"
	"github.com/applayer/applayer/stream/origin"
	"github.com/applayer/applayer/stream/packager"
	"github.com/applayer/applayer/stream/player"
	"github.com/applayer/applayer/stream/shape"
	"github.com/applayer/applayer/web/client"
	"github.com/applayer/applayer/web/server"
)

func streamCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stream",
		Short: "Video streaming with DASH: package video with ffmpeg, serve it, play it adaptively",
		Long: `Streaming stored video: the video is encoded at several rates (a ladder of
rungs), cut into segments of a few seconds, and described by a manifest (the
MPD); the client estimates the bandwidth and picks, segment by segment, the
highest rate it can sustain, keeping a playout buffer against the network's
jitter.`,
		Example: `  applayer stream package --synthetic 8s --size 640x360 --preset ultrafast -o /tmp/video
  applayer stream serve --listen 127.0.0.1:8088 /tmp/video &
  applayer stream play --algorithm bola http://127.0.0.1:8088/manifest.mpd   # -> QoE_lin`,
	}
	cmd.AddCommand(streamPackageCommand(g), streamServeCommand(g), streamPlayCommand(g))
	return cmd
}

func streamPackageCommand(g *globals) *cobra.Command {
	var (
		out, ladder, size, preset, ffmpeg, ffprobe string
		synthetic, segment                         time.Duration
		quiet                                      bool
	)
	cmd := &cobra.Command{
		Use:   "package [VIDEO]",
		Short: "Encode a video into a DASH ladder (H.264 CBR rungs, AAC) of fMP4 segments and an MPD",
		Long: `Drives ffmpeg (Debian's ffmpeg package, on PATH or --ffmpeg): the ladder's rungs
no taller than the source, each H.264 at constant bit rate (so it carries the
bandwidth its Representation advertises), AAC audio, segments of --segment
(2-4 s) aligned on keyframes across rungs; writes manifest.mpd (static,
SegmentTemplate with SegmentTimeline, codecs read back from the streams).
--synthetic DURATION makes a test video first (a moving picture with noise,
a tone) of --size.`,
		Example: `  applayer stream package --synthetic 8s --size 640x360 --preset ultrafast -o /tmp/video
  applayer stream package --synthetic 6s --size 320x180 --ladder 144:150k,180:300k --segment 2s --preset ultrafast -o /tmp/tiny`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var in string
			switch {
			case synthetic > 0 && len(args) == 0:
				w, h, err := parseSize(size)
				if err != nil {
					return err
				}
				if err := os.MkdirAll(out, 0o755); err != nil {
					return err
				}
				in = filepath.Join(out, ".synthetic-source.mp4")
				defer os.Remove(in)
				if !quiet {
					fmt.Fprintf(g.stderr, "making a %v %dx%d synthetic video\n", synthetic, w, h)
				}
				if err := (packager.Synthetic{Duration: synthetic, Width: w, Height: h}).Make(ctx, ffmpeg, in); err != nil {
					return err
				}
			case synthetic == 0 && len(args) == 1:
				in = args[0]
			default:
				return fmt.Errorf("give a VIDEO or --synthetic DURATION (not both)")
			}
			opts := packager.Options{Input: in, OutDir: out, SegmentDuration: segment, Preset: preset, FFmpeg: ffmpeg, FFprobe: ffprobe}
			if ladder != "" {
				l, err := packager.ParseLadder(ladder)
				if err != nil {
					return err
				}
				opts.Ladder = l
			}
			if !quiet {
				opts.Progress = progressBar(g.stderr)
			}
			res, err := packager.Package(ctx, opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "packaged %s: %.1fs in %d segments of %v per rung\n", res.MPD, res.Duration.Seconds(), res.Segments, opts.SegmentDuration)
			for i, r := range res.Rungs {
				fmt.Fprintf(g.stdout, "  rung %d: %s %s\n", i, r, res.Codecs[i])
			}
			if res.Audio {
				fmt.Fprintln(g.stdout, "  audio: AAC")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&out, "out", "o", "video", "output `DIR`")
	f.DurationVar(&synthetic, "synthetic", 0, "make a synthetic test video of this `DURATION` and package it")
	f.StringVar(&size, "size", "1280x720", "the synthetic video's `WxH`")
	f.StringVar(&ladder, "ladder", "", "rungs as `HEIGHT:RATE,...` (default 240:300k,360:800k,480:1.4M,720:2.5M,1080:5M,...; never above the source)")
	f.DurationVar(&segment, "segment", 2*time.Second, "segment duration")
	f.StringVar(&preset, "preset", "veryfast", "x264 preset (ultrafast for quick tests)")
	f.StringVar(&ffmpeg, "ffmpeg", "", "ffmpeg `PATH` (default: on PATH)")
	f.StringVar(&ffprobe, "ffprobe", "", "ffprobe `PATH` (default: beside ffmpeg or on PATH)")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	return cmd
}

func parseSize(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, "x")
	w, err1 := strconv.Atoi(a)
	h, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("--size %q: want WIDTHxHEIGHT", s)
	}
	return w, h, nil
}

// progressBar draws ffmpeg's progress on w.
func progressBar(w io.Writer) func(packager.Progress) {
	return func(p packager.Progress) {
		frac := 0.0
		if p.Total > 0 {
			frac = min(p.Done.Seconds()/p.Total.Seconds(), 1)
		}
		const width = 30
		n := int(frac * width)
		fmt.Fprintf(w, "\r[%s%s] %3.0f%% %5.1fs/%.1fs %s", strings.Repeat("#", n), strings.Repeat(" ", width-n), frac*100, p.Done.Seconds(), p.Total.Seconds(), p.Speed)
		if p.Finished {
			fmt.Fprintln(w)
		}
	}
}

func streamServeCommand(g *globals) *cobra.Command {
	var (
		cfg server.Config
		oc  origin.Config
	)
	cmd := &cobra.Command{
		Use:   "serve DIR",
		Short: "Serve packaged video: the DASH origin over HTTP/1.1, h2 and h3",
		Long: `Serves DIR's MPDs and segments with DASH content types, byte ranges, strong
validators, Cache-Control (segments for a year, immutable; manifests for
--manifest-max-age) and CORS, through the web server: HTTP/1.1 and h2c on
--listen, TLS (h2 by ALPN) on --tls-listen, HTTP/3 with --http3.`,
		Example: `  applayer stream serve --listen 127.0.0.1:8088 /tmp/video
  applayer stream serve --listen 127.0.0.1:8088 --tls-listen 127.0.0.1:8448 --http3 --ca-dir /tmp/applayer-ca /tmp/video`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			oc.Dir = args[0]
			if _, err := os.Stat(filepath.Join(oc.Dir, packager.ManifestName)); err != nil {
				fmt.Fprintf(g.stderr, "note: %s has no %s\n", oc.Dir, packager.ManifestName)
			}
			return serve(cmd, g, func(d service.Deps) (service.Service, error) {
				return stream.NewServer(cfg, oc, d)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Addr, "listen", "127.0.0.1:8088", "cleartext address (HTTP/1.1 and h2c)")
	f.StringVar(&cfg.TLSAddr, "tls-listen", "", "TLS address (HTTP/1.1 and HTTP/2 by ALPN)")
	f.BoolVar(&cfg.HTTP3, "http3", false, "also serve HTTP/3 on the TLS port (UDP)")
	f.StringVar(&cfg.TLS.CertFile, "cert", "", "certificate PEM file")
	f.StringVar(&cfg.TLS.KeyFile, "key", "", "private key PEM file")
	f.StringVar(&cfg.TLS.CADir, "ca-dir", filepath.Join(os.TempDir(), "applayer-ca"), "lab CA directory, used without --cert")
	f.DurationVar(&oc.ManifestMaxAge, "manifest-max-age", 2*time.Second, "Cache-Control max-age of manifests")
	f.DurationVar(&oc.SegmentMaxAge, "segment-max-age", 365*24*time.Hour, "Cache-Control max-age of segments")
	f.StringVar(&oc.AllowOrigin, "allow-origin", "*", "CORS Access-Control-Allow-Origin")
	f.StringVar(&cfg.AccessLog, "access-log", "", "access log format: common or combined")
	return cmd
}

type playFlags struct {
	algorithm, proto, shapeSteps, traceFile, jsonOut, plot, ffmpeg, topoPath, seek string
	startup, maxBuffer, pauseAt, pauseFor                                          time.Duration
	mu                                                                             float64
	noAbandon, noAudio, decode, useLab, quiet, insecure                            bool
	segments, offset                                                               int
	cafile                                                                         string
}

func streamPlayCommand(g *globals) *cobra.Command {
	var f playFlags
	cmd := &cobra.Command{
		Use:   "play MPD-URL",
		Short: "Play a DASH presentation: playout buffer, adaptive rung choice, QoE report",
		Long: `A DASH client without a browser: downloads the segments (video and audio)
with the web client into a playout buffer drained in real time; playback
starts at --startup of buffer, stalls when the buffer empties. --algorithm
chooses each segment's rung: throughput (harmonic mean of recent segments),
bola (buffer-based), dynamic (dash.js's hybrid), mpc (model-predictive
control, the default: the best of the four in our benchmarks). A download
that would stall playback is abandoned for a lower rung.
--shape RATE:DUR,... or --trace-file (Pensieve "cooked": seconds and Mbit/s
per line) holds the player's own downloads to a bandwidth schedule, and the
offline optimum QoE for that schedule is printed beside the achieved one.
QoE_lin = sum R_k - mu * rebuffering - sum |R_k+1 - R_k| (Mbit/s, seconds).`,
		Example: `  applayer stream play --algorithm bola http://127.0.0.1:8088/manifest.mpd   # -> QoE_lin
  applayer stream play --algorithm mpc --shape 4M:6s,1M:6s --json http://127.0.0.1:8088/manifest.mpd   # -> qoe_per_chunk`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPlay(cmd.Context(), g, &f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.algorithm, "algorithm", "mpc", "rung choice: "+strings.Join(abr.Names, ", "))
	fl.StringVar(&f.proto, "proto", "", "HTTP version: 1.1, 2 or 3 (default: 1.1, or h2 by ALPN)")
	fl.StringVar(&f.shapeSteps, "shape", "", "hold downloads to a bandwidth schedule `RATE:DUR,...` (Mbit/s, e.g. 20M:20s,1M:20s,8M:15s)")
	fl.StringVar(&f.traceFile, "trace-file", "", "hold downloads to a Pensieve cooked trace `FILE` (seconds Mbit/s per line)")
	fl.DurationVar(&f.startup, "startup", 0, "buffer needed to start playing (default one segment)")
	fl.DurationVar(&f.maxBuffer, "max-buffer", 30*time.Second, "how far ahead to download")
	fl.Float64Var(&f.mu, "mu", 0, "QoE_lin rebuffering penalty per second (default: the top rung in Mbit/s)")
	fl.BoolVar(&f.noAbandon, "no-abandon", false, "never abandon a segment download")
	fl.BoolVar(&f.noAudio, "no-audio", false, "skip the audio track")
	fl.IntVar(&f.segments, "segments", 0, "stop after N segments")
	fl.DurationVar(&f.pauseAt, "pause-at", 0, "pause playback at this time")
	fl.DurationVar(&f.pauseFor, "pause-for", 5*time.Second, "with --pause-at: for how long")
	fl.StringVar(&f.seek, "seek", "", "seek `AT:TO` (e.g. 10s:40s: at 10 s jump to 40 s of the video)")
	fl.StringVar(&f.jsonOut, "json", "", "write the report as JSON to `FILE` (- for stdout)")
	fl.Lookup("json").NoOptDefVal = "-"
	fl.StringVar(&f.plot, "plot", "", "write PREFIX-bitrate and PREFIX-buffer charts (.png, .svg)")
	fl.BoolVar(&f.decode, "decode-check", false, "decode the downloaded video with ffmpeg (frames counted, no errors)")
	fl.StringVar(&f.ffmpeg, "ffmpeg", "", "ffmpeg `PATH` for --decode-check")
	fl.BoolVar(&f.useLab, "lab", false, "talk to the default lab: names through its resolver, ports offset as lab up does")
	fl.IntVar(&f.offset, "port-offset", -1, "with --lab: the lab's port offset (default: as lab up decides)")
	fl.StringVar(&f.topoPath, "lab-topology", "", "with --lab: the lab's topology `FILE`")
	fl.StringVar(&f.cafile, "cacert", "", "trust this CA certificate `FILE`")
	fl.BoolVarP(&f.insecure, "insecure", "k", false, "skip certificate verification")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print only the summary")
	return cmd
}

func runPlay(ctx context.Context, g *globals, f *playFlags, mpdURL string) error {
	e, err := g.env()
	if err != nil {
		return err
	}
	defer e.close()
	copts := client.Options{Proto: f.proto, CAFile: f.cafile, Insecure: f.insecure}
	if f.useLab {
		plan, err := clientLabPlan(f.topoPath, f.offset)
		if err != nil {
			return err
		}
		copts.PortOffset = plan.PortOffset
		if copts.Resolver, err = labResolver(plan); err != nil {
			return err
		}
	}
	var sched *shape.Schedule
	switch {
	case f.shapeSteps != "" && f.traceFile != "":
		return fmt.Errorf("give --shape or --trace-file, not both")
	case f.shapeSteps != "":
		if sched, err = shape.ParseSteps(f.shapeSteps); err != nil {
			return err
		}
	case f.traceFile != "":
		data, err := os.ReadFile(f.traceFile)
		if err != nil {
			return err
		}
		if sched, err = shape.ParseCooked(data); err != nil {
			return fmt.Errorf("%s: %w", f.traceFile, err)
		}
	}
	if sched != nil {
		if f.proto == client.ProtoH3 {
			return fmt.Errorf("shaping holds TCP connections: use --proto 1.1 or 2 with --shape/--trace-file")
		}
	}
	alg, err := abr.New(f.algorithm, f.mu)
	if err != nil {
		return err
	}
	var shaper *shape.Shaper
	if sched != nil {
		shaper = shape.NewShaper(sched, nil)
		copts.Dialer = shaper.Dialer(nil)
	}
	c, err := client.New(copts)
	if err != nil {
		return err
	}
	defer c.Close()
	fetcher := &player.HTTPFetcher{Client: c, Keep: f.decode}
	mpdData, err := player.FetchManifest(ctx, fetcher, player.RealClock{}, mpdURL, time.Minute)
	if err != nil {
		return err
	}
	base, err := urlParse(mpdURL)
	if err != nil {
		return err
	}
	pres, err := player.Load(mpdData, base)
	if err != nil {
		return err
	}
	opts := player.Options{Fetcher: fetcher, Algorithm: alg, Startup: f.startup, MaxBuffer: f.maxBuffer, Mu: f.mu,
		NoAbandon: f.noAbandon, NoAudio: f.noAudio, MaxSegments: f.segments, Trace: e.trace, Host: "player", Logger: e.logger}
	if f.pauseAt > 0 {
		opts.Events = append(opts.Events, player.Event{At: f.pauseAt, Action: "pause"}, player.Event{At: f.pauseAt + f.pauseFor, Action: "resume"})
	}
	if f.seek != "" {
		at, to, ok := strings.Cut(f.seek, ":")
		a, err1 := time.ParseDuration(at)
		b, err2 := time.ParseDuration(to)
		if !ok || err1 != nil || err2 != nil {
			return fmt.Errorf("--seek %q: want AT:TO, e.g. 10s:40s", f.seek)
		}
		opts.Events = append(opts.Events, player.Event{At: a, Action: "seek", To: b})
	}
	kept := map[int][][]byte{}
	inits := map[int][]byte{}
	if f.decode {
		opts.Keep = func(kind string, rung, _ int, body []byte) {
			switch kind {
			case "video-init":
				inits[rung] = body
			case "video":
				kept[rung] = append(kept[rung], body)
			}
		}
	}
	if !f.quiet && f.jsonOut != "-" {
		opts.OnSegment = func(s player.SegmentLog) {
			ab := ""
			if len(s.Abandoned) > 0 {
				ab = fmt.Sprintf("  (abandoned rung %v)", s.Abandoned)
			}
			fmt.Fprintf(g.stdout, "segment %3d  rung %d  %6.0f kbit/s  %7d B  %6.2fs-%6.2fs  %7.0f kbit/s measured  buffer %5.1fs%s\n",
				s.Index+1, s.Rung, s.Bitrate/1e3, s.Bytes, s.Start, s.End, s.Throughput/1e3, s.Buffer, ab)
		}
	}
	if shaper != nil {
		shaper.Restart() // the schedule starts with the first segment
	}
	rep, err := pres.Play(ctx, opts)
	if err != nil {
		return err
	}
	if sched != nil {
		audio := 0.0
		if pres.Audio != nil && !f.noAudio {
			audio = float64(pres.Audio.Rep.Bandwidth) * pres.SegDur / 8
		}
		sizes := map[[2]int]float64{}
		for _, s := range rep.Segments {
			if len(s.Abandoned) == 0 {
				sizes[[2]int{s.Index, s.Rung}] = float64(s.Bytes)
			}
		}
		q, _ := player.Optimum(player.OptimumInput{Sched: sched, Bitrates: pres.Bitrates, Segments: len(rep.Segments), SegDur: pres.SegDur,
			Startup: f.startup.Seconds(), MaxBuffer: f.maxBuffer.Seconds(), Mu: rep.Mu,
			Size: func(i, r int) float64 {
				if v, ok := sizes[[2]int{i, r}]; ok {
					return v
				}
				return pres.Bitrates[r]*pres.SegDur/8 + audio
			}})
		per := q / float64(max(len(rep.Segments), 1))
		rep.Optimum = &per
	}
	if f.decode {
		for rung, segs := range kept {
			frames, err := player.DecodeCheck(ctx, f.ffmpeg, inits[rung], segs)
			if err != nil {
				return fmt.Errorf("rung %d: %w", rung, err)
			}
			fmt.Fprintf(g.stdout, "decode check: rung %d: %d segments, %d frames decoded, no errors\n", rung, len(segs), frames)
		}
	}
	if f.plot != "" {
		if err := rep.Plot(f.plot); err != nil {
			return err
		}
	}
	if f.jsonOut != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		data = append(data, '\n')
		if f.jsonOut == "-" {
			_, err = g.stdout.Write(data)
			return err
		}
		if err := os.WriteFile(f.jsonOut, data, 0o644); err != nil {
			return err
		}
	}
	if f.jsonOut != "-" {
		fmt.Fprintf(g.stdout, "%s: %d segments, average bit rate %.0f kbit/s, %d switches, %d stalls (%.2fs), startup %.2fs, %d abandoned\n",
			rep.Algorithm, len(rep.Segments), rep.AvgBitrate/1e3, rep.Switches, rep.Stalls, rep.StallTime, rep.Startup, rep.Abandoned)
		fmt.Fprintf(g.stdout, "QoE_lin %.2f (%.3f per chunk, mu %.2f)", rep.QoE, rep.QoEPerChunk, rep.Mu)
		if rep.Optimum != nil {
			fmt.Fprintf(g.stdout, "; offline optimum %.3f per chunk", *rep.Optimum)
		}
		fmt.Fprintln(g.stdout)
	}
	return nil
}

func urlParse(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() {
		return nil, fmt.Errorf("bad MPD URL %q", s)
	}
	return u, nil
}
