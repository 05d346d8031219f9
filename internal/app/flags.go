package app

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
)

// The one policy every command follows to combine a config file with flags:
// each setting takes the value of its flag when the flag is given on the
// command line, else the file's value when the file sets it, else the
// flag's default. Flags are bound to the config struct's fields, so the
// struct holds the flags' defaults before loadConfigFile decodes the file
// on top of it and then puts back the flags the user gave.
//
// A flag that is not a field of the file (a size in MiB, --zone lists that
// become zone entries) is applied with fromFlag: when given, or when the
// file left the field empty.

// loadConfigFile decodes the YAML or JSON file at path (nothing when path
// is empty) over cfg, whose fields the command's flags are bound to, then
// re-applies every flag set on the command line so that it wins over the
// file.
func loadConfigFile(cmd *cobra.Command, path string, cfg any) error {
	if path == "" {
		return nil
	}
	type saved struct {
		f     *pflag.Flag
		slice []string
		value string
	}
	var given []saved
	cmd.Flags().Visit(func(f *pflag.Flag) {
		s := saved{f: f, value: f.Value.String()}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			// A copy: decoding the file may reuse the slice's array.
			s.slice = slices.Clone(sv.GetSlice())
		}
		given = append(given, s)
	})
	if err := config.Load(path, cfg); err != nil {
		return err
	}
	for _, s := range given {
		var err error
		if sv, ok := s.f.Value.(pflag.SliceValue); ok {
			err = sv.Replace(s.slice)
		} else {
			err = s.f.Value.Set(s.value)
		}
		if err != nil {
			return fmt.Errorf("--%s: %w", s.f.Name, err)
		}
	}
	return nil
}

// fromFlag reports whether a derived setting takes its flag's value: when
// one of the named flags is given on the command line, or when the config
// file left the setting empty (so the flag's default applies).
func fromFlag(cmd *cobra.Command, empty bool, names ...string) bool {
	for _, n := range names {
		if cmd.Flags().Changed(n) {
			return true
		}
	}
	return empty
}

// adminFlags gives a server command the shared admin listener flags:
// --admin ADDR serves /metrics, /healthz, /readyz and the system's own
// endpoints; a non-loopback ADDR is refused unless --admin-allow-remote.
func adminFlags(cmd *cobra.Command, g *globals, extra string) {
	usage := "serve /metrics, /healthz and /readyz"
	if extra != "" {
		usage = "serve /metrics, /healthz, /readyz and " + extra
	}
	cmd.Flags().StringVar(&g.admin.Addr, "admin", "", usage+" on this loopback `ADDR` (default: none)")
	cmd.Flags().BoolVar(&g.admin.AllowRemote, "admin-allow-remote", false, "allow a non-loopback --admin address (its endpoints are unauthenticated)")
}

// serve runs one service until the command's context ends, with the admin
// listener in front of it when --admin was given.
func serve(cmd *cobra.Command, g *globals, build func(service.Deps) (service.Service, error)) error {
	return serveWithAdmin(cmd, g, build, nil)
}

// serveWithAdmin is serve with extra, when not nil, adding the system's own
// handlers to the admin listener before it starts.
func serveWithAdmin(cmd *cobra.Command, g *globals, build func(service.Deps) (service.Service, error), extra func(service.Service, *obs.Admin)) error {
	e, err := g.env()
	if err != nil {
		return err
	}
	defer e.close()
	d := e.deps()
	reg := obs.NewRegistry()
	d.Metrics = reg
	var admin *obs.Admin
	if g.admin.Addr != "" {
		// Checked before the service is built, so a refused address
		// costs nothing.
		admin, err = obs.NewAdmin(g.admin, reg, e.logger.With("service", "admin"))
		if err != nil {
			return fmt.Errorf("--admin: %w", err)
		}
	}
	svc, err := build(d)
	if err != nil {
		return err
	}
	group := service.NewGroup(e.logger)
	if admin != nil {
		if extra != nil {
			extra(svc, admin)
		}
		group.Add(admin)
	}
	group.Add(svc)
	return service.Run(cmd.Context(), group, service.DefaultGrace, func() {
		for _, s := range group.Services() {
			if a, ok := s.(service.Addresser); ok {
				for _, addr := range a.Addrs() {
					fmt.Fprintf(g.stdout, "%s listening on %s %s\n", s.Name(), addr.Network(), addr)
				}
			}
		}
		if admin != nil {
			admin.SetReady(true)
		}
	})
}

// gcPercentFlag adds --gc-percent, the Go GC target of the process.
func gcPercentFlag(f *pflag.FlagSet, p *int, def int) {
	f.IntVar(p, "gc-percent", def, "Go GC target percentage for this process (as GOGC; a default yields to GOGC): lower trades CPU for memory; 0 leaves the runtime's")
}

// setGCPercent makes the process-wide GC choice of a server command, once,
// in the binary (libraries never change process settings): a --gc-percent
// given on the command line wins over GOGC; a value from the config file or
// the flag's default yields to GOGC when that is set; 0 leaves the runtime
// alone. It returns a function that restores the previous value.
func setGCPercent(cmd *cobra.Command, percent int, logger *slog.Logger) (restore func(), err error) {
	switch {
	case percent < 0:
		return nil, fmt.Errorf("--gc-percent %d: must not be negative (turning the GC off would let the heap grow without bound)", percent)
	case percent == 0:
		return func() {}, nil
	case os.Getenv("GOGC") != "" && !cmd.Flags().Changed("gc-percent"):
		return func() {}, nil
	}
	prev := debug.SetGCPercent(percent)
	logger.Debug("GC target set", "gc_percent", percent, "was", prev)
	return func() { debug.SetGCPercent(prev) }, nil
}

// freeAfterBigZone is the authority's ZoneLoaded hook in `dns serve`:
// loading a big zone leaves much garbage (the parser's record list, its
// tokens); the binary gives it back to the system now rather than at the
// scavenger's pace.
func freeAfterBigZone(_ string, records int) {
	if records > 100_000 {
		debug.FreeOSMemory()
	}
}
