// Package app holds applayer's subcommands and the one explicit wiring table
// (wiring.go) that says which packages make up the binary. cmd/applayer only
// calls Main.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
)

// Main runs the applayer command line with args (without the program name)
// and returns the process exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal, restore the default so a second one kills.
	go func() { <-ctx.Done(); stop() }()
	root := NewRoot(stdin, stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		var q quiet
		if !errors.As(err, &q) || !q.Silent() {
			fmt.Fprintln(stderr, "applayer:", err)
		}
		var ec exitCoder
		if errors.As(err, &ec) {
			return ec.ExitCode()
		}
		return 1
	}
	return 0
}

type exitCoder interface{ ExitCode() int }

// quiet is an error the command asked not to print (curl's -s).
type quiet interface{ Silent() bool }

// globals are the flags every command shares.
type globals struct {
	logFormat string
	logLevel  string
	traceFile string
	// admin is the admin listener of a single-server command (see adminFlags).
	admin obs.AdminConfig

	stdin          io.Reader
	stdout, stderr io.Writer
}

// env is what a command gets from the globals: a logger, a trace bus (with
// the JSONL sink attached when --trace is given) and a function that flushes
// and closes the sink.
type env struct {
	logger *slog.Logger
	trace  *trace.Bus
	close  func() error
}

// logger returns the logger the global flags ask for.
func (g *globals) logger() (*slog.Logger, error) {
	return obs.NewLogger(g.stderr, g.logFormat, g.logLevel)
}

func (g *globals) env() (*env, error) {
	logger, err := g.logger()
	if err != nil {
		return nil, err
	}
	e := &env{logger: logger, trace: trace.NewBus(nil), close: func() error { return nil }}
	if g.traceFile != "" {
		sink, err := trace.CreateJSONL(g.traceFile)
		if err != nil {
			return nil, err
		}
		cancel := e.trace.Subscribe(sink)
		e.close = func() error { cancel(); return sink.Close() }
	}
	return e, nil
}

func (e *env) deps() service.Deps {
	return service.Deps{Logger: e.logger, Trace: e.trace}.Defaults()
}

// NewRoot returns the root command with every subcommand attached.
func NewRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "applayer",
		Short: "The Internet's application layer in one binary",
		Long: `applayer is every system of the application-layer chapter of networking, for
real: DNS, the Web, e-mail, BitTorrent, video streaming and CDNs, and the
socket-programming examples, each as a server and a client that interoperate
with the real software people use, plus a one-command mini-Internet
("applayer lab up") that wires them together on loopback.`,
		Example: `  applayer lab up
  applayer sockets udp-server --listen 127.0.0.1:12000
  applayer version`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())
	})
	pf := root.PersistentFlags()
	pf.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	pf.StringVar(&g.traceFile, "trace", "", "write every protocol message as a JSON line to `FILE`")
	for _, c := range commands(g) {
		root.AddCommand(c)
	}
	return root
}

func versionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print applayer's version",
		Example: "  applayer version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := "(devel)"
			if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
				v = bi.Main.Version
			}
			_, err := fmt.Fprintf(g.stdout, "applayer %s %s %s/%s\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
