package experiment

import (
	"fmt"
	"io"
	"time"

	"github.com/applayer/applayer/internal/plot"
)

// Plot draws the measured distribution times beside both bounds against N,
// like the chapter's figure, and saves it to each path (the extension
// chooses the format: .png, .svg, .pdf).
func Plot(rows []Row, c Config, paths ...string) error {
	ns := make([]float64, len(rows))
	for i, r := range rows {
		ns[i] = float64(r.N)
	}
	line := func(get func(Row) time.Duration) []float64 {
		ys := make([]float64, len(rows))
		for i, r := range rows {
			ys[i] = get(r).Seconds()
		}
		return ys
	}
	chart := plot.Chart{
		Title:  fmt.Sprintf("Distribution time, F = %d KiB, u_s = %d KiB/s, u = %d KiB/s", c.FileSize>>10, c.SeedUp>>10, c.PeerUp>>10),
		XLabel: "N (clients / peers)",
		YLabel: "seconds",
		Series: []plot.Series{
			{Name: "client-server, measured", X: ns, Y: line(func(r Row) time.Duration { return r.ClientServer }), Points: true},
			{Name: "client-server bound", X: ns, Y: line(func(r Row) time.Duration { return r.BoundCS }), Dashed: true},
			{Name: "P2P, measured", X: ns, Y: line(func(r Row) time.Duration { return r.P2P }), Points: true},
			{Name: "P2P bound", X: ns, Y: line(func(r Row) time.Duration { return r.BoundP2P }), Dashed: true},
		},
	}
	if err := chart.Save(paths...); err != nil {
		return fmt.Errorf("experiment: %w", err)
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
