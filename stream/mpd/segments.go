package mpd

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Segment is one media segment of a Representation.
type Segment struct {
	URL      string        // absolute
	Number   uint64        // $Number$
	Time     uint64        // $Time$, in the template's timescale
	Start    time.Duration // from the Period's start
	Duration time.Duration
}

// Track is a Representation's resolved addressing: its initialization
// segment and its media segments in order.
type Track struct {
	Rep      *Representation
	Set      *AdaptationSet
	Init     string // absolute URL, "" when the template has none
	Segments []Segment
}

// Track resolves the segments of the Representation rep of set in period
// pi against base (the MPD's own URL).
func (m *MPD) Track(pi int, set *AdaptationSet, rep *Representation, base *url.URL) (*Track, error) {
	if pi < 0 || pi >= len(m.Periods) {
		return nil, fmt.Errorf("mpd: no period %d", pi)
	}
	p := &m.Periods[pi]
	b := base
	for _, ref := range []string{m.BaseURL, p.BaseURL, set.BaseURL, rep.BaseURL} {
		if ref = strings.TrimSpace(ref); ref == "" {
			continue
		}
		u, err := url.Parse(ref)
		if err != nil {
			return nil, fmt.Errorf("mpd: BaseURL %q: %w", ref, err)
		}
		b = b.ResolveReference(u)
	}
	t := rep.SegmentTemplate
	if t == nil {
		t = set.SegmentTemplate
	}
	if t == nil {
		return nil, fmt.Errorf("%w: representation %q has no SegmentTemplate", ErrUnsupported, rep.ID)
	}
	ts := t.Timescale
	if ts == 0 {
		ts = 1
	}
	start := uint64(1)
	if t.StartNumber != nil {
		start = *t.StartNumber
	}
	resolve := func(tmpl string, num, tm uint64) (string, error) {
		s, err := expand(tmpl, rep, num, tm)
		if err != nil {
			return "", err
		}
		u, err := url.Parse(s)
		if err != nil {
			return "", fmt.Errorf("mpd: segment URL %q: %w", s, err)
		}
		return b.ResolveReference(u).String(), nil
	}
	tr := &Track{Rep: rep, Set: set}
	if t.Initialization != "" {
		u, err := resolve(t.Initialization, 0, 0)
		if err != nil {
			return nil, err
		}
		tr.Init = u
	}
	periodDur := time.Duration(p.Duration)
	if periodDur == 0 && len(m.Periods) == 1 {
		periodDur = time.Duration(m.MediaPresentationDuration) - time.Duration(p.Start)
	}
	toDur := func(v uint64) time.Duration {
		return time.Duration(float64(v) / float64(ts) * float64(time.Second))
	}
	add := func(num, tm, d uint64) error {
		if len(tr.Segments) >= maxSegments {
			return fmt.Errorf("mpd: representation %q has more than %d segments", rep.ID, maxSegments)
		}
		u, err := resolve(t.Media, num, tm)
		if err != nil {
			return err
		}
		off := tm - min(tm, t.PresentationTO)
		tr.Segments = append(tr.Segments, Segment{URL: u, Number: num, Time: tm, Start: toDur(off), Duration: toDur(d)})
		return nil
	}
	num := start
	if t.SegmentTimeline != nil {
		var tm uint64
		for i, s := range t.SegmentTimeline.S {
			if s.T != nil {
				if i > 0 && *s.T < tm {
					return nil, fmt.Errorf("mpd: representation %q: SegmentTimeline goes back in time at S %d", rep.ID, i)
				}
				tm = *s.T
			}
			if s.D == 0 {
				return nil, fmt.Errorf("mpd: representation %q: S with d=0", rep.ID)
			}
			n := s.R + 1
			if s.R < 0 {
				// Repeat until the next S's t or the period's end.
				var end uint64
				switch {
				case i+1 < len(t.SegmentTimeline.S) && t.SegmentTimeline.S[i+1].T != nil:
					end = *t.SegmentTimeline.S[i+1].T
				case periodDur > 0:
					end = t.PresentationTO + uint64(periodDur.Seconds()*float64(ts))
				default:
					return nil, fmt.Errorf("mpd: representation %q: r=-1 with no end", rep.ID)
				}
				if end <= tm {
					n = 0
				} else {
					n = int64((end - tm + s.D - 1) / s.D)
				}
			}
			if n > maxSegments {
				return nil, fmt.Errorf("mpd: representation %q: S repeats %d times", rep.ID, n)
			}
			for range n {
				if err := add(num, tm, s.D); err != nil {
					return nil, err
				}
				if tm > math.MaxUint64-s.D {
					return nil, errors.New("mpd: SegmentTimeline overflows")
				}
				tm += s.D
				num++
			}
		}
	} else {
		if periodDur <= 0 {
			return nil, fmt.Errorf("mpd: representation %q: SegmentTemplate@duration with no presentation duration", rep.ID)
		}
		segDur := float64(t.Duration) / float64(ts)
		count := math.Ceil(periodDur.Seconds()/segDur - 1e-9)
		if count > maxSegments {
			return nil, fmt.Errorf("mpd: representation %q: %v segments", rep.ID, count)
		}
		for i := range uint64(count) {
			tm := t.PresentationTO + i*t.Duration
			d := t.Duration
			if rest := periodDur.Seconds() - float64(i)*segDur; rest < segDur {
				d = uint64(rest * float64(ts))
			}
			if err := add(num, tm, d); err != nil {
				return nil, err
			}
			num++
		}
	}
	if len(tr.Segments) == 0 {
		return nil, fmt.Errorf("mpd: representation %q has no segments", rep.ID)
	}
	return tr, nil
}

// expand fills a SegmentTemplate string's identifiers ($RepresentationID$,
// $Number$, $Time$, $Bandwidth$, with an optional %0Nd width, and $$).
func expand(tmpl string, rep *Representation, num, tm uint64) (string, error) {
	var b strings.Builder
	for {
		i := strings.IndexByte(tmpl, '$')
		if i < 0 {
			b.WriteString(tmpl)
			return b.String(), nil
		}
		b.WriteString(tmpl[:i])
		rest := tmpl[i+1:]
		j := strings.IndexByte(rest, '$')
		if j < 0 {
			return "", fmt.Errorf("mpd: template %q: unterminated $", tmpl)
		}
		id, format := rest[:j], ""
		if k := strings.IndexByte(id, '%'); k >= 0 {
			id, format = id[:k], id[k:]
		}
		var v string
		switch id {
		case "":
			v = "$"
		case "RepresentationID":
			v = rep.ID
		case "Number":
			v = strconv.FormatUint(num, 10)
		case "Time":
			v = strconv.FormatUint(tm, 10)
		case "Bandwidth":
			v = strconv.FormatInt(rep.Bandwidth, 10)
		default:
			return "", fmt.Errorf("mpd: template %q: unknown identifier $%s$", tmpl, id)
		}
		if format != "" {
			if id == "RepresentationID" || id == "" {
				return "", fmt.Errorf("mpd: template %q: format on $%s$", tmpl, id)
			}
			w, err := width(format)
			if err != nil {
				return "", fmt.Errorf("mpd: template %q: %w", tmpl, err)
			}
			for n := len(v); n < w; n++ {
				b.WriteByte('0')
			}
		}
		b.WriteString(v)
		tmpl = rest[j+1:]
	}
}

// width reads a "%0Nd" format tag.
func width(f string) (int, error) {
	if len(f) < 3 || f[0] != '%' || f[1] != '0' || f[len(f)-1] != 'd' {
		if f == "%d" {
			return 0, nil
		}
		return 0, fmt.Errorf("format %q: want %%0Nd", f)
	}
	w, err := strconv.Atoi(f[2 : len(f)-1])
	if err != nil || w < 0 || w > 32 {
		return 0, fmt.Errorf("format %q: bad width", f)
	}
	return w, nil
}

// Video returns the first Period's video AdaptationSet (contentType video,
// or a video/ mime type), or nil.
func (m *MPD) Video() *AdaptationSet { return m.set("video") }

// Audio returns the first Period's audio AdaptationSet, or nil.
func (m *MPD) Audio() *AdaptationSet { return m.set("audio") }

func (m *MPD) set(kind string) *AdaptationSet {
	if len(m.Periods) == 0 {
		return nil
	}
	for i := range m.Periods[0].AdaptationSets {
		as := &m.Periods[0].AdaptationSets[i]
		if as.ContentType == kind || strings.HasPrefix(as.MimeType, kind+"/") {
			return as
		}
		if as.ContentType == "" && as.MimeType == "" && len(as.Representations) > 0 && strings.HasPrefix(as.Representations[0].MimeType, kind+"/") {
			return as
		}
	}
	return nil
}
