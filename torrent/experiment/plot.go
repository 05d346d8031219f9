package experiment

import (
	"fmt"
	"image/color"
	"io"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Plot draws the measured distribution times beside both bounds against N,
// like the chapter's figure, and saves it to each path (the extension
// chooses the format: .png, .svg, .pdf).
func Plot(rows []Row, c Config, paths ...string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Distribution time, F = %d KiB, u_s = %d KiB/s, u = %d KiB/s", c.FileSize>>10, c.SeedUp>>10, c.PeerUp>>10)
	p.X.Label.Text = "N (clients / peers)"
	p.Y.Label.Text = "seconds"
	p.Y.Min = 0
	line := func(get func(Row) float64) plotter.XYs {
		xy := make(plotter.XYs, len(rows))
		for i, r := range rows {
			xy[i].X, xy[i].Y = float64(r.N), get(r)
		}
		return xy
	}
	if err := addLines(p,
		"client-server, measured", line(func(r Row) float64 { return r.ClientServer.Seconds() }),
		"client-server bound", line(func(r Row) float64 { return r.BoundCS.Seconds() }),
		"P2P, measured", line(func(r Row) float64 { return r.P2P.Seconds() }),
		"P2P bound", line(func(r Row) float64 { return r.BoundP2P.Seconds() }),
	); err != nil {
		return fmt.Errorf("experiment: plot: %w", err)
	}
	p.Legend.Top, p.Legend.Left = true, true
	for _, path := range paths {
		if err := p.Save(8*vg.Inch, 5*vg.Inch, path); err != nil {
			return fmt.Errorf("experiment: plot: %w", err)
		}
	}
	return nil
}

// addLines adds named lines with points (name, XYs pairs), the bounds
// dashed.
func addLines(p *plot.Plot, vs ...any) error {
	for i := 0; i+1 < len(vs); i += 2 {
		name := vs[i].(string)
		xy := vs[i+1].(plotter.XYs)
		l, pts, err := plotter.NewLinePoints(xy)
		if err != nil {
			return err
		}
		l.Color = plotColors[(i/2)%len(plotColors)]
		pts.Color = l.Color
		if i/2%2 == 1 {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		p.Add(l, pts)
		p.Legend.Add(name, l, pts)
	}
	return nil
}

// Table writes the rows as a text table.
func Table(w io.Writer, rows []Row) {
	fmt.Fprintf(w, "%4s  %12s  %12s  %12s  %12s  %8s  %8s\n", "N", "client-server", "bound", "P2P", "bound", "cs/bound", "p2p/bound")
	for _, r := range rows {
		fmt.Fprintf(w, "%4d  %12.2fs  %11.2fs  %11.2fs  %11.2fs  %8.2f  %8.2f\n", r.N,
			r.ClientServer.Seconds(), r.BoundCS.Seconds(), r.P2P.Seconds(), r.BoundP2P.Seconds(),
			r.ClientServer.Seconds()/r.BoundCS.Seconds(), r.P2P.Seconds()/r.BoundP2P.Seconds())
	}
}

var plotColors = []color.Color{
	color.RGBA{R: 0xc0, G: 0x30, B: 0x30, A: 0xff},
	color.RGBA{R: 0xc0, G: 0x30, B: 0x30, A: 0xff},
	color.RGBA{R: 0x20, G: 0x60, B: 0xc0, A: 0xff},
	color.RGBA{R: 0x20, G: 0x60, B: 0xc0, A: 0xff},
}
