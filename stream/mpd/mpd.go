// Package mpd is the DASH Media Presentation Description (ISO/IEC 23009-1)
// as Go types: the subset applayer writes and plays (static presentations,
// one or more Periods, AdaptationSets of Representations addressed by a
// SegmentTemplate with $Number$ or $Time$, with or without a
// SegmentTimeline), marshalled and parsed with encoding/xml. Parse checks
// what a player relies on and resolves the segment list of a
// Representation (Segments) with absolute URLs.
package mpd

import (
	"encoding/xml"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Namespace is the MPD's XML namespace.
const Namespace = "urn:mpeg:dash:schema:mpd:2011"

// ProfileLive is the ISO BMFF live profile (SegmentTemplate addressing),
// which static on-demand content packaged as separate segments uses.
const ProfileLive = "urn:mpeg:dash:profile:isoff-live:2011"

// MaxSize bounds the MPD documents Parse accepts.
const MaxSize = 4 << 20

// maxSegments bounds the segments one Representation may expand to.
const maxSegments = 1 << 17 // 72 hours of 2 s segments

// MPD is the root element.
type MPD struct {
	XMLName                   xml.Name `xml:"urn:mpeg:dash:schema:mpd:2011 MPD"`
	Profiles                  string   `xml:"profiles,attr,omitempty"`
	Type                      string   `xml:"type,attr,omitempty"`
	MediaPresentationDuration Duration `xml:"mediaPresentationDuration,attr,omitempty"`
	MinBufferTime             Duration `xml:"minBufferTime,attr,omitempty"`
	MaxSegmentDuration        Duration `xml:"maxSegmentDuration,attr,omitempty"`
	BaseURL                   string   `xml:"BaseURL,omitempty"`
	Periods                   []Period `xml:"Period"`
}

// Period is a span of the presentation.
type Period struct {
	ID             string          `xml:"id,attr,omitempty"`
	Start          Duration        `xml:"start,attr,omitempty"`
	Duration       Duration        `xml:"duration,attr,omitempty"`
	BaseURL        string          `xml:"BaseURL,omitempty"`
	AdaptationSets []AdaptationSet `xml:"AdaptationSet"`
}

// AdaptationSet groups interchangeable encodings of one content component.
type AdaptationSet struct {
	ID                string            `xml:"id,attr,omitempty"`
	ContentType       string            `xml:"contentType,attr,omitempty"`
	MimeType          string            `xml:"mimeType,attr,omitempty"`
	Codecs            string            `xml:"codecs,attr,omitempty"`
	Lang              string            `xml:"lang,attr,omitempty"`
	SegmentAlignment  bool              `xml:"segmentAlignment,attr,omitempty"`
	StartWithSAP      int               `xml:"startWithSAP,attr,omitempty"`
	MaxWidth          int               `xml:"maxWidth,attr,omitempty"`
	MaxHeight         int               `xml:"maxHeight,attr,omitempty"`
	FrameRate         string            `xml:"frameRate,attr,omitempty"`
	Par               string            `xml:"par,attr,omitempty"`
	BaseURL           string            `xml:"BaseURL,omitempty"`
	SegmentTemplate   *SegmentTemplate  `xml:"SegmentTemplate,omitempty"`
	Representations   []Representation  `xml:"Representation"`
	AudioChannelConfs []AudioChannelCfg `xml:"AudioChannelConfiguration,omitempty"`
}

// Representation is one encoding (one rung of the ladder).
type Representation struct {
	ID                string            `xml:"id,attr"`
	MimeType          string            `xml:"mimeType,attr,omitempty"`
	Codecs            string            `xml:"codecs,attr,omitempty"`
	Bandwidth         int64             `xml:"bandwidth,attr"`
	Width             int               `xml:"width,attr,omitempty"`
	Height            int               `xml:"height,attr,omitempty"`
	FrameRate         string            `xml:"frameRate,attr,omitempty"`
	Sar               string            `xml:"sar,attr,omitempty"`
	AudioSamplingRate string            `xml:"audioSamplingRate,attr,omitempty"`
	BaseURL           string            `xml:"BaseURL,omitempty"`
	AudioChannelConfs []AudioChannelCfg `xml:"AudioChannelConfiguration,omitempty"`
	SegmentTemplate   *SegmentTemplate  `xml:"SegmentTemplate,omitempty"`
}

// AudioChannelCfg is an AudioChannelConfiguration descriptor.
type AudioChannelCfg struct {
	SchemeIDURI string `xml:"schemeIdUri,attr"`
	Value       string `xml:"value,attr"`
}

// SegmentTemplate names a Representation's segments by template.
type SegmentTemplate struct {
	Timescale       uint64           `xml:"timescale,attr,omitempty"`
	Duration        uint64           `xml:"duration,attr,omitempty"`
	StartNumber     *uint64          `xml:"startNumber,attr,omitempty"`
	Initialization  string           `xml:"initialization,attr,omitempty"`
	Media           string           `xml:"media,attr,omitempty"`
	PresentationTO  uint64           `xml:"presentationTimeOffset,attr,omitempty"`
	SegmentTimeline *SegmentTimeline `xml:"SegmentTimeline,omitempty"`
}

// SegmentTimeline lists segment start times and durations.
type SegmentTimeline struct {
	S []S `xml:"S"`
}

// S is one run of segments of equal duration: start T (optional after the
// first), duration D, and R repeats after the first (-1: until the end).
type S struct {
	T *uint64 `xml:"t,attr,omitempty"`
	D uint64  `xml:"d,attr"`
	R int64   `xml:"r,attr,omitempty"`
}

// Duration is an xs:duration ("PT1M2.5S") as a time.Duration.
type Duration time.Duration

// MarshalXMLAttr writes the duration as PTnHnMn.nS.
func (d Duration) MarshalXMLAttr(name xml.Name) (xml.Attr, error) {
	if d == 0 {
		return xml.Attr{}, nil
	}
	return xml.Attr{Name: name, Value: FormatDuration(time.Duration(d))}, nil
}

// UnmarshalXMLAttr parses an xs:duration.
func (d *Duration) UnmarshalXMLAttr(a xml.Attr) error {
	v, err := ParseDuration(a.Value)
	if err != nil {
		return fmt.Errorf("%s: %w", a.Name.Local, err)
	}
	*d = Duration(v)
	return nil
}

// FormatDuration writes d as an xs:duration with hours, minutes and
// seconds (milliseconds kept).
func FormatDuration(d time.Duration) string {
	var b strings.Builder
	b.WriteString("PT")
	if h := d / time.Hour; h > 0 {
		fmt.Fprintf(&b, "%dH", h)
		d -= h * time.Hour
	}
	if m := d / time.Minute; m > 0 {
		fmt.Fprintf(&b, "%dM", m)
		d -= m * time.Minute
	}
	s := strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	b.WriteString(s + "S")
	return b.String()
}

// ParseDuration parses an xs:duration as MPDs use it: PnDTnHnMn.nS (days
// at most; years and months are refused, having no fixed length).
func ParseDuration(s string) (time.Duration, error) {
	orig := s
	bad := func() (time.Duration, error) { return 0, fmt.Errorf("mpd: bad duration %q", orig) }
	if s == "" || s[0] != 'P' {
		return bad()
	}
	s = s[1:]
	var total float64
	inTime := false
	units := map[byte]float64{'D': 86400}
	tunits := map[byte]float64{'H': 3600, 'M': 60, 'S': 1}
	seen := false
	for len(s) > 0 {
		if s[0] == 'T' {
			if inTime {
				return bad()
			}
			inTime = true
			s = s[1:]
			continue
		}
		i := 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			i++
		}
		if i == 0 || i == len(s) {
			return bad()
		}
		v, err := strconv.ParseFloat(s[:i], 64)
		if err != nil {
			return bad()
		}
		u := units
		if inTime {
			u = tunits
		}
		mul, ok := u[s[i]]
		if !ok {
			return bad()
		}
		total += v * mul
		seen = true
		s = s[i+1:]
	}
	if !seen || total > float64(math.MaxInt64)/1e9/2 {
		return bad()
	}
	return time.Duration(total * 1e9), nil
}

// Marshal writes m as an XML document.
func Marshal(m *MPD) ([]byte, error) {
	out, err := xml.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("mpd: %w", err)
	}
	return append([]byte(xml.Header), append(out, '\n')...), nil
}

// ErrUnsupported is wrapped by Parse's errors for valid MPDs this package
// does not play (dynamic presentations, SegmentBase or SegmentList
// addressing).
var ErrUnsupported = errors.New("mpd: unsupported")

// Parse reads an MPD and checks it is one Segments can expand: static,
// with at least one Period, every Representation with a bandwidth and a
// SegmentTemplate (its own or its AdaptationSet's).
func Parse(data []byte) (*MPD, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("mpd: document of %d bytes exceeds %d", len(data), MaxSize)
	}
	var m MPD
	if err := xml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("mpd: %w", err)
	}
	if m.Type == "dynamic" {
		return nil, fmt.Errorf("%w: dynamic (live) presentation", ErrUnsupported)
	}
	if len(m.Periods) == 0 {
		return nil, errors.New("mpd: no Period")
	}
	for pi, p := range m.Periods {
		for ai, as := range p.AdaptationSets {
			if len(as.Representations) == 0 {
				return nil, fmt.Errorf("mpd: period %d adaptation set %d: no Representation", pi, ai)
			}
			for _, r := range as.Representations {
				if r.Bandwidth <= 0 {
					return nil, fmt.Errorf("mpd: representation %q: bandwidth %d", r.ID, r.Bandwidth)
				}
				t := r.SegmentTemplate
				if t == nil {
					t = as.SegmentTemplate
				}
				if t == nil {
					return nil, fmt.Errorf("%w: representation %q has no SegmentTemplate", ErrUnsupported, r.ID)
				}
				if t.Media == "" {
					return nil, fmt.Errorf("mpd: representation %q: SegmentTemplate without media", r.ID)
				}
				if t.SegmentTimeline == nil && t.Duration == 0 {
					return nil, fmt.Errorf("mpd: representation %q: SegmentTemplate without duration or SegmentTimeline", r.ID)
				}
			}
		}
	}
	return &m, nil
}
