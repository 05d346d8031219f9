package app

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/lab/dashboard"
	"github.com/applayer/applayer/lab/experiment"
)

// dashboardRuns are the scenarios and experiments the lab's dashboard
// offers: the same registries as `lab scenario` and `lab experiment`.
// Scenarios play against the running lab r (their messages are drawn
// live on the sequence page too); experiments start labs of their own.
func dashboardRuns(r *lab.Running, d service.Deps) []dashboard.Run {
	var out []dashboard.Run
	for _, sc := range labScenarios().All() {
		sc := sc
		out = append(out, dashboard.Run{
			Kind: "scenario", Name: sc.Name, Description: sc.Summary,
			Do: func(ctx context.Context, w io.Writer, dir string, quick bool) ([]string, error) {
				collect := &trace.Collector{}
				defer d.Trace.Subscribe(collect)()
				steps, err := playScenario(ctx, w, sc, r.Plan, d.Trace, r.AdminAddr(), collect, d.Logger)
				if err != nil {
					return nil, err
				}
				fmt.Fprintf(w, "\nMessage sequence (%d):\n", len(steps))
				return nil, lab.WriteNarration(w, steps, false)
			},
		})
	}
	for _, ex := range labExperiments().All() {
		ex := ex
		out = append(out, dashboard.Run{
			Kind: "experiment", Name: ex.Name, Description: ex.Summary,
			Do: func(ctx context.Context, w io.Writer, dir string, quick bool) ([]string, error) {
				deps := d
				deps.Trace = nil // an experiment's own lab: not the running lab's diagram
				res, err := ex.Run(ctx, experiment.Env{Quick: quick, Seed: 1, Out: dir, Stdout: w, Kinds: labKinds(), Deps: deps})
				if err != nil {
					return nil, err
				}
				var plots []string
				for _, p := range res.Plots {
					plots = append(plots, filepath.Base(p))
				}
				return plots, nil
			},
		})
	}
	return out
}
