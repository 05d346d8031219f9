package stream

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/stream/origin"
	"github.com/applayer/applayer/stream/packager"
	"github.com/applayer/applayer/web/server"
)

// LabConfig is the lab config of kind dash-origin.
type LabConfig struct {
	// Duration of the synthetic video. Default 20s.
	Duration config.Duration `json:"duration,omitempty"`
	// Width and Height of the synthetic source. Default 854x480 (rungs
	// 240p, 360p, 480p of the default ladder).
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
	// Ladder, as "240:300k,360:800k"; default packager.DefaultLadder.
	Ladder string `json:"ladder,omitempty"`
	// Segment duration. Default 2s.
	Segment config.Duration `json:"segment,omitempty"`
	// Preset is x264's. Default ultrafast (the lab starts quickly).
	Preset string `json:"preset,omitempty"`
	// TLS also serves HTTPS and HTTP/3 on 443 with the lab CA.
	TLS bool `json:"tls,omitempty"`
}

func (c *LabConfig) defaults() {
	if c.Duration == 0 {
		c.Duration = config.Duration(20 * time.Second)
	}
	if c.Width == 0 || c.Height == 0 {
		c.Width, c.Height = 854, 480
	}
	if c.Segment == 0 {
		c.Segment = config.Duration(2 * time.Second)
	}
	if c.Preset == "" {
		c.Preset = "ultrafast"
	}
}

// LabKinds is the streaming system's lab kind: dash-origin, a web server
// holding a synthetic video packaged (once, cached in the state dir) when
// it starts.
func LabKinds() []lab.Kind {
	return []lab.Kind{{
		Name:    "dash-origin",
		Summary: "DASH origin serving a synthetic video packaged with ffmpeg at start (cached in the state dir)",
		Port:    80, Network: "tcp",
		Check: func(raw json.RawMessage) error {
			var c LabConfig
			if err := lab.DecodeConfig(raw, &c); err != nil {
				return err
			}
			if c.Ladder != "" {
				if _, err := packager.ParseLadder(c.Ladder); err != nil {
					return err
				}
			}
			return nil
		},
		Build: buildLab,
	}}
}

func buildLab(env lab.Env) (service.Service, error) {
	var lc LabConfig
	if err := lab.DecodeConfig(env.Spec.Config, &lc); err != nil {
		return nil, err
	}
	lc.defaults()
	dir := filepath.Join(env.Plan.StateDir, "stream", env.Host.Name)
	cfg := server.Config{Addr: env.Listen.String()}
	if lc.TLS {
		cfg.TLSAddr = fmt.Sprintf("%s:%d", env.Host.Addr, env.Plan.Port(443))
		cfg.HTTP3 = true
		cfg.TLS = server.TLSConfig{CADir: filepath.Join(env.Plan.StateDir, "web", "ca"), Names: []string{env.Host.Name}}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("dash-origin: %w", err)
	}
	return &labOrigin{cfg: cfg, lc: lc, dir: dir, deps: env.Deps}, nil
}

// labOrigin starts serving at once and packages the synthetic video in
// the background (unless the state dir already holds it for the same
// config); until it is ready every request gets 503 with Retry-After, and
// if packaging fails (no ffmpeg) 503 says why, so the lab runs without
// ffmpeg.
type labOrigin struct {
	cfg  server.Config
	lc   LabConfig
	dir  string
	deps service.Deps
	srv  *Server

	state  atomic.Pointer[string] // nil: packaging; "": ready; else the error
	cancel context.CancelFunc
	done   chan struct{}
}

func (l *labOrigin) Name() string { return "stream-origin" }

// Addrs implements service.Addresser.
func (l *labOrigin) Addrs() []net.Addr {
	if l.srv == nil {
		return nil
	}
	return l.srv.Addrs()
}

func (l *labOrigin) Start(ctx context.Context) error {
	srv, err := NewServer(l.cfg, origin.Config{Dir: l.dir}, l.deps, l.gate)
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		srv.Shutdown(ctx)
		return err
	}
	l.srv = srv
	bg, cancel := context.WithCancel(context.Background())
	l.cancel, l.done = cancel, make(chan struct{})
	log := l.deps.Defaults().Logger
	go func() {
		defer close(l.done)
		msg := ""
		if err := PrepareSynthetic(bg, l.dir, l.lc, l.deps); err != nil {
			msg = err.Error()
			if bg.Err() == nil {
				log.Warn("no video: packaging failed", "err", err)
			}
		}
		l.state.Store(&msg)
	}()
	return nil
}

// gate answers 503 until the video is packaged.
func (l *labOrigin) gate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := l.state.Load()
		switch {
		case st == nil:
			w.Header().Set("Retry-After", "2")
			http.Error(w, "503 the video is being packaged", http.StatusServiceUnavailable)
		case *st != "":
			http.Error(w, "503 no video: "+*st, http.StatusServiceUnavailable)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// Ready reports whether the video is being served.
func (l *labOrigin) Ready() bool { st := l.state.Load(); return st != nil && *st == "" }

func (l *labOrigin) Shutdown(ctx context.Context) error {
	if l.srv == nil {
		return nil
	}
	if l.cancel != nil {
		l.cancel()
		select {
		case <-l.done:
		case <-ctx.Done():
		}
	}
	return l.srv.Shutdown(ctx)
}

// PrepareSynthetic makes and packages the synthetic video of lc into dir
// unless dir already holds that packaging (its config is kept in
// dir/.packaged.json).
func PrepareSynthetic(ctx context.Context, dir string, lc LabConfig, deps service.Deps) error {
	deps = deps.Defaults()
	lc.defaults()
	stamp, err := json.Marshal(lc)
	if err != nil {
		return err
	}
	stampFile := filepath.Join(dir, ".packaged.json")
	if old, err := os.ReadFile(stampFile); err == nil && string(old) == string(stamp) {
		if _, err := os.Stat(filepath.Join(dir, packager.ManifestName)); err == nil {
			return nil
		}
	}
	ladder := packager.DefaultLadder
	if lc.Ladder != "" {
		if ladder, err = packager.ParseLadder(lc.Ladder); err != nil {
			return err
		}
	}
	src := filepath.Join(dir, ".source.mp4")
	start := time.Now()
	syn := packager.Synthetic{Duration: time.Duration(lc.Duration), Width: lc.Width, Height: lc.Height}
	if err := syn.Make(ctx, "", src); err != nil {
		return err
	}
	defer os.Remove(src)
	res, err := packager.Package(ctx, packager.Options{Input: src, OutDir: dir, Ladder: ladder,
		SegmentDuration: time.Duration(lc.Segment), Preset: lc.Preset})
	if err != nil {
		return err
	}
	deps.Logger.Info("packaged the synthetic video", "dir", dir, "rungs", fmt.Sprint(res.Rungs), "segments", res.Segments, "took", time.Since(start).Round(time.Millisecond))
	return os.WriteFile(stampFile, stamp, 0o644)
}
