package player

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/applayer/applayer/internal/plot"
)

// DecodeCheck pipes an initialization segment and media segments (one
// rung's, in order) through ffmpeg, decoding every video frame, and returns
// how many frames decoded; any decoder error fails it.
func DecodeCheck(ctx context.Context, ffmpeg string, init []byte, segs [][]byte) (int, error) {
	if ffmpeg == "" {
		ffmpeg = "ffmpeg"
	}
	path, err := exec.LookPath(ffmpeg)
	if err != nil {
		return 0, fmt.Errorf("player: decode check needs ffmpeg (Debian's ffmpeg package): %w", err)
	}
	var in bytes.Buffer
	in.Write(init)
	for _, s := range segs {
		in.Write(s)
	}
	cmd := exec.CommandContext(ctx, path, "-hide_banner", "-nostdin", "-v", "error", "-xerror", "-i", "pipe:0",
		"-map", "0:v:0", "-f", "null", os.DevNull, "-progress", "pipe:1", "-nostats")
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	frames := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "frame="); ok {
			frames, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if err != nil || strings.TrimSpace(stderr.String()) != "" {
		return frames, fmt.Errorf("player: decode check: ffmpeg %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return frames, nil
}

// Plot writes prefix-bitrate and prefix-buffer charts (.png and .svg): the
// chosen bit rate and measured throughput over time, and the buffer level.
func (r *Report) Plot(prefix string) error {
	var t, br, tp, buf []float64
	for _, s := range r.Samples {
		t = append(t, s.T)
		br = append(br, s.Bitrate/1e6)
		tp = append(tp, s.Rate/1e6)
		buf = append(buf, s.Buffer)
	}
	c := plot.Chart{Title: "Chosen bit rate and measured throughput (" + r.Algorithm + ")", XLabel: "time (s)", YLabel: "Mbit/s",
		Series: []plot.Series{{Name: "bit rate", X: t, Y: br, Points: true}, {Name: "throughput", X: t, Y: tp, Dashed: true}}}
	if err := c.Save(prefix+"-bitrate.png", prefix+"-bitrate.svg"); err != nil {
		return err
	}
	b := plot.Chart{Title: "Playout buffer (" + r.Algorithm + ")", XLabel: "time (s)", YLabel: "buffer (s)",
		Series: []plot.Series{{Name: "buffer", X: t, Y: buf, Points: true}}}
	return b.Save(prefix+"-buffer.png", prefix+"-buffer.svg")
}
