package app

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/lab/dashboard"
)

func labCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "The mini-Internet: every system wired together on loopback",
		Example: `  applayer lab up
  applayer lab up --topology my-lab.yaml --check
  applayer lab scenario --list
  applayer lab kinds`,
	}
	cmd.AddCommand(labUpCommand(g), labKindsCommand(g), labTopologyCommand(g), labScenarioCommand(g))
	cmd.AddCommand(labExperimentCommand(g))
	return cmd
}

// TopologyEnv names the topology file lab up and the clients' --lab use
// when none is given (-f, --lab-topology): set it once to work with your own
// lab. Unset, they use the embedded default.
const TopologyEnv = "APPLAYER_LAB_TOPOLOGY"

func loadTopology(path string) (*lab.Topology, error) {
	if path == "" {
		path = os.Getenv(TopologyEnv)
	}
	if path == "" {
		return lab.DefaultTopology()
	}
	return lab.LoadTopology(path)
}

func labUpCommand(g *globals) *cobra.Command {
	var (
		path    string
		check   bool
		offset  int
		admin   string
		remote  bool
		jsonOut bool
		hosts   []string
		links   []string
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start the mini-Internet and run until interrupted",
		Long: `Reads a topology (YAML or JSON; the embedded default when --topology is not
given), gives each host its own loopback address from the lab block, starts
every service, prints a table of hosts, services and addresses, and runs until
Ctrl-C. With --check it only validates the topology and exits.

Services use their standard ports when the process may bind privileged ports;
otherwise every port of the lab is offset by 10000 (DNS on 10053, HTTP on
10080). --port-offset forces an offset.

--link HOST:delay=1s,rate=1.54Mbit,loss=1%,queue=64KB gives HOST an access
link (over the topology's "link:" for that host): every connection and
datagram the host sends or receives is delayed, paced and lost in user space
(see docs/lab.md, Links).

Without --topology, $APPLAYER_LAB_TOPOLOGY names the topology file (for lab
up and for the clients' --lab flags alike); unset, the embedded default.

--hosts runs only the named hosts, each at the address the topology gives
it: start one "lab up --hosts ..." per share of the topology (with its own
--admin address, or "off") to split one lab over several processes or
machines. Every share plans the whole topology, so names, addresses, ports
and zones agree; see docs/lab.md.`,
		Example: `  applayer lab up
  applayer lab up --topology lab.yaml --trace lab.jsonl
  applayer lab up --topology lab.yaml --check
  applayer lab up --link gaia.cs.umass.edu:delay=100ms,rate=1.54Mbit,loss=1%
  applayer lab up --json > lab.json
  applayer lab up --hosts a.root-servers.net,a.edu-servers.net --admin 127.0.0.1:9901`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			topo, err := loadTopology(path)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("port-offset") {
				topo.Lab.PortOffset = &offset
			}
			if cmd.Flags().Changed("admin") {
				topo.Lab.Admin = admin
			}
			if cmd.Flags().Changed("admin-allow-remote") {
				topo.Lab.AdminAllowRemote = remote
			}
			for _, l := range links {
				if err := topo.SetLink(l); err != nil {
					return err
				}
			}
			kinds := labKinds()
			plan, err := lab.NewPlan(topo, kinds, nil)
			if err != nil {
				return fmt.Errorf("invalid topology:\n%w", err)
			}
			if len(hosts) > 0 {
				if err := plan.Select(hosts); err != nil {
					return err
				}
			}
			if check {
				n := 0
				for _, h := range plan.Hosts {
					n += len(h.Services)
				}
				_, err := fmt.Fprintf(g.stdout, "topology OK: %d hosts, %d services, port offset %d\n", len(plan.Hosts), n, plan.PortOffset)
				return err
			}
			e, err := g.env()
			if err != nil {
				return err
			}
			defer e.close()
			reg := obs.NewRegistry()
			d := e.deps()
			d.Metrics = reg
			running, err := buildLab(plan, kinds, d, reg)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if err := running.Start(ctx); err != nil {
				return err
			}
			// With --json, stdout carries only the table; the notes go to stderr.
			notes := g.stdout
			if jsonOut {
				notes = g.stderr
				if err := writeJSON(g.stdout, running.Table()); err != nil {
					return err
				}
			} else {
				running.PrintTable(g.stdout)
			}
			if running.Admin != nil {
				if a := running.Admin.Addrs(); len(a) > 0 {
					fmt.Fprintf(notes, "\nDashboard: http://%s/\n", a[0])
				}
			}
			fmt.Fprintln(notes, "\nlab is up; press Ctrl-C to stop")
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), service.DefaultGrace)
			defer cancel()
			if err := running.Shutdown(sctx); err != nil {
				return err
			}
			fmt.Fprintln(notes, "lab stopped")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&path, "topology", "f", "", "topology `FILE` (YAML or JSON); default: the embedded topology")
	f.BoolVar(&check, "check", false, "validate the topology and exit")
	f.IntVar(&offset, "port-offset", 0, "add this to every port (default: 0 if privileged ports can be bound, else 10000)")
	f.BoolVar(&jsonOut, "json", false, "print the table as JSON on stdout (the notes go to stderr)")
	f.StringVar(&admin, "admin", lab.DefaultAdmin, `admin listener (loopback) for /metrics, /healthz, /readyz and the services' endpoints under /hosts/NAME/; "off" disables it`)
	f.StringArrayVar(&links, "link", nil, "`HOST:delay=1s,rate=1.54Mbit,loss=1%` gives HOST an access link (repeatable; overrides the topology)")
	f.BoolVar(&remote, "admin-allow-remote", false, "allow a non-loopback --admin address (its endpoints are unauthenticated)")
	f.StringSliceVar(&hosts, "hosts", nil, "run only these hosts of the topology (comma-separated names), each at its planned address: split one lab over several processes or machines (docs/lab.md)")
	return cmd
}

func labKindsCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "kinds",
		Short:   "List the kinds of service a topology can name",
		Example: "  applayer lab kinds",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KIND\tPORT\tNETWORK\tWHAT")
			for _, k := range labKinds().All() {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", k.Name, k.Port, k.Network, k.Summary)
			}
			return tw.Flush()
		},
	}
}

func labTopologyCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "default-topology",
		Short:   "Print the embedded default topology, as a starting point for your own",
		Example: "  applayer lab default-topology > lab.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := g.stdout.Write(lab.DefaultTopologyYAML())
			return err
		},
	}
}

// buildLab builds a planned lab with its dashboard on the admin listener.
func buildLab(plan *lab.Plan, kinds *lab.Kinds, d service.Deps, reg *prometheus.Registry) (*lab.Running, error) {
	if d.Trace == nil {
		// The dashboard streams the bus while a browser watches
		// (publishing costs one atomic load otherwise).
		d.Trace = trace.NewBus(nil)
	}
	running, err := lab.Build(plan, kinds, d, reg)
	if err != nil {
		return nil, err
	}
	dash := dashboard.New(running, d.Trace, reg, dashboard.Config{Runs: dashboardRuns(running, d)})
	dash.Mount()
	running.Group.Add(dash)
	return running, nil
}
