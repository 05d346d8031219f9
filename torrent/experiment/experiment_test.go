package experiment

import (
	"bytes"
	"fmt"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

func TestBounds(t *testing.T) {
	c := Config{FileSize: 64 << 20, SeedUp: 4 << 20, PeerUp: 1 << 20}
	for _, tt := range []struct {
		n       int
		cs, p2p float64
	}{{1, 16, 16}, {4, 64, 32}, {8, 128, 512.0 / 12}} {
		cs, p2p := Bounds(c, tt.n)
		if d := cs.Seconds() - tt.cs; d > 1e-6 || d < -1e-6 {
			t.Errorf("N=%d client-server bound %v, want %vs", tt.n, cs, tt.cs)
		}
		if d := p2p.Seconds() - tt.p2p; d > 1e-6 || d < -1e-6 {
			t.Errorf("N=%d P2P bound %v, want %vs", tt.n, p2p, tt.p2p)
		}
	}
}

// TestRun measures N = 1..3 for a small file: no run beats its bound (the
// rate limits hold), P2P beats client-server at N = 3, and the plot is
// written as PNG and SVG.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	c := Config{FileSize: 384 << 10, SeedUp: 512 << 10, PeerUp: 256 << 10, MaxN: 3, Dir: dir,
		Block: fmt.Sprintf("127.%d.%d.", 100+rand.IntN(100), rand.IntN(250)), Timeout: time.Minute}
	rows, err := Run(testkit.Context(t, 3*time.Minute), c, service.Deps{Logger: testkit.Logger(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	Table(&table, rows)
	t.Log("\n" + table.String())
	if len(rows) != 3 {
		t.Fatalf("%d rows", len(rows))
	}
	for _, r := range rows {
		// The token buckets start with a 32 KiB burst: allow 10% under.
		if r.ClientServer < r.BoundCS*9/10 || r.P2P < r.BoundP2P*9/10 {
			t.Errorf("N=%d beat its bound: %+v", r.N, r)
		}
		if r.ClientServer > 10*r.BoundCS || r.P2P > 10*r.BoundP2P {
			t.Errorf("N=%d far from its bound: %+v", r.N, r)
		}
	}
	if rows[2].P2P >= rows[2].ClientServer {
		t.Errorf("N=3: P2P %v not faster than client-server %v", rows[2].P2P, rows[2].ClientServer)
	}
	pngPath, svgPath := filepath.Join(dir, "x.png"), filepath.Join(dir, "x.svg")
	if err := Plot(rows, c, pngPath, svgPath); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if img, err := png.Decode(f); err != nil || img.Bounds().Dx() < 100 {
		t.Errorf("PNG: %v", err)
	}
	svg, _ := os.ReadFile(svgPath)
	if !strings.Contains(string(svg), "<svg") || !strings.Contains(string(svg), "P2P bound") {
		t.Errorf("SVG lacks the plot: %.200s", svg)
	}
}
