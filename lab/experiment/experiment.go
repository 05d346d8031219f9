// Package experiment is the lab's registry of experiments: measurements
// that reproduce one of the chapter's numbers with links applied, print a
// table of measured values beside the chapter's formula and write a plot.
// Each system registers its own (web: page-load and caching; dns:
// dns-caching; torrent: p2p) through the wiring table in internal/app, and
// `applayer lab experiment NAME` runs one.
package experiment

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/lab"
)

// Env is what an experiment gets.
type Env struct {
	// Quick asks for a run of seconds (the tests' mode) instead of minutes.
	Quick bool
	// Seed makes the run repeatable (arrivals, losses, hit choices).
	Seed uint64
	// Out is the directory plots are written to (created if missing).
	Out string
	// Stdout receives the table and notes.
	Stdout io.Writer
	// Kinds are every system's lab kinds, for experiments that start a lab.
	Kinds *lab.Kinds
	// Deps are handed to the services and clients (logger, trace bus).
	Deps service.Deps
}

// Path returns Out/name, for a plot file.
func (e Env) Path(name string) string { return filepath.Join(e.Out, name) }

// Row is one measurement beside its formula.
type Row struct {
	// Case names the setting ("non-persistent, RTT 50ms").
	Case string
	// Measured and Formula are in Unit.
	Measured, Formula float64
	Unit              string
	// Tolerance is the relative difference the experiment's test accepts
	// (0.1 = 10%); 0 means the row is reported but not checked.
	Tolerance float64
	// Slack is an absolute difference accepted on top of Tolerance (for
	// values near zero, such as a delay at a low utilisation).
	Slack float64
	// NoFormula marks a row that is measured only: no formula of the
	// chapter predicts it (HTTP/1.1 over six connections, any load time
	// on a lossy link). Its Formula is ignored and printed as "-".
	NoFormula bool
}

// Off is |Measured - Formula| / Formula (0 when both are 0).
func (r Row) Off() float64 {
	if r.Formula == 0 {
		if r.Measured == 0 {
			return 0
		}
		return math.Inf(1)
	}
	return math.Abs(r.Measured-r.Formula) / math.Abs(r.Formula)
}

// OK reports whether the row is within its tolerance (or not checked).
func (r Row) OK() bool {
	if r.Tolerance == 0 || r.NoFormula {
		return true
	}
	return math.Abs(r.Measured-r.Formula) <= r.Tolerance*math.Abs(r.Formula)+r.Slack
}

// Result is what a run measured.
type Result struct {
	Rows []Row
	// Plots are the files written.
	Plots []string
}

// Check returns an error naming every row outside its tolerance.
func (r *Result) Check() error {
	var bad []string
	for _, row := range r.Rows {
		if !row.OK() {
			bad = append(bad, fmt.Sprintf("%s: measured %.4g %s, formula %.4g (%.1f%% off, tolerance %.0f%% + %g)",
				row.Case, row.Measured, row.Unit, row.Formula, row.Off()*100, row.Tolerance*100, row.Slack))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("experiment: %d of %d rows outside tolerance:\n  %s", len(bad), len(r.Rows), strings.Join(bad, "\n  "))
	}
	return nil
}

// WriteTable prints rows as a table: case, measured, formula, difference.
func WriteTable(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "CASE\tMEASURED\tFORMULA\tUNIT\tOFF\t\n")
	for _, r := range rows {
		formula := fmt.Sprintf("%.4g", r.Formula)
		off := fmt.Sprintf("%.1f%%", r.Off()*100)
		if r.NoFormula {
			formula = "-"
		}
		if r.NoFormula || r.Formula == 0 || math.IsInf(r.Formula, 0) {
			off = "-"
		}
		fmt.Fprintf(tw, "%s\t%.4g\t%s\t%s\t%s\t\n", r.Case, r.Measured, formula, r.Unit, off)
	}
	return tw.Flush()
}

// Experiment is one registered experiment.
type Experiment struct {
	// Name is what `lab experiment NAME` takes ("page-load").
	Name string
	// Summary says in one line what it measures.
	Summary string
	// Run measures, prints its table on env.Stdout, writes its plots
	// under env.Out and returns the rows.
	Run func(ctx context.Context, env Env) (*Result, error)
}

// Registry is a set of experiments by name.
type Registry struct {
	m map[string]Experiment
}

// NewRegistry returns a registry of the given experiments. A duplicate name
// is a wiring mistake and panics.
func NewRegistry(es ...Experiment) *Registry {
	r := &Registry{m: map[string]Experiment{}}
	for _, e := range es {
		r.Register(e)
	}
	return r
}

// Register adds e; it panics when the name is taken.
func (r *Registry) Register(e Experiment) {
	if _, dup := r.m[e.Name]; dup {
		panic(fmt.Sprintf("experiment: %q registered twice", e.Name))
	}
	r.m[e.Name] = e
}

// Get returns the named experiment.
func (r *Registry) Get(name string) (Experiment, bool) {
	e, ok := r.m[name]
	return e, ok
}

// All returns the experiments sorted by name.
func (r *Registry) All() []Experiment {
	out := make([]Experiment, 0, len(r.m))
	for _, e := range r.m {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Names returns the names, comma-separated.
func (r *Registry) Names() string {
	var n []string
	for _, e := range r.All() {
		n = append(n, e.Name)
	}
	return strings.Join(n, ", ")
}

// StartLab plans, builds and starts topo for one run: no admin listener,
// state in a fresh temporary directory, a private metrics registry and,
// unless the topology names one, a random /24 of 127.0.0.0/8 as its block,
// so that runs side by side (tests, a lab that is up) do not collide. stop
// shuts it down and removes the state.
func StartLab(ctx context.Context, env Env, topo *lab.Topology) (r *lab.Running, stop func(), err error) {
	dir, err := os.MkdirTemp("", "applayer-experiment-")
	if err != nil {
		return nil, nil, err
	}
	topo.Lab.Admin, topo.Lab.StateDir = "off", dir
	if topo.Lab.Block == "" {
		topo.Lab.Block = fmt.Sprintf("127.%d.%d.0/24", 100+rand.IntN(100), rand.IntN(256))
	}
	if topo.Lab.Seed == 0 {
		topo.Lab.Seed = env.Seed
	}
	plan, err := lab.NewPlan(topo, env.Kinds, nil)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	reg := prometheus.NewRegistry()
	d := env.Deps
	d.Metrics = reg
	r, err = lab.Build(plan, env.Kinds, d, reg)
	if err == nil {
		err = r.Start(ctx)
	}
	if err != nil {
		if r != nil {
			r.Shutdown(context.Background())
		}
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return r, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.Shutdown(sctx)
		os.RemoveAll(dir)
	}, nil
}
