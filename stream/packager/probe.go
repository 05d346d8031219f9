package packager

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Probe is what ffprobe says about a media file.
type Probe struct {
	Width, Height int
	FPS           float64 // video frames per second (0 without video)
	Duration      float64 // seconds
	HasVideo      bool
	HasAudio      bool
	VideoCodec    string // codec_name, e.g. "h264"
	AudioCodec    string // codec_name, e.g. "aac"
	AudioProfile  string // e.g. "LC"
	SampleRate    int
	Channels      int
	VideoBitRate  int64 // bit/s, when ffprobe knows it
}

type ffprobeOut struct {
	Streams []struct {
		CodecType    string `json:"codec_type"`
		CodecName    string `json:"codec_name"`
		Profile      string `json:"profile"`
		Width        int    `json:"width"`
		Height       int    `json:"height"`
		RFrameRate   string `json:"r_frame_rate"`
		AvgFrameRate string `json:"avg_frame_rate"`
		SampleRate   string `json:"sample_rate"`
		Channels     int    `json:"channels"`
		BitRate      string `json:"bit_rate"`
		Duration     string `json:"duration"`
	} `json:"streams"`
	Format struct {
		Duration string `json:"duration"`
	} `json:"format"`
}

// ProbeFile runs ffprobe on path.
func ProbeFile(ctx context.Context, ffprobe, path string) (*Probe, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("packager: input: %w", err)
	}
	cmd := exec.CommandContext(ctx, ffprobe, "-v", "error", "-print_format", "json", "-show_streams", "-show_format", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("packager: %s is not a readable media file: ffprobe: %v: %s", path, err, strings.TrimSpace(lastLines(stderr.String(), 3)))
	}
	var fo ffprobeOut
	if err := json.Unmarshal(out, &fo); err != nil {
		return nil, fmt.Errorf("packager: ffprobe output: %w", err)
	}
	p := &Probe{}
	p.Duration, _ = strconv.ParseFloat(fo.Format.Duration, 64)
	for _, s := range fo.Streams {
		switch s.CodecType {
		case "video":
			if p.HasVideo {
				continue
			}
			p.HasVideo = true
			p.Width, p.Height, p.VideoCodec = s.Width, s.Height, s.CodecName
			p.FPS = rate(s.AvgFrameRate)
			if p.FPS <= 0 || p.FPS > 240 {
				p.FPS = rate(s.RFrameRate)
			}
			p.VideoBitRate, _ = strconv.ParseInt(s.BitRate, 10, 64)
			if p.Duration == 0 {
				p.Duration, _ = strconv.ParseFloat(s.Duration, 64)
			}
		case "audio":
			if p.HasAudio {
				continue
			}
			p.HasAudio = true
			p.AudioCodec, p.AudioProfile, p.Channels = s.CodecName, s.Profile, s.Channels
			p.SampleRate, _ = strconv.Atoi(s.SampleRate)
		}
	}
	return p, nil
}

func rate(s string) float64 {
	n, d, ok := strings.Cut(s, "/")
	a, err := strconv.ParseFloat(n, 64)
	if err != nil {
		return 0
	}
	if !ok {
		return a
	}
	b, err := strconv.ParseFloat(d, 64)
	if err != nil || b == 0 {
		return 0
	}
	return a / b
}

// AVCCodecs reads the RFC 6381 codecs string ("avc1.PPCCLL") of an H.264
// initialization segment from its avcC box (profile, constraint flags,
// level exactly as the encoder wrote them).
func AVCCodecs(init []byte) (string, error) {
	box, err := findBox(init, []string{"moov", "trak", "mdia", "minf", "stbl", "stsd"})
	if err != nil {
		return "", err
	}
	// stsd: version/flags(4) entry_count(4), then sample entries.
	if len(box) < 8 {
		return "", errors.New("packager: short stsd")
	}
	entries := box[8:]
	if len(entries) < 8 {
		return "", errors.New("packager: empty stsd")
	}
	typ := string(entries[4:8])
	if typ != "avc1" && typ != "avc3" {
		return "", fmt.Errorf("packager: sample entry %q is not H.264", typ)
	}
	i := bytes.Index(entries, []byte("avcC"))
	if i < 4 || i+8 > len(entries) {
		return "", errors.New("packager: no avcC box")
	}
	c := entries[i+4:]
	return fmt.Sprintf("%s.%02x%02x%02x", typ, c[1], c[2], c[3]), nil
}

// findBox walks ISO BMFF boxes along path and returns the last one's
// payload.
func findBox(b []byte, path []string) ([]byte, error) {
	for _, name := range path {
		found := false
		for len(b) >= 8 {
			size := uint64(binary.BigEndian.Uint32(b))
			typ := string(b[4:8])
			hdr := uint64(8)
			if size == 1 {
				if len(b) < 16 {
					return nil, errors.New("packager: short box")
				}
				size, hdr = binary.BigEndian.Uint64(b[8:]), 16
			} else if size == 0 {
				size = uint64(len(b))
			}
			if size < hdr || size > uint64(len(b)) {
				return nil, fmt.Errorf("packager: box %q of bad size %d", typ, size)
			}
			if typ == name {
				b, found = b[hdr:size], true
				break
			}
			b = b[size:]
		}
		if !found {
			return nil, fmt.Errorf("packager: no %s box", name)
		}
	}
	return b, nil
}

// aacCodecs is the codecs string of AAC by ffprobe's profile name.
func aacCodecs(profile string) string {
	switch strings.ToUpper(profile) {
	case "HE-AAC":
		return "mp4a.40.5"
	case "HE-AACV2":
		return "mp4a.40.29"
	default:
		return "mp4a.40.2"
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}
