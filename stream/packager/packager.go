// Package packager turns a video file into DASH: it drives ffmpeg to encode
// a ladder of H.264 rungs at constant bit rate (each rung carries the
// bandwidth its Representation advertises) plus AAC audio, cut into
// fragmented-MP4 (CMAF) segments aligned on keyframes across rungs, and
// writes the MPD from applayer's own model (stream/mpd) with the codecs
// strings read back from the encoded streams.
//
// ffmpeg's dash muxer does the cutting; its own manifest is parsed with
// stream/mpd to check the rungs' timelines agree and then discarded.
package packager

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/applayer/applayer/stream/mpd"
)

// Rung is one rung of the ladder: a height (width follows the source's
// aspect ratio) and a video bit rate.
type Rung struct {
	Height  int   `json:"height"`
	Bitrate int64 `json:"bitrate"` // bit/s
}

func (r Rung) String() string { return fmt.Sprintf("%dp@%s", r.Height, FormatRate(r.Bitrate)) }

// DefaultLadder is the ladder rungs are chosen from.
var DefaultLadder = []Rung{{240, 300_000}, {360, 800_000}, {480, 1_400_000}, {720, 2_500_000}, {1080, 5_000_000}, {1440, 9_000_000}, {2160, 16_000_000}}

// ChooseLadder returns the rungs of ladder no taller than the source (a
// source shorter than every rung gets one rung at its own height and the
// lowest rate), lowest first.
func ChooseLadder(ladder []Rung, sourceHeight int) []Rung {
	var out []Rung
	for _, r := range ladder {
		if r.Height <= sourceHeight {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Bitrate < out[j].Bitrate })
	if len(out) == 0 && len(ladder) > 0 {
		low := ladder[0]
		for _, r := range ladder {
			if r.Bitrate < low.Bitrate {
				low = r
			}
		}
		out = []Rung{{Height: sourceHeight &^ 1, Bitrate: low.Bitrate}}
	}
	return out
}

// ParseLadder reads "240:300k,360:800k,720:2.5M".
func ParseLadder(s string) ([]Rung, error) {
	var out []Rung
	for _, part := range strings.Split(s, ",") {
		h, r, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return nil, fmt.Errorf("packager: ladder rung %q: want HEIGHT:RATE", part)
		}
		height, err := strconv.Atoi(strings.TrimSuffix(h, "p"))
		if err != nil || height < 16 || height > 4320 || height%2 != 0 {
			return nil, fmt.Errorf("packager: ladder rung %q: height must be even, 16 to 4320", part)
		}
		rate, err := ParseRate(r)
		if err != nil {
			return nil, fmt.Errorf("packager: ladder rung %q: %w", part, err)
		}
		out = append(out, Rung{height, rate})
	}
	return out, nil
}

// ParseRate reads a bit rate: "300k", "2.5M", "800000".
func ParseRate(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mul := 1.0
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mul, s = 1e3, s[:len(s)-1]
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "m"):
		mul, s = 1e6, s[:len(s)-1]
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v <= 0 || v*mul < 10_000 || v*mul > 1e9 {
		return 0, fmt.Errorf("bad rate %q (want 10k to 1000M)", s)
	}
	return int64(math.Round(v * mul)), nil
}

// FormatRate writes a bit rate as "300k" or "2.5M".
func FormatRate(b int64) string {
	if b >= 1_000_000 {
		return strconv.FormatFloat(float64(b)/1e6, 'f', -1, 64) + "M"
	}
	return strconv.FormatFloat(float64(b)/1e3, 'f', -1, 64) + "k"
}

// Options configure Package.
type Options struct {
	// Input is the video file.
	Input string
	// OutDir receives manifest.mpd, init-*.m4s and seg-*.m4s. It is
	// created; files of an earlier packaging there are replaced.
	OutDir string
	// Ladder is chosen from (ChooseLadder). Default DefaultLadder.
	Ladder []Rung
	// SegmentDuration is the segment length, 2 to 4 s usually. Default 2s.
	SegmentDuration time.Duration
	// Preset is x264's preset. Default "veryfast".
	Preset string
	// AudioBitrate is AAC's bit rate. Default 128k.
	AudioBitrate int64
	// FFmpeg and FFprobe are the programs. Default found on PATH.
	FFmpeg, FFprobe string
	// Progress, when set, is called as encoding advances.
	Progress func(Progress)
}

// Progress is a report from ffmpeg's -progress output.
type Progress struct {
	Done     time.Duration // media time encoded
	Total    time.Duration // the input's duration
	Speed    string        // ffmpeg's speed, e.g. "3.2x"
	Finished bool
}

// Result describes a packaging.
type Result struct {
	MPD      string // path of the manifest
	Rungs    []Rung
	Codecs   []string // per rung
	Audio    bool
	Duration time.Duration
	Segments int // per rung
}

// ManifestName is the MPD's file name in OutDir.
const ManifestName = "manifest.mpd"

// ErrNoFFmpeg is returned when ffmpeg or ffprobe cannot be found.
var ErrNoFFmpeg = errors.New("packager: ffmpeg not found (install Debian's ffmpeg package, or give its path)")

// ErrDiskFull is returned when the output's disk fills.
var ErrDiskFull = errors.New("packager: no space left on the output's disk")

// Tools finds ffmpeg and ffprobe: the given paths, else on PATH.
func Tools(ffmpeg, ffprobe string) (string, string, error) {
	find := func(given, name string) (string, error) {
		if given == "" {
			given = name
		}
		p, err := exec.LookPath(given)
		if err != nil {
			return "", fmt.Errorf("%w: %s: %v", ErrNoFFmpeg, given, err)
		}
		return p, nil
	}
	a, err := find(ffmpeg, "ffmpeg")
	if err != nil {
		return "", "", err
	}
	if ffprobe == "" && ffmpeg != "" {
		// ffprobe beside a given ffmpeg.
		if p := filepath.Join(filepath.Dir(a), "ffprobe"); isFile(p) {
			ffprobe = p
		}
	}
	b, err := find(ffprobe, "ffprobe")
	return a, b, err
}

func isFile(p string) bool { fi, err := os.Stat(p); return err == nil && !fi.IsDir() }

// Package encodes and segments opts.Input into opts.OutDir.
func Package(ctx context.Context, opts Options) (*Result, error) {
	ffmpeg, ffprobe, err := Tools(opts.FFmpeg, opts.FFprobe)
	if err != nil {
		return nil, err
	}
	if opts.SegmentDuration == 0 {
		opts.SegmentDuration = 2 * time.Second
	}
	if opts.SegmentDuration < 500*time.Millisecond || opts.SegmentDuration > 30*time.Second {
		return nil, fmt.Errorf("packager: segment duration %v: want 0.5s to 30s", opts.SegmentDuration)
	}
	if opts.Preset == "" {
		opts.Preset = "veryfast"
	}
	if opts.AudioBitrate == 0 {
		opts.AudioBitrate = 128_000
	}
	if opts.Ladder == nil {
		opts.Ladder = DefaultLadder
	}
	src, err := ProbeFile(ctx, ffprobe, opts.Input)
	if err != nil {
		return nil, err
	}
	if !src.HasVideo || src.Width <= 0 || src.Height <= 0 {
		return nil, fmt.Errorf("packager: %s has no video stream", opts.Input)
	}
	if src.Duration <= 0 {
		return nil, fmt.Errorf("packager: %s: unknown duration", opts.Input)
	}
	rungs := ChooseLadder(opts.Ladder, src.Height)
	if len(rungs) == 0 {
		return nil, errors.New("packager: empty ladder")
	}
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, wrapDisk(fmt.Errorf("packager: %w", err))
	}
	tmp, err := os.MkdirTemp(opts.OutDir, ".packaging-")
	if err != nil {
		return nil, wrapDisk(fmt.Errorf("packager: %w", err))
	}
	defer os.RemoveAll(tmp)

	fps := src.FPS
	if fps <= 0 {
		fps = 25
	}
	gop := int(math.Round(fps * opts.SegmentDuration.Seconds()))
	if gop < 1 {
		gop = 1
	}
	segSec := strconv.FormatFloat(opts.SegmentDuration.Seconds(), 'f', -1, 64)
	args := []string{"-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-i", opts.Input}
	var fc strings.Builder
	fmt.Fprintf(&fc, "[0:v:0]split=%d", len(rungs))
	for i := range rungs {
		fmt.Fprintf(&fc, "[s%d]", i)
	}
	for i, r := range rungs {
		fmt.Fprintf(&fc, ";[s%d]scale=-2:%d,setsar=1[v%d]", i, r.Height, i)
	}
	args = append(args, "-filter_complex", fc.String())
	for i := range rungs {
		args = append(args, "-map", fmt.Sprintf("[v%d]", i))
	}
	if src.HasAudio {
		args = append(args, "-map", "0:a:0")
	}
	args = append(args, "-c:v", "libx264", "-preset", opts.Preset, "-pix_fmt", "yuv420p",
		"-x264-params", "nal-hrd=cbr:force-cfr=1",
		"-g", strconv.Itoa(gop), "-keyint_min", strconv.Itoa(gop), "-sc_threshold", "0",
		"-force_key_frames", "expr:gte(t,n_forced*"+segSec+")")
	for i, r := range rungs {
		b := strconv.FormatInt(r.Bitrate, 10)
		// CBR: bit rate = min = max, the VBV buffer one second of it, so
		// each segment carries the advertised bandwidth.
		args = append(args, fmt.Sprintf("-b:v:%d", i), b, fmt.Sprintf("-minrate:v:%d", i), b,
			fmt.Sprintf("-maxrate:v:%d", i), b, fmt.Sprintf("-bufsize:v:%d", i), b)
	}
	if src.HasAudio {
		args = append(args, "-c:a", "aac", "-b:a", strconv.FormatInt(opts.AudioBitrate, 10), "-ac", "2")
	}
	args = append(args, "-f", "dash", "-seg_duration", segSec, "-use_template", "1", "-use_timeline", "1",
		"-init_seg_name", "init-$RepresentationID$.m4s", "-media_seg_name", "seg-$RepresentationID$-$Number%05d$.m4s",
		"-progress", "pipe:1", "-nostats", filepath.Join(tmp, "ffmpeg.mpd"))

	total := time.Duration(src.Duration * float64(time.Second))
	if err := runFFmpeg(ctx, ffmpeg, args, total, opts.Progress); err != nil {
		return nil, err
	}
	res, m, err := buildMPD(ctx, ffprobe, tmp, rungs, src, total, opts.SegmentDuration)
	if err != nil {
		return nil, err
	}
	data, err := mpd.Marshal(m)
	if err != nil {
		return nil, err
	}
	if err := os.Remove(filepath.Join(tmp, "ffmpeg.mpd")); err != nil {
		return nil, fmt.Errorf("packager: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, ManifestName), data, 0o644); err != nil {
		return nil, wrapDisk(fmt.Errorf("packager: %w", err))
	}
	// Replace an earlier packaging's files, then move the new ones in
	// (the manifest last, so a reader never sees it before its segments).
	old, _ := filepath.Glob(filepath.Join(opts.OutDir, "*.m4s"))
	for _, f := range append(old, filepath.Join(opts.OutDir, ManifestName)) {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("packager: %w", err)
		}
	}
	files, err := os.ReadDir(tmp)
	if err != nil {
		return nil, fmt.Errorf("packager: %w", err)
	}
	for _, f := range files {
		if f.Name() == ManifestName {
			continue
		}
		if err := os.Rename(filepath.Join(tmp, f.Name()), filepath.Join(opts.OutDir, f.Name())); err != nil {
			return nil, fmt.Errorf("packager: %w", err)
		}
	}
	res.MPD = filepath.Join(opts.OutDir, ManifestName)
	if err := os.Rename(filepath.Join(tmp, ManifestName), res.MPD); err != nil {
		return nil, fmt.Errorf("packager: %w", err)
	}
	return res, nil
}

// runFFmpeg runs ffmpeg, feeding its -progress lines to progress.
func runFFmpeg(ctx context.Context, ffmpeg string, args []string, total time.Duration, progress func(Progress)) error {
	cmd := exec.CommandContext(ctx, ffmpeg, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{b: &stderr, max: 64 << 10}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("packager: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("packager: starting ffmpeg: %w", err)
	}
	readProgress(out, total, progress)
	if err := cmd.Wait(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("packager: %w", ctx.Err())
		}
		msg := strings.TrimSpace(lastLines(stderr.String(), 4))
		if strings.Contains(msg, "No space left on device") {
			return fmt.Errorf("%w: ffmpeg: %s", ErrDiskFull, msg)
		}
		return fmt.Errorf("packager: ffmpeg failed (%v): %s", err, msg)
	}
	return nil
}

// readProgress parses ffmpeg's -progress key=value blocks.
func readProgress(r io.Reader, total time.Duration, progress func(Progress)) {
	sc := bufio.NewScanner(r)
	p := Progress{Total: total}
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch k {
		case "out_time_us", "out_time_ms": // both are microseconds
			if us, err := strconv.ParseInt(v, 10, 64); err == nil && us >= 0 {
				p.Done = time.Duration(us) * time.Microsecond
			}
		case "speed":
			p.Speed = strings.TrimSpace(v)
		case "progress":
			p.Finished = v == "end"
			if p.Finished {
				p.Done = total
			}
			if progress != nil {
				progress(p)
			}
		}
	}
	_, _ = io.Copy(io.Discard, r)
}

type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func wrapDisk(err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%w: %v", ErrDiskFull, err)
	}
	return err
}

// buildMPD reads ffmpeg's manifest and segments in dir and builds ours.
func buildMPD(ctx context.Context, ffprobe, dir string, rungs []Rung, src *Probe, total, segDur time.Duration) (*Result, *mpd.MPD, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "ffmpeg.mpd"))
	if err != nil {
		return nil, nil, fmt.Errorf("packager: ffmpeg wrote no manifest: %w", err)
	}
	fm, err := mpd.Parse(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("packager: ffmpeg's manifest: %w", err)
	}
	// ffmpeg numbers representations in map order: rungs, then audio.
	reps := map[string]*mpd.Representation{}
	tmpls := map[string]*mpd.SegmentTemplate{}
	for _, p := range fm.Periods {
		for ai := range p.AdaptationSets {
			as := &p.AdaptationSets[ai]
			for ri := range as.Representations {
				r := &as.Representations[ri]
				reps[r.ID] = r
				t := r.SegmentTemplate
				if t == nil {
					t = as.SegmentTemplate
				}
				tmpls[r.ID] = t
			}
		}
	}
	res := &Result{Rungs: rungs, Audio: src.HasAudio, Duration: total}
	var videoTL *mpd.SegmentTemplate
	var maxW, maxH int
	video := mpd.AdaptationSet{ID: "0", ContentType: "video", MimeType: "video/mp4", SegmentAlignment: true, StartWithSAP: 1, Par: ""}
	for i, rung := range rungs {
		id := strconv.Itoa(i)
		t := tmpls[id]
		if t == nil || t.SegmentTimeline == nil {
			return nil, nil, fmt.Errorf("packager: ffmpeg's manifest lacks representation %s's timeline", id)
		}
		if videoTL == nil {
			videoTL = t
		} else if !sameTimeline(videoTL, t) {
			return nil, nil, fmt.Errorf("packager: rung %s's segments are not aligned with rung %s's", rung, rungs[0])
		}
		init, err := os.ReadFile(filepath.Join(dir, "init-"+id+".m4s"))
		if err != nil {
			return nil, nil, fmt.Errorf("packager: %w", err)
		}
		codecs, err := AVCCodecs(init)
		if err != nil {
			return nil, nil, fmt.Errorf("packager: rung %s: %w", rung, err)
		}
		res.Codecs = append(res.Codecs, codecs)
		w, h := reps[id].Width, reps[id].Height
		if w == 0 {
			w = evenWidth(src, rung.Height)
			h = rung.Height
		}
		maxW, maxH = max(maxW, w), max(maxH, h)
		video.Representations = append(video.Representations, mpd.Representation{
			ID: "v" + id, Codecs: codecs, Bandwidth: rung.Bitrate, Width: w, Height: h, Sar: "1:1",
		})
	}
	// Check one segment per rung with ffprobe: it must decode as H.264 of
	// the rung's height.
	for i, rung := range rungs {
		seg := filepath.Join(dir, fmt.Sprintf("seg-%d-%05d.m4s", i, 1))
		init := filepath.Join(dir, fmt.Sprintf("init-%d.m4s", i))
		joined := filepath.Join(dir, fmt.Sprintf("check-%d.mp4", i))
		if err := concat(joined, init, seg); err != nil {
			return nil, nil, err
		}
		p, err := ProbeFile(ctx, ffprobe, joined)
		os.Remove(joined)
		if err != nil {
			return nil, nil, err
		}
		if p.VideoCodec != "h264" || p.Height != rung.Height {
			return nil, nil, fmt.Errorf("packager: rung %s reads back as %s %dx%d", rung, p.VideoCodec, p.Width, p.Height)
		}
	}
	video.MaxWidth, video.MaxHeight = maxW, maxH
	video.FrameRate = frameRate(src.FPS)
	video.SegmentTemplate = &mpd.SegmentTemplate{
		Timescale: videoTL.Timescale, StartNumber: videoTL.StartNumber,
		Initialization: "init-$RepresentationID$.m4s", Media: "seg-$RepresentationID$-$Number%05d$.m4s",
		SegmentTimeline: videoTL.SegmentTimeline,
	}
	// Our IDs are v0.., a0: rename ffmpeg's files to match.
	for i := range rungs {
		if err := renameRep(dir, strconv.Itoa(i), "v"+strconv.Itoa(i)); err != nil {
			return nil, nil, err
		}
	}
	res.Segments = len(expandTimeline(videoTL.SegmentTimeline))
	m := &mpd.MPD{
		Profiles: mpd.ProfileLive, Type: "static",
		MediaPresentationDuration: mpd.Duration(total),
		MinBufferTime:             mpd.Duration(2 * segDur),
		MaxSegmentDuration:        mpd.Duration(maxSegment(videoTL)),
		Periods:                   []mpd.Period{{ID: "0", Start: 0}},
	}
	m.Periods[0].AdaptationSets = append(m.Periods[0].AdaptationSets, video)
	if src.HasAudio {
		id := strconv.Itoa(len(rungs))
		t, r := tmpls[id], reps[id]
		if t == nil || r == nil {
			return nil, nil, errors.New("packager: ffmpeg's manifest lacks the audio representation")
		}
		init := filepath.Join(dir, "init-"+id+".m4s")
		seg := filepath.Join(dir, fmt.Sprintf("seg-%s-%05d.m4s", id, 1))
		joined := filepath.Join(dir, "check-audio.mp4")
		if err := concat(joined, init, seg); err != nil {
			return nil, nil, err
		}
		p, err := ProbeFile(ctx, ffprobe, joined)
		os.Remove(joined)
		if err != nil {
			return nil, nil, err
		}
		if !p.HasAudio || p.AudioCodec != "aac" {
			return nil, nil, fmt.Errorf("packager: audio reads back as %q", p.AudioCodec)
		}
		if err := renameRep(dir, id, "a0"); err != nil {
			return nil, nil, err
		}
		m.Periods[0].AdaptationSets = append(m.Periods[0].AdaptationSets, mpd.AdaptationSet{
			ID: "1", ContentType: "audio", MimeType: "audio/mp4", Lang: "und", SegmentAlignment: true, StartWithSAP: 1,
			SegmentTemplate: &mpd.SegmentTemplate{
				Timescale: t.Timescale, StartNumber: t.StartNumber,
				Initialization: "init-$RepresentationID$.m4s", Media: "seg-$RepresentationID$-$Number%05d$.m4s",
				SegmentTimeline: t.SegmentTimeline,
			},
			Representations: []mpd.Representation{{
				ID: "a0", Codecs: aacCodecs(p.AudioProfile), Bandwidth: r.Bandwidth,
				AudioSamplingRate: strconv.Itoa(p.SampleRate),
				AudioChannelConfs: []mpd.AudioChannelCfg{{SchemeIDURI: "urn:mpeg:dash:23003:3:audio_channel_configuration:2011", Value: strconv.Itoa(p.Channels)}},
			}},
		})
	}
	return res, m, nil
}

func evenWidth(src *Probe, h int) int {
	w := int(math.Round(float64(src.Width) * float64(h) / float64(src.Height)))
	return w &^ 1
}

func frameRate(fps float64) string {
	if fps <= 0 {
		return ""
	}
	if math.Abs(fps-math.Round(fps)) < 1e-6 {
		return strconv.Itoa(int(math.Round(fps)))
	}
	return strconv.Itoa(int(math.Round(fps*1001))) + "/1001"
}

func sameTimeline(a, b *mpd.SegmentTemplate) bool {
	if a.Timescale != b.Timescale {
		return false
	}
	x, y := expandTimeline(a.SegmentTimeline), expandTimeline(b.SegmentTimeline)
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

// expandTimeline lists segment start times (ffmpeg writes no r=-1).
func expandTimeline(tl *mpd.SegmentTimeline) []uint64 {
	var out []uint64
	var t uint64
	for _, s := range tl.S {
		if s.T != nil {
			t = *s.T
		}
		for range max(s.R, 0) + 1 {
			out = append(out, t)
			t += s.D
		}
	}
	return out
}

func maxSegment(t *mpd.SegmentTemplate) time.Duration {
	var d uint64
	for _, s := range t.SegmentTimeline.S {
		d = max(d, s.D)
	}
	ts := max(t.Timescale, 1)
	return time.Duration(float64(d) / float64(ts) * float64(time.Second))
}

func renameRep(dir, from, to string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*-"+from+"*.m4s"))
	if err != nil {
		return err
	}
	for _, f := range files {
		base := filepath.Base(f)
		var nb string
		switch {
		case base == "init-"+from+".m4s":
			nb = "init-" + to + ".m4s"
		case strings.HasPrefix(base, "seg-"+from+"-"):
			nb = "seg-" + to + "-" + strings.TrimPrefix(base, "seg-"+from+"-")
		default:
			continue
		}
		if err := os.Rename(f, filepath.Join(dir, nb)); err != nil {
			return fmt.Errorf("packager: %w", err)
		}
	}
	return nil
}

func concat(dst string, srcs ...string) error {
	var b []byte
	for _, s := range srcs {
		d, err := os.ReadFile(s)
		if err != nil {
			return fmt.Errorf("packager: %w", err)
		}
		b = append(b, d...)
	}
	return wrapDisk(os.WriteFile(dst, b, 0o644))
}
