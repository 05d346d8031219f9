package mpd

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

// ffmpegMPD is what Debian's ffmpeg 5.1 dash muxer writes (one
// AdaptationSet per stream, $Number%05d$, an audio timeline with a
// shorter first segment).
const ffmpegMPD = `<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
	xmlns="urn:mpeg:dash:schema:mpd:2011"
	profiles="urn:mpeg:dash:profile:isoff-live:2011"
	type="static"
	mediaPresentationDuration="PT8.0S"
	maxSegmentDuration="PT2.0S"
	minBufferTime="PT4.0S">
	<Period id="0" start="PT0.0S">
		<AdaptationSet id="0" contentType="video" startWithSAP="1" segmentAlignment="true" bitstreamSwitching="true" frameRate="25/1" maxWidth="426" maxHeight="240" par="16:9">
			<Representation id="0" mimeType="video/mp4" codecs="avc1.42c015" bandwidth="300000" width="426" height="240" sar="640:639">
				<SegmentTemplate timescale="12800" initialization="init-$RepresentationID$.m4s" media="seg-$RepresentationID$-$Number%05d$.m4s" startNumber="1">
					<SegmentTimeline>
						<S t="0" d="25600" r="3" />
					</SegmentTimeline>
				</SegmentTemplate>
			</Representation>
		</AdaptationSet>
		<AdaptationSet id="2" contentType="audio" startWithSAP="1" segmentAlignment="true" bitstreamSwitching="true" lang="und">
			<Representation id="2" mimeType="audio/mp4" codecs="mp4a.40.2" bandwidth="128000" audioSamplingRate="48000">
				<SegmentTemplate timescale="48000" initialization="init-$RepresentationID$.m4s" media="seg-$RepresentationID$-$Number%05d$.m4s" startNumber="1">
					<SegmentTimeline>
						<S t="0" d="95232" />
						<S d="96256" r="2" />
					</SegmentTimeline>
				</SegmentTemplate>
			</Representation>
		</AdaptationSet>
	</Period>
</MPD>`

func TestParseFFmpeg(t *testing.T) {
	m, err := Parse([]byte(ffmpegMPD))
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(m.MediaPresentationDuration) != 8*time.Second {
		t.Errorf("duration %v", time.Duration(m.MediaPresentationDuration))
	}
	base, _ := url.Parse("http://origin.test/v/manifest.mpd")
	v := m.Video()
	tr, err := m.Track(0, v, &v.Representations[0], base)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Init != "http://origin.test/v/init-0.m4s" || len(tr.Segments) != 4 {
		t.Fatalf("init %q, %d segments", tr.Init, len(tr.Segments))
	}
	s := tr.Segments[3]
	if s.URL != "http://origin.test/v/seg-0-00004.m4s" || s.Start != 6*time.Second || s.Duration != 2*time.Second || s.Number != 4 {
		t.Errorf("segment 4: %+v", s)
	}
	a := m.Audio()
	at, err := m.Track(0, a, &a.Representations[0], base)
	if err != nil {
		t.Fatal(err)
	}
	if len(at.Segments) != 4 || at.Segments[1].Time != 95232 || at.Segments[3].Time != 95232+2*96256 {
		t.Errorf("audio timeline: %+v", at.Segments)
	}
}

func TestTemplates(t *testing.T) {
	rep := &Representation{ID: "v1", Bandwidth: 800000}
	for _, c := range []struct{ tmpl, want, err string }{
		{"seg-$RepresentationID$-$Number$.m4s", "seg-v1-7.m4s", ""},
		{"$Number%05d$.m4s", "00007.m4s", ""},
		{"t$Time$-$Bandwidth$$$.m4s", "t1234-800000$.m4s", ""},
		{"$Foo$.m4s", "", "unknown identifier"},
		{"$Number.m4s", "", "unterminated"},
		{"$Number%5x$", "", "format"},
	} {
		got, err := expand(c.tmpl, rep, 7, 1234)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err %v, want %q", c.tmpl, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %q, %v; want %q", c.tmpl, got, err, c.want)
		}
	}
}

// TestDurationTemplate: SegmentTemplate@duration without a timeline; the
// last segment is the remainder.
func TestDurationTemplate(t *testing.T) {
	doc := `<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT7S"><Period>
<AdaptationSet mimeType="video/mp4"><SegmentTemplate timescale="1000" duration="2000" startNumber="0" media="s$Number$.m4s"/>
<Representation id="a" bandwidth="1000"/></AdaptationSet></Period></MPD>`
	m, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	base, _ := url.Parse("http://x/")
	tr, err := m.Track(0, m.Video(), &m.Video().Representations[0], base)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Segments) != 4 || tr.Segments[0].URL != "http://x/s0.m4s" || tr.Segments[3].Duration != time.Second {
		t.Fatalf("%+v", tr.Segments)
	}
}

func TestParseErrors(t *testing.T) {
	for name, doc := range map[string]string{
		"dynamic":      `<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic"><Period/></MPD>`,
		"no period":    `<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static"/>`,
		"no bandwidth": `<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"><Period><AdaptationSet><SegmentTemplate media="x" duration="1"/><Representation id="a"/></AdaptationSet></Period></MPD>`,
		"no template":  `<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"><Period><AdaptationSet><Representation id="a" bandwidth="1"/></AdaptationSet></Period></MPD>`,
		"bad duration": `<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" mediaPresentationDuration="P1Y"><Period/></MPD>`,
		"not xml":      `{"mpd": 1}`,
	} {
		if _, err := Parse([]byte(doc)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func TestDurationRoundTrip(t *testing.T) {
	for _, c := range []struct {
		s string
		d time.Duration
	}{{"PT8S", 8 * time.Second}, {"PT1M2.5S", 62500 * time.Millisecond}, {"PT1H0.04S", time.Hour + 40*time.Millisecond}, {"P1DT1S", 24*time.Hour + time.Second}} {
		d, err := ParseDuration(c.s)
		if err != nil || d != c.d {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", c.s, d, err, c.d)
		}
	}
	if got := FormatDuration(62500 * time.Millisecond); got != "PT1M2.5S" {
		t.Errorf("FormatDuration = %q", got)
	}
	for _, bad := range []string{"", "P", "PT", "8S", "PTS", "PT1X", "PT1.2.3S", "P1M"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}

// FuzzParse: any document either fails to parse or expands every track
// without panicking, within the segment limit.
func FuzzParse(f *testing.F) {
	f.Add([]byte(ffmpegMPD))
	f.Add([]byte(`<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" mediaPresentationDuration="PT7S"><Period><AdaptationSet mimeType="video/mp4"><SegmentTemplate timescale="1000" duration="2000" media="s$Number$.m4s"/><Representation id="a" bandwidth="1000"/></AdaptationSet></Period></MPD>`))
	f.Add([]byte(`<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" mediaPresentationDuration="PT7S"><Period><AdaptationSet contentType="video"><SegmentTemplate timescale="1" media="$Time$"><SegmentTimeline><S t="5" d="1" r="-1"/></SegmentTimeline></SegmentTemplate><Representation id="a" bandwidth="1"/></AdaptationSet></Period></MPD>`))
	base, _ := url.Parse("http://x/m.mpd")
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		for _, p := range m.Periods[:1] {
			for ai := range p.AdaptationSets {
				as := &p.AdaptationSets[ai]
				for ri := range as.Representations {
					tr, err := m.Track(0, as, &as.Representations[ri], base)
					if err == nil && len(tr.Segments) > maxSegments {
						t.Fatalf("%d segments", len(tr.Segments))
					}
				}
			}
		}
		if _, err := Marshal(m); err != nil {
			t.Fatalf("parsed but does not marshal: %v", err)
		}
	})
}
