package app

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/applayer/applayer/dns/dnsexp"
	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/lab/experiment"
	"github.com/applayer/applayer/mail/mailexp"
	tex "github.com/applayer/applayer/torrent/experiment"
	"github.com/applayer/applayer/web/webexp"
)

// labExperiments is the wiring table of the lab's experiments: each system
// registers its own.
func labExperiments() *experiment.Registry {
	return experiment.NewRegistry(
		webexp.PageLoad(),
		webexp.Caching(),
		dnsexp.Caching(),
		p2pExperiment(),
		webexp.QUICvsTCP(),
		webexp.TrackingCookies(),
		dnsexp.DDoS(),
		dnsexp.Poisoning(),
		mailexp.ForgedMail(),
	)
}

// p2pExperiment registers `applayer torrent experiment` (client-server vs
// P2P distribution time) in the lab's registry, unchanged.
func p2pExperiment() experiment.Experiment {
	return experiment.Experiment{
		Name:    "p2p",
		Summary: "client-server vs BitTorrent distribution time against N, with the chapter's bounds (as `torrent experiment`)",
		Run: func(ctx context.Context, env experiment.Env) (*experiment.Result, error) {
			c := tex.Config{FileSize: 4 << 20, SeedUp: 1 << 20, PeerUp: 512 << 10, MaxN: 6, Block: "127.88.1."}
			if env.Quick {
				c.FileSize, c.MaxN = 1<<20, 2
			}
			dir, err := os.MkdirTemp("", "applayer-experiment-")
			if err != nil {
				return nil, err
			}
			defer os.RemoveAll(dir)
			c.Dir = dir
			rows, err := tex.Run(ctx, c, env.Deps, nil)
			if err != nil {
				return nil, err
			}
			tex.Table(env.Stdout, rows)
			res := &experiment.Result{Plots: []string{env.Path("p2p.png"), env.Path("p2p.svg")}}
			for _, r := range rows {
				res.Rows = append(res.Rows,
					experiment.Row{Case: fmt.Sprintf("client-server, N=%d", r.N), Measured: r.ClientServer.Seconds(), Formula: r.BoundCS.Seconds(), Unit: "s"},
					experiment.Row{Case: fmt.Sprintf("P2P, N=%d", r.N), Measured: r.P2P.Seconds(), Formula: r.BoundP2P.Seconds(), Unit: "s"})
			}
			return res, tex.Plot(rows, c, res.Plots...)
		},
	}
}

func labExperimentCommand(g *globals) *cobra.Command {
	var (
		quick bool
		seed  uint64
		out   string
		list  bool
	)
	reg := labExperiments()
	cmd := &cobra.Command{
		Use:   "experiment NAME",
		Short: "Reproduce one of the chapter's numbers: measured beside the formula, a table and a plot",
		Long: `Runs a measurement in the lab with links applied, prints a table of each
measured value beside the chapter's formula and writes NAME.png and NAME.svg
(and more plots for some) into --out. --quick is a run of seconds (the tests
use it); the default takes a minute or two. --seed makes the run repeatable.

Experiments: ` + reg.Names() + ` (--list says what each measures).`,
		Example: `  applayer lab experiment --list
  applayer lab experiment page-load --quick --out /tmp/exp
  applayer lab experiment dns-caching --quick --seed 7 --out /tmp/exp`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if list || len(args) == 0 {
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				for _, e := range reg.All() {
					fmt.Fprintf(tw, "%s\t%s\n", e.Name, e.Summary)
				}
				if err := tw.Flush(); err != nil || list {
					return err
				}
				return fmt.Errorf("name an experiment (%s)", reg.Names())
			}
			ex, ok := reg.Get(args[0])
			if !ok {
				return fmt.Errorf("no experiment %q (known: %s)", args[0], reg.Names())
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			e, err := g.env()
			if err != nil {
				return err
			}
			defer e.close()
			d := e.deps()
			if f := cmd.Flag("log-level"); f == nil || !f.Changed {
				// The services' start-up lines would bury the table.
				if d.Logger, err = obs.NewLogger(g.stderr, g.logFormat, "warn"); err != nil {
					return err
				}
			}
			start := time.Now()
			res, err := ex.Run(cmd.Context(), experiment.Env{Quick: quick, Seed: seed, Out: out, Stdout: g.stdout, Kinds: labKinds(), Deps: d})
			if err != nil {
				return err
			}
			for _, p := range res.Plots {
				fmt.Fprintf(g.stdout, "plot: %s\n", p)
			}
			fmt.Fprintf(g.stdout, "took %s\n", time.Since(start).Round(100*time.Millisecond))
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&quick, "quick", false, "a run of seconds instead of minutes (fewer points, shorter times)")
	f.Uint64Var(&seed, "seed", 1, "seed for arrivals, losses and choices (repeatable runs)")
	f.StringVar(&out, "out", ".", "directory for the plots")
	f.BoolVar(&list, "list", false, "list the experiments and what each measures")
	return cmd
}
