package plot_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/applayer/applayer/internal/plot"
)

func TestSave(t *testing.T) {
	dir := t.TempDir()
	c := plot.Chart{
		Title: "page load", XLabel: "RTT (ms)", YLabel: "seconds",
		Series: []plot.Series{
			{Name: "measured", X: []float64{10, 20, 40}, Y: []float64{0.2, 0.4, 0.8}, Points: true},
			{Name: "2 RTT per object", X: []float64{10, 20, 40}, Y: []float64{0.2, 0.4, 0.8}, Dashed: true},
		},
	}
	png, svg := filepath.Join(dir, "p.png"), filepath.Join(dir, "p.svg")
	if err := c.Save(png, svg); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(png)
	if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("p.png is not a PNG (err %v, %d bytes)", err, len(b))
	}
	s, err := os.ReadFile(svg)
	if err != nil || !strings.Contains(string(s), "<svg") || !strings.Contains(string(s), "2 RTT per object") {
		t.Fatalf("p.svg lacks the svg element or the legend (err %v)", err)
	}
}

func TestSaveErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		chart plot.Chart
		paths []string
		want  string
	}{
		{"no path", plot.Chart{}, nil, "no output path"},
		{"bad extension", plot.Chart{}, []string{filepath.Join(dir, "x.gif")}, "unknown image format"},
		{"ragged series", plot.Chart{Series: []plot.Series{{Name: "r", X: []float64{1, 2}, Y: []float64{1}}}},
			[]string{filepath.Join(dir, "x.png")}, `series "r" has 2 X and 1 Y`},
		{"missing dir", plot.Chart{}, []string{filepath.Join(dir, "no", "x.png")}, "save"},
	} {
		err := tc.chart.Save(tc.paths...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}
