package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/lab"
)

// scenarioSettle is how long a scenario's narration waits after its
// clients are done, for the last events (a connection's close, the
// remote lab's stream) to arrive.
const scenarioSettle = 300 * time.Millisecond

func labScenarioCommand(g *globals) *cobra.Command {
	var (
		path string
		list bool
	)
	cmd := &cobra.Command{
		Use:   "scenario NAME",
		Short: "Play one of the chapter's scenarios and narrate its messages",
		Long: `Drives the clients of one of the chapter's figures against the lab and prints
the numbered message sequence the lab traced: who -> whom, protocol,
summary, size and time.

When a lab started by "applayer lab up" runs on the topology's block, the
scenario plays against it (its events come from the lab's admin listener,
GET /trace). Otherwise the scenario starts the topology in this process
first (a few seconds) and stops it at the end.

--list says what each scenario shows.`,
		Example: `  applayer lab scenario --list
  applayer lab scenario dns-iterative
  applayer lab scenario http-nonpersistent
  applayer --trace web-cache.jsonl lab scenario web-cache`,
		Args: func(cmd *cobra.Command, args []string) error {
			if list {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			scs := labScenarios()
			if list {
				return listScenarios(g.stdout, scs)
			}
			sc, ok := scs.Get(args[0])
			if !ok {
				var names []string
				for _, s := range scs.All() {
					names = append(names, s.Name)
				}
				return fmt.Errorf("unknown scenario %q (known: %s)", args[0], strings.Join(names, ", "))
			}
			e, err := g.env()
			if err != nil {
				return err
			}
			defer e.close()
			topo, err := loadTopology(path)
			if err != nil {
				return err
			}
			return runScenario(cmd.Context(), g.stdout, e, topo, sc)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&path, "topology", "f", "", "the lab's topology `FILE`; default: $"+TopologyEnv+", else the embedded topology")
	f.BoolVar(&list, "list", false, "list the scenarios and what each shows")
	return cmd
}

func listScenarios(w io.Writer, scs *lab.Scenarios) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tWHAT IT SHOWS")
	for _, s := range scs.All() {
		fmt.Fprintf(tw, "%s\t%s\n", s.Name, s.Summary)
	}
	return tw.Flush()
}

// runScenario plays sc against the running lab of topo, or against topo
// started in this process when none runs.
func runScenario(ctx context.Context, out io.Writer, e *env, topo *lab.Topology, sc lab.Scenario) error {
	plan, err := lab.NewPlan(topo, labKinds(), nil)
	if err != nil {
		return fmt.Errorf("invalid topology:\n%w", err)
	}
	collect := &trace.Collector{}
	defer e.trace.Subscribe(collect)()
	admin, running := lab.RunningAdmin(plan.Block)
	if running {
		// The lab's events join this process's own (the narration's
		// collector, and --trace FILE when given).
		stop, err := lab.StreamTrace(ctx, admin, trace.SinkFunc(e.trace.Publish))
		if err != nil {
			return fmt.Errorf("the lab on %s runs but its trace cannot be read: %w", plan.Block, err)
		}
		defer stop()
		fmt.Fprintf(out, "Playing %s against the lab running on %s (admin %s).\n", sc.Name, plan.Block, admin)
	} else {
		// Our own lab, with an admin listener of its own on any free port
		// (the scenario empties caches through it).
		topo.Lab.Admin = "127.0.0.1:0"
		if plan, err = lab.NewPlan(topo, labKinds(), nil); err != nil {
			return err
		}
		fmt.Fprintf(out, "No lab runs on %s: starting the topology in this process.\n", plan.Block)
		reg := obs.NewRegistry()
		d := e.deps()
		d.Metrics = reg
		d.Logger = slog.New(slog.DiscardHandler) // the narration is the output
		r, err := lab.Build(plan, labKinds(), d, reg)
		if err != nil {
			return err
		}
		if err := r.Start(ctx); err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), service.DefaultGrace)
			defer cancel()
			r.Shutdown(sctx)
		}()
		admin = r.AdminAddr()
	}
	steps, err := playScenario(ctx, out, sc, plan, e.trace, admin, collect, e.logger)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nMessage sequence (%d):\n", len(steps))
	return lab.WriteNarration(out, steps, false)
}

// playScenario runs sc's clients against the lab of plan (its admin
// listener at admin; bus is where its clients publish) and returns the
// narrated steps of the events collect gathered meanwhile.
func playScenario(ctx context.Context, out io.Writer, sc lab.Scenario, plan *lab.Plan, bus *trace.Bus, admin string, collect *trace.Collector, logger *slog.Logger) ([]lab.Step, error) {
	const clientName = "client"
	client := lab.ClientAddr(plan)
	cbus := bus.WithHost(clientName)
	env := lab.ScenarioEnv{
		Plan: plan, Client: client, ClientName: clientName,
		Dialer: plan.ClientDialer(client, cbus),
		Trace:  cbus,
		Admin:  lab.AdminFunc(admin),
		Out:    out, Logger: logger,
	}
	fmt.Fprintf(out, "\nScenario %s: %s\n(the chapter: %s)\n\n", sc.Name, sc.Summary, sc.Figure)
	start := time.Now()
	if err := sc.Run(ctx, env); err != nil {
		return nil, fmt.Errorf("scenario %s: %w", sc.Name, err)
	}
	select {
	case <-time.After(scenarioSettle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var evs []trace.Event
	for _, e := range collect.Events() {
		if !e.Time.Before(start) {
			evs = append(evs, e)
		}
	}
	namer := lab.NewNamer(plan, client, clientName)
	return lab.Narrate(evs, namer, sc.Filter(namer, clientName)), nil
}
