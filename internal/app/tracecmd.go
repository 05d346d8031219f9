package app

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/applayer/applayer/internal/atomicfile"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/lab"
)

func traceCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trace",
		Short: "Work with trace files (--trace FILE): sequence diagrams",
		Example: `  applayer --trace lab.jsonl lab scenario web-cache
  applayer trace diagram lab.jsonl -o web-cache.svg -o web-cache.mmd`,
	}
	cmd.AddCommand(traceDiagramCommand(g))
	return cmd
}

func traceDiagramCommand(g *globals) *cobra.Command {
	var (
		host, from, to, format, path, title string
		outs                                []string
	)
	cmd := &cobra.Command{
		Use:   "diagram FILE",
		Short: "Draw a trace as a sequence diagram (SVG or Mermaid)",
		Long: `Reads a trace written by --trace (JSON lines, schema in docs/trace.md) and
draws its messages as a sequence diagram like the chapter's figures: one
lane per host (named from the lab's topology), one numbered arrow per
message, dashed arrows for connections opened and closed, notes for cache
decisions. Each message seen by both of its ends is drawn once.

--host keeps the messages a host sends or receives; --from and --to keep a
time window, as RFC 3339 times or as offsets from the trace's first event
(500ms, 2s). -o writes a file, SVG for .svg and Mermaid for .mmd or .md (it
may be given several times); without -o the diagram goes to stdout in
--format.`,
		Example: `  applayer trace diagram lab.jsonl -o lab.svg
  applayer trace diagram lab.jsonl --host cache.nyu.edu --format mermaid
  applayer trace diagram lab.jsonl --from 1s --to 3s -o window.svg -o window.mmd`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			evs, err := trace.ReadJSONL(f)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			topo, err := loadTopology(path)
			if err != nil {
				return err
			}
			plan, err := lab.NewPlan(topo, labKinds(), func(netip.Addr) bool { return true })
			if err != nil {
				return err
			}
			namer := lab.NewNamer(plan, lab.ClientAddr(plan), "client")
			keep, err := diagramFilter(evs, namer, host, from, to)
			if err != nil {
				return err
			}
			steps := lab.Narrate(evs, namer, keep)
			if title == "" {
				title = filepath.Base(args[0])
			}
			if len(outs) == 0 {
				return writeDiagram(g.stdout, format, title, steps)
			}
			for _, o := range outs {
				var buf bytes.Buffer
				if err := writeDiagram(&buf, diagramFormat(o), title, steps); err != nil {
					return err
				}
				if err := atomicfile.Write(o, buf.Bytes(), 0o644); err != nil {
					return err
				}
			}
			_, err = fmt.Fprintf(g.stdout, "%d messages, %d hosts: %s\n", len(steps), len(lanesOf(steps)), strings.Join(outs, ", "))
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&host, "host", "", "only the messages `HOST` sends or receives")
	f.StringVar(&from, "from", "", "only events at or after `T` (RFC 3339, or an offset such as 1.5s from the first event)")
	f.StringVar(&to, "to", "", "only events at or before `T` (as --from)")
	f.StringVar(&format, "format", "svg", "svg or mermaid, for stdout")
	f.StringArrayVarP(&outs, "output", "o", nil, "write the diagram to `FILE` (.svg, or .mmd/.md for Mermaid); repeatable")
	f.StringVar(&title, "title", "", "the diagram's title (default: the trace file's name)")
	f.StringVarP(&path, "topology", "f", "", "the lab's topology `FILE`, to name hosts; default: $"+TopologyEnv+", else the embedded topology")
	return cmd
}

func lanesOf(steps []lab.Step) map[string]bool {
	m := map[string]bool{}
	for _, s := range steps {
		m[s.From] = true
		if s.To != "" {
			m[s.To] = true
		}
	}
	return m
}

func diagramFormat(path string) string {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".mmd", ".md", ".mermaid":
		return "mermaid"
	}
	return "svg"
}

func writeDiagram(w io.Writer, format, title string, steps []lab.Step) error {
	switch format {
	case "svg":
		return lab.WriteSVG(w, title, steps, false)
	case "mermaid":
		return lab.WriteMermaid(w, title, steps)
	}
	return fmt.Errorf("--format %q: want svg or mermaid", format)
}

// diagramFilter returns the events' filter for --host, --from and --to.
func diagramFilter(evs []trace.Event, namer *lab.Namer, host, from, to string) (func(trace.Event) bool, error) {
	var first time.Time
	for _, e := range evs {
		if first.IsZero() || e.Time.Before(first) {
			first = e.Time
		}
	}
	parse := func(flag, s string) (time.Time, error) {
		if s == "" {
			return time.Time{}, nil
		}
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t, nil
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return time.Time{}, fmt.Errorf("--%s %q: want an RFC 3339 time or an offset such as 1.5s", flag, s)
		}
		return first.Add(d), nil
	}
	lo, err := parse("from", from)
	if err != nil {
		return nil, err
	}
	hi, err := parse("to", to)
	if err != nil {
		return nil, err
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	return func(e trace.Event) bool {
		if !lo.IsZero() && e.Time.Before(lo) || !hi.IsZero() && e.Time.After(hi) {
			return false
		}
		return host == "" || namer.Name(e.From) == host || namer.Name(e.To) == host
	}, nil
}
