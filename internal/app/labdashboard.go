package app

import (
	"context"
	"io"
	"path/filepath"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/lab/dashboard"
	"github.com/applayer/applayer/lab/experiment"
)

// dashboardRuns are the scenarios and experiments the lab's dashboard
// offers: the same registries as `lab scenario` and `lab experiment`.
func dashboardRuns(d service.Deps) []dashboard.Run {
	var out []dashboard.Run
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
