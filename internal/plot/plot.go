// Package plot draws the line charts applayer's experiments and benchmarks
// write next to their tables: measured values beside the chapter's formulas,
// saved as PNG and SVG. It is a thin layer over gonum.org/v1/plot so every
// system's figures look alike and no system repeats the gonum plumbing.
package plot

import (
	"errors"
	"fmt"
	"image/color"
	"path/filepath"
	"strings"

	gplot "gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Series is one line of a chart: points (X[i], Y[i]) in order.
type Series struct {
	Name   string
	X, Y   []float64
	Dashed bool // a formula or bound, drawn dashed beside the measured lines
	Points bool // mark each point as well as the line
}

// Chart is a line chart. YMin and YMax, when set, fix the Y axis; otherwise
// it fits the data (from 0 when every value is non-negative).
type Chart struct {
	Title, XLabel, YLabel string
	Series                []Series
	YMin, YMax            *float64
	// Width and Height default to 8 x 5 inches.
	Width, Height vg.Length
}

// Float returns a pointer to v, for Chart.YMin and YMax.
func Float(v float64) *float64 { return &v }

// palette is colour-blind safe (Okabe-Ito).
var palette = []color.Color{
	color.RGBA{R: 0x00, G: 0x72, B: 0xb2, A: 0xff},
	color.RGBA{R: 0xd5, G: 0x5e, B: 0x00, A: 0xff},
	color.RGBA{R: 0x00, G: 0x9e, B: 0x73, A: 0xff},
	color.RGBA{R: 0xcc, G: 0x79, B: 0xa7, A: 0xff},
	color.RGBA{R: 0x56, G: 0xb4, B: 0xe9, A: 0xff},
	color.RGBA{R: 0xe6, G: 0x9f, B: 0x00, A: 0xff},
	color.RGBA{R: 0x00, G: 0x00, B: 0x00, A: 0xff},
}

// Save draws the chart into each path; the extension chooses the format
// (.png, .svg, .pdf, .jpg, .eps, .tif).
func (c Chart) Save(paths ...string) error {
	if len(paths) == 0 {
		return errors.New("plot: no output path")
	}
	p, err := c.build()
	if err != nil {
		return err
	}
	w, h := c.Width, c.Height
	if w == 0 {
		w = 8 * vg.Inch
	}
	if h == 0 {
		h = 5 * vg.Inch
	}
	for _, path := range paths {
		switch strings.ToLower(filepath.Ext(path)) {
		case ".png", ".svg", ".pdf", ".jpg", ".jpeg", ".eps", ".tif", ".tiff":
		default:
			return fmt.Errorf("plot: %s: unknown image format %q", path, filepath.Ext(path))
		}
		if err := p.Save(w, h, path); err != nil {
			return fmt.Errorf("plot: save %s: %w", path, err)
		}
	}
	return nil
}

func (c Chart) build() (*gplot.Plot, error) {
	p := gplot.New()
	p.Title.Text = c.Title
	p.X.Label.Text = c.XLabel
	p.Y.Label.Text = c.YLabel
	p.Add(plotter.NewGrid())
	nonNeg := true
	// Colours go to measured lines and their formulas in turn: a dashed
	// series right after a solid one shares its colour, so "measured" and
	// "formula" pairs read together.
	ci := -1
	for i, s := range c.Series {
		if len(s.X) != len(s.Y) {
			return nil, fmt.Errorf("plot: series %q has %d X and %d Y values", s.Name, len(s.X), len(s.Y))
		}
		if len(s.X) == 0 {
			continue
		}
		xy := make(plotter.XYs, len(s.X))
		for j := range s.X {
			xy[j].X, xy[j].Y = s.X[j], s.Y[j]
			if s.Y[j] < 0 {
				nonNeg = false
			}
		}
		if !(s.Dashed && i > 0 && !c.Series[i-1].Dashed) {
			ci++
		}
		col := palette[ci%len(palette)]
		l, err := plotter.NewLine(xy)
		if err != nil {
			return nil, fmt.Errorf("plot: series %q: %w", s.Name, err)
		}
		l.Color = col
		l.Width = vg.Points(1.5)
		if s.Dashed {
			l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		p.Add(l)
		if s.Points {
			sc, err := plotter.NewScatter(xy)
			if err != nil {
				return nil, fmt.Errorf("plot: series %q: %w", s.Name, err)
			}
			sc.Color = col
			p.Add(sc)
			p.Legend.Add(s.Name, l, sc)
		} else {
			p.Legend.Add(s.Name, l)
		}
	}
	if nonNeg {
		p.Y.Min = 0
	}
	if c.YMin != nil {
		p.Y.Min = *c.YMin
	}
	if c.YMax != nil {
		p.Y.Max = *c.YMax
	}
	p.Legend.Top, p.Legend.Left = true, true
	return p, nil
}
