package packager

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Synthetic describes a test video made with ffmpeg's lavfi sources: a
// moving picture (testsrc2) with temporal noise, so the encoder must spend
// the bits at every rung, and a tone mixed with pink noise.
type Synthetic struct {
	Duration      time.Duration // default 60s
	Width, Height int           // default 1280x720
	FPS           int           // default 25
}

// Make writes the synthetic video to path (an MP4, nearly lossless H.264
// at preset ultrafast, and AAC).
func (s Synthetic) Make(ctx context.Context, ffmpeg, path string) error {
	if s.Duration == 0 {
		s.Duration = 60 * time.Second
	}
	if s.Width == 0 || s.Height == 0 {
		s.Width, s.Height = 1280, 720
	}
	if s.FPS == 0 {
		s.FPS = 25
	}
	if s.Duration < time.Second || s.Duration > 4*time.Hour {
		return fmt.Errorf("packager: synthetic duration %v: want 1s to 4h", s.Duration)
	}
	if s.Width < 16 || s.Height < 16 || s.Width > 7680 || s.Height > 4320 || s.Width%2 != 0 || s.Height%2 != 0 {
		return fmt.Errorf("packager: synthetic size %dx%d: want even, 16x16 to 7680x4320", s.Width, s.Height)
	}
	ffmpeg, _, err := Tools(ffmpeg, "")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return wrapDisk(fmt.Errorf("packager: %w", err))
	}
	secs := strconv.FormatFloat(s.Duration.Seconds(), 'f', -1, 64)
	args := []string{"-hide_banner", "-nostdin", "-y", "-loglevel", "error",
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%dx%d:rate=%d,noise=alls=24:allf=t+u", s.Width, s.Height, s.FPS),
		"-f", "lavfi", "-i", "sine=frequency=440:beep_factor=4:sample_rate=48000",
		"-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.05:sample_rate=48000",
		"-filter_complex", "[1:a][2:a]amix=inputs=2[a]",
		"-map", "0:v", "-map", "[a]", "-t", secs,
		"-c:v", "libx264", "-preset", "ultrafast", "-crf", "20", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-b:a", "128k", "-ac", "2",
		"-f", "mp4",
		"-progress", "pipe:1", "-nostats", path}
	return runFFmpeg(ctx, ffmpeg, args, s.Duration, nil)
}
