// Package player is applayer's DASH client: it reads an MPD, downloads the
// segments (video and audio) through a Fetcher (the web client, or a
// simulated network), keeps a playout buffer filled by downloads and
// drained in real time, starts once the buffer reaches a threshold, stalls
// when it empties, pauses and seeks, chooses each segment's rung with an
// ABR algorithm (stream/abr), abandons a download that would stall
// playback for a lower rung, and reports QoE.
//
// Time comes from a Clock, so the same code runs in real time against an
// origin and on a simulated clock in tests.
package player

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"sort"
	"time"

	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/stream/abr"
	"github.com/applayer/applayer/stream/mpd"
)

// Options configure a playback.
type Options struct {
	Fetcher Fetcher
	Clock   Clock // default RealClock
	// Algorithm chooses rungs. Default Throughput.
	Algorithm abr.Algorithm
	// Startup is the buffer needed before playback starts (and after a
	// seek). Default one segment.
	Startup time.Duration
	// Resume is the buffer needed to resume after a stall. Default one
	// segment.
	Resume time.Duration
	// MaxBuffer is how far ahead the player downloads. Default 30s.
	MaxBuffer time.Duration
	// Mu is QoE_lin's penalty per second of rebuffering, in Mbit/s.
	// Default the top rung's rate in Mbit/s (as the MPC and Pensieve
	// papers set it).
	Mu float64
	// NoAbandon keeps every download to its end.
	NoAbandon bool
	// NoAudio skips the audio track.
	NoAudio bool
	// MaxSegments stops after this many segments (0: all).
	MaxSegments int
	// Events are scripted pauses and seeks.
	Events []Event
	// Trace receives segment requests and rung decisions.
	Trace *trace.Bus
	// Host names the player on the trace bus.
	Host   string
	Logger *slog.Logger
	// OnSegment is called after each segment.
	OnSegment func(SegmentLog)
	// Keep receives every downloaded object's body (with HTTPFetcher.Keep).
	Keep func(kind string, rung, index int, body []byte)
}

// Event is a scripted user action at a time after playback begins.
type Event struct {
	At     time.Duration
	Action string        // "pause", "resume" or "seek"
	To     time.Duration // seek target
}

// SegmentLog is one downloaded segment.
type SegmentLog struct {
	Index      int     `json:"index"`
	Rung       int     `json:"rung"`
	Bitrate    float64 `json:"bitrate"` // bit/s advertised
	Bytes      int64   `json:"bytes"`   // video + audio
	Start      float64 `json:"start"`   // s since the session began
	End        float64 `json:"end"`
	Throughput float64 `json:"throughput"` // bit/s
	Buffer     float64 `json:"buffer"`     // s, after it arrived
	Abandoned  []int   `json:"abandoned,omitempty"`
	Algorithm  string  `json:"-"`
}

// Sample is the state at a moment, for plots.
type Sample struct {
	T       float64 `json:"t"`
	Buffer  float64 `json:"buffer"`
	Bitrate float64 `json:"bitrate"`
	Rate    float64 `json:"throughput"`
}

// Report is a playback's outcome.
type Report struct {
	Algorithm   string       `json:"algorithm"`
	Bitrates    []float64    `json:"bitrates"`
	SegDur      float64      `json:"segment_duration"`
	Segments    []SegmentLog `json:"segments"`
	Startup     float64      `json:"startup_s"`
	Stalls      int          `json:"stalls"`
	StallTime   float64      `json:"stall_s"`
	AvgBitrate  float64      `json:"avg_bitrate"`
	Switches    int          `json:"switches"`
	Abandoned   int          `json:"abandoned"`
	Mu          float64      `json:"mu"`
	QoE         float64      `json:"qoe_lin"`
	QoEPerChunk float64      `json:"qoe_per_chunk"`
	Optimum     *float64     `json:"optimum_per_chunk,omitempty"`
	Samples     []Sample     `json:"samples"`
	Bytes       int64        `json:"bytes"`
}

// QoE is QoE_lin = sum R_k - mu * rebuffer - sum |R_k+1 - R_k|, rates in
// Mbit/s, rebuffering in seconds.
func QoE(bitrates []float64, rebuffer, mu float64) float64 {
	var q float64
	for i, r := range bitrates {
		q += r / 1e6
		if i > 0 {
			q -= math.Abs(r-bitrates[i-1]) / 1e6
		}
	}
	return q - mu*rebuffer
}

// Presentation is a parsed MPD's video ladder and audio track.
type Presentation struct {
	Video    []*mpd.Track // by bandwidth, ascending
	Audio    *mpd.Track   // nil without audio
	Bitrates []float64
	SegDur   float64 // nominal (the longest) segment duration, s
	Duration float64
}

// Load parses an MPD fetched from base: every video Representation (in one
// AdaptationSet or several, as ffmpeg's dash muxer writes them) becomes a
// rung; the first audio Representation is the audio track.
func Load(data []byte, base *url.URL) (*Presentation, error) {
	m, err := mpd.Parse(data)
	if err != nil {
		return nil, err
	}
	p := &Presentation{Duration: time.Duration(m.MediaPresentationDuration).Seconds()}
	for ai := range m.Periods[0].AdaptationSets {
		as := &m.Periods[0].AdaptationSets[ai]
		for ri := range as.Representations {
			r := &as.Representations[ri]
			kind := as.ContentType
			if kind == "" {
				mt := as.MimeType
				if mt == "" {
					mt = r.MimeType
				}
				switch {
				case len(mt) >= 5 && mt[:5] == "video":
					kind = "video"
				case len(mt) >= 5 && mt[:5] == "audio":
					kind = "audio"
				}
			}
			switch kind {
			case "video":
				t, err := m.Track(0, as, r, base)
				if err != nil {
					return nil, err
				}
				p.Video = append(p.Video, t)
			case "audio":
				if p.Audio == nil {
					t, err := m.Track(0, as, r, base)
					if err != nil {
						return nil, err
					}
					p.Audio = t
				}
			}
		}
	}
	if len(p.Video) == 0 {
		return nil, errors.New("player: the MPD has no video Representation")
	}
	sort.SliceStable(p.Video, func(i, j int) bool { return p.Video[i].Rep.Bandwidth < p.Video[j].Rep.Bandwidth })
	n := len(p.Video[0].Segments)
	for _, t := range p.Video {
		if len(t.Segments) != n {
			return nil, fmt.Errorf("player: rungs have %d and %d segments: not aligned", n, len(t.Segments))
		}
		p.Bitrates = append(p.Bitrates, float64(t.Rep.Bandwidth))
	}
	for _, s := range p.Video[0].Segments {
		p.SegDur = max(p.SegDur, s.Duration.Seconds())
	}
	if p.Duration == 0 {
		last := p.Video[0].Segments[n-1]
		p.Duration = (last.Start + last.Duration).Seconds()
	}
	return p, nil
}

// state is the playout buffer.
type state int

const (
	starting state = iota
	playing
	stalled
	paused
	seeking
)

type playback struct {
	st         state
	before     state // the state a pause interrupted
	pos, end   float64
	last       time.Time
	stalls     int
	stallTime  float64
	startup    float64
	started    bool
	total      float64
	resumeNeed float64
}

// advance moves playback to now: the buffer drains while playing; an
// empty buffer before the end is a stall.
func (p *playback) advance(now time.Time) {
	dt := now.Sub(p.last).Seconds()
	p.last = now
	if dt <= 0 {
		return
	}
	switch p.st {
	case playing:
		avail := p.end - p.pos
		if dt <= avail {
			p.pos += dt
			return
		}
		p.pos = p.end
		if p.end >= p.total-1e-6 {
			return // played to the end
		}
		p.st = stalled
		p.stalls++
		p.stallTime += dt - avail
	case stalled:
		p.stallTime += dt
	case starting:
		p.startup += dt
	}
}

func (p *playback) level() float64 { return p.end - p.pos }

// arrived adds a segment and starts or resumes playback when enough is
// buffered.
func (p *playback) arrived(d, startup float64) {
	p.end += d
	done := p.end >= p.total-1e-6
	switch p.st {
	case starting:
		if p.level() >= startup-1e-9 || done {
			p.st, p.started = playing, true
		}
	case seeking:
		if p.level() >= startup-1e-9 || done {
			p.st = playing
		}
	case stalled:
		if p.level() >= p.resumeNeed-1e-9 || done {
			p.st = playing
		}
	}
}

// Play runs a playback of the MPD at mpdURL until every segment has
// arrived (nothing after can stall) or ctx ends.
func Play(ctx context.Context, mpdURL string, o Options) (*Report, error) {
	if o.Fetcher == nil {
		return nil, errors.New("player: no fetcher")
	}
	if o.Clock == nil {
		o.Clock = RealClock{}
	}
	if o.Algorithm == nil {
		o.Algorithm = &abr.Throughput{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	base, err := url.Parse(mpdURL)
	if err != nil || !base.IsAbs() {
		return nil, fmt.Errorf("player: bad MPD URL %q", mpdURL)
	}
	data, err := FetchManifest(ctx, o.Fetcher, o.Clock, mpdURL, time.Minute)
	if err != nil {
		return nil, err
	}
	pres, err := Load(data, base)
	if err != nil {
		return nil, err
	}
	return pres.Play(ctx, o)
}

// Play plays a loaded presentation.
func (pres *Presentation) Play(ctx context.Context, o Options) (*Report, error) {
	if o.Clock == nil {
		o.Clock = RealClock{}
	}
	if o.Algorithm == nil {
		o.Algorithm = &abr.Throughput{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	segDur := pres.SegDur
	startup := o.Startup.Seconds()
	if startup <= 0 {
		startup = segDur
	}
	resume := o.Resume.Seconds()
	if resume <= 0 {
		resume = segDur
	}
	maxBuf := o.MaxBuffer.Seconds()
	if maxBuf <= 0 {
		maxBuf = 30
	}
	maxBuf = max(maxBuf, startup+segDur)
	mu := o.Mu
	if mu == 0 {
		mu = pres.Bitrates[len(pres.Bitrates)-1] / 1e6
	}
	n := len(pres.Video[0].Segments)
	if o.MaxSegments > 0 {
		n = min(n, o.MaxSegments)
	}
	total := 0.0
	for _, s := range pres.Video[0].Segments[:n] {
		total += s.Duration.Seconds()
	}
	t0 := o.Clock.Now()
	pb := &playback{st: starting, last: t0, total: total, resumeNeed: resume}
	rep := &Report{Algorithm: o.Algorithm.Name(), Bitrates: pres.Bitrates, SegDur: segDur, Mu: mu}
	sizes := map[[2]int]float64{}
	inits := map[int]bool{}
	audioInit := false
	events := append([]Event(nil), o.Events...)
	sort.SliceStable(events, func(i, j int) bool { return events[i].At < events[j].At })
	last := -1
	var throughputs, times []float64 // per download: bit/s, seconds
	since := func(t time.Time) float64 { return t.Sub(t0).Seconds() }
	sample := func(now time.Time, bitrate, rate float64) {
		rep.Samples = append(rep.Samples, Sample{T: since(now), Buffer: pb.level(), Bitrate: bitrate, Rate: rate})
	}
	publish := func(summary string, bytes int) {
		if o.Trace.Enabled() {
			o.Trace.Publish(trace.Event{Type: trace.State, From: o.Host, Proto: "dash", Summary: summary, Bytes: bytes}) // the player's own decisions
		}
	}
	idx := 0
	audioHad := -1 // the index whose audio segment is fetched
	extra := 0.0   // the audio's bit rate, fetched with every segment
	if pres.Audio != nil && !o.NoAudio {
		extra = float64(pres.Audio.Rep.Bandwidth)
	}
	// applyEvents handles due events; it returns the time to the next.
	applyEvents := func(now time.Time) time.Duration {
		for len(events) > 0 && now.Sub(t0) >= events[0].At {
			e := events[0]
			events = events[1:]
			switch e.Action {
			case "pause":
				if pb.st != paused {
					pb.before, pb.st = pb.st, paused
				}
			case "resume":
				if pb.st == paused {
					pb.st = pb.before
				}
			case "seek":
				k := 0
				for i, s := range pres.Video[0].Segments[:n] {
					if s.Start <= e.To {
						k = i
					}
				}
				pb.pos = pres.Video[0].Segments[k].Start.Seconds()
				pb.end = pb.pos
				idx = k
				audioHad = -1
				if pb.st != paused {
					pb.st = seeking
				} else {
					pb.before = seeking
				}
			}
			publish(fmt.Sprintf("%s %v at %.1fs", e.Action, e.To, since(now)), 0)
		}
		if len(events) > 0 {
			return events[0].At - now.Sub(t0)
		}
		return -1
	}
	// obs is how long a download is watched before its rate may abandon
	// it: a tenth of a segment, or up to a whole segment while a quarter
	// of the buffer allows (the first fraction of a second of a download
	// in a tunnel's last moments says little about the rest of it).
	obs := func(buf float64) float64 {
		return max(0.1*segDur, min(segDur, buf/4))
	}
	fetch := func(u string, progress func(got, total int64) bool) ([]byte, int64, error) {
		return o.Fetcher.Fetch(ctx, u, progress)
	}
	hasAudio := func(i int) bool { return pres.Audio != nil && !o.NoAudio && i < len(pres.Audio.Segments) }
	// fetchAudio fetches segment i's audio (and the audio init first);
	// it returns the bytes.
	fetchAudio := func(i int) (int64, error) {
		audioHad = i
		if !hasAudio(i) {
			return 0, nil
		}
		var bytes int64
		if !audioInit && pres.Audio.Init != "" {
			body, m, err := fetch(pres.Audio.Init, nil)
			if err != nil {
				return 0, err
			}
			if o.Keep != nil {
				o.Keep("audio-init", 0, -1, body)
			}
			bytes += m
			audioInit = true
		}
		body, m, err := fetch(pres.Audio.Segments[i].URL, nil)
		if err != nil {
			return 0, err
		}
		if o.Keep != nil {
			o.Keep("audio", 0, i, body)
		}
		return bytes + m, nil
	}
	for idx < n {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		now := o.Clock.Now()
		pb.advance(now)
		next := applyEvents(now)
		if idx >= n {
			break
		}
		// A full buffer (or a pause with a full buffer) waits.
		if over := pb.level() - (maxBuf - segDur); over > 1e-9 {
			wait := time.Duration(over * float64(time.Second))
			if pb.st == paused || pb.st == starting {
				wait = time.Second
			}
			if next >= 0 && next < wait {
				wait = next
			}
			if err := o.Clock.Sleep(ctx, max(wait, time.Millisecond)); err != nil {
				return nil, err
			}
			continue
		}
		// With no throughput sample yet (the first segment), the
		// segment's audio goes first and its download rate is
		// the first sample: the first rung is chosen on a measurement, not
		// a guess.
		var probed int64
		if len(throughputs) == 0 && hasAudio(idx) {
			t := o.Clock.Now()
			m, err := fetchAudio(idx)
			if err != nil {
				return nil, err
			}
			if dl := o.Clock.Now().Sub(t).Seconds(); dl > 0 && m > 0 {
				throughputs, times = append(throughputs, float64(m)*8/dl), append(times, dl)
			}
			probed = m
			pb.advance(o.Clock.Now())
		}
		st := &abr.State{
			Bitrates: pres.Bitrates, SegDur: segDur, Index: idx, Segments: n, Buffer: pb.level(),
			MaxBuffer: maxBuf, Last: last, Throughputs: throughputs, Times: times,
			Size: func(i, r int) float64 { return sizes[[2]int{i, r}] }, Extra: extra,
		}
		rung := o.Algorithm.Choose(st)
		rung = min(max(rung, 0), len(pres.Video)-1)
		publish(fmt.Sprintf("%s chose rung %d (%.0f kbit/s) for segment %d, buffer %.1fs", o.Algorithm.Name(), rung, pres.Bitrates[rung]/1e3, idx+1, pb.level()), 0)
		start := o.Clock.Now()
		var bytes int64
		if !inits[rung] {
			body, m, err := fetch(pres.Video[rung].Init, nil)
			if err != nil {
				return nil, err
			}
			if o.Keep != nil {
				o.Keep("video-init", rung, -1, body)
			}
			bytes += m
			inits[rung] = true
		}
		var abandoned []int
		for {
			seg := pres.Video[rung].Segments[idx]
			publish(fmt.Sprintf("GET %s (segment %d, rung %d)", seg.URL, idx+1, rung), 0)
			segStart := o.Clock.Now()
			cur := rung
			var lower int
			progress := func(got, total int64) bool {
				if o.NoAbandon || cur == 0 || len(abandoned) > 0 || total <= 0 || got <= 0 {
					return true
				}
				now := o.Clock.Now()
				el := now.Sub(segStart).Seconds()
				pb.advance(now)
				if el < obs(pb.level()) {
					return true
				}
				rate := float64(got) * 8 / el
				remain := float64(total-got) * 8 / rate
				buf := pb.level()
				if pb.st != playing || remain <= buf {
					return true
				}
				// It would stall: the highest lower rung whose whole segment
				// fits in the buffer at this rate, else the lowest.
				lower = 0
				for r := cur - 1; r >= 0; r-- {
					sz := sizes[[2]int{idx, r}]
					if sz == 0 {
						sz = pres.Bitrates[r] * segDur / 8
					}
					if sz*8/rate < buf {
						lower = r
						break
					}
				}
				// Only worth it if the lower rung finishes sooner than this one.
				sz := sizes[[2]int{idx, lower}]
				if sz == 0 {
					sz = pres.Bitrates[lower] * segDur / 8
				}
				return sz*8/rate >= remain
			}
			body, m, err := fetch(seg.URL, progress)
			bytes += m
			if errors.Is(err, ErrAbandoned) {
				abandoned = append(abandoned, cur)
				rep.Abandoned++
				publish(fmt.Sprintf("abandoned segment %d at rung %d after %d bytes; retrying at rung %d", idx+1, cur, m, lower), int(m))
				rung = lower
				if !inits[rung] {
					body, m, err := fetch(pres.Video[rung].Init, nil)
					if err != nil {
						return nil, err
					}
					if o.Keep != nil {
						o.Keep("video-init", rung, -1, body)
					}
					bytes += m
					inits[rung] = true
				}
				continue
			}
			if err != nil {
				return nil, err
			}
			sizes[[2]int{idx, rung}] = float64(m)
			if o.Keep != nil {
				o.Keep("video", rung, idx, body)
			}
			break
		}
		if audioHad != idx {
			m, err := fetchAudio(idx)
			if err != nil {
				return nil, err
			}
			bytes += m
		}
		end := o.Clock.Now()
		dl := end.Sub(start).Seconds()
		tput := 0.0
		if dl > 0 {
			tput = float64(bytes) * 8 / dl
			throughputs, times = append(throughputs, tput), append(times, dl)
		}
		bytes += probed
		pb.advance(end)
		pb.arrived(pres.Video[rung].Segments[idx].Duration.Seconds(), startup)
		if last >= 0 && rung != last {
			rep.Switches++
		}
		last = rung
		sl := SegmentLog{Index: idx, Rung: rung, Bitrate: pres.Bitrates[rung], Bytes: bytes, Start: since(start), End: since(end),
			Throughput: tput, Buffer: pb.level(), Abandoned: abandoned, Algorithm: o.Algorithm.Name()}
		rep.Segments = append(rep.Segments, sl)
		rep.Bytes += bytes
		sample(end, pres.Bitrates[rung], tput)
		publish(fmt.Sprintf("segment %d arrived: rung %d, %d bytes in %.2fs (%.0f kbit/s), buffer %.1fs", idx+1, rung, bytes, dl, tput/1e3, pb.level()), int(bytes))
		if o.OnSegment != nil {
			o.OnSegment(sl)
		}
		idx++
	}
	rep.Startup, rep.Stalls, rep.StallTime = pb.startup, pb.stalls, pb.stallTime
	var rates []float64
	for _, s := range rep.Segments {
		rates = append(rates, s.Bitrate)
		rep.AvgBitrate += s.Bitrate
	}
	if len(rates) > 0 {
		rep.AvgBitrate /= float64(len(rates))
		rep.QoE = QoE(rates, rep.StallTime, mu)
		rep.QoEPerChunk = rep.QoE / float64(len(rates))
	}
	return rep, nil
}
