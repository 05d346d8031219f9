package app

import (
	"errors"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/applayer/applayer/dns/resolver"
	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
)

// resolverFile is `dns resolver`'s config file: the resolver's own fields
// plus the process's GC target, which is the binary's choice, not the
// library's.
type resolverFile struct {
	resolver.Config
	// GCPercent is --gc-percent: the Go GC target of the process (as
	// GOGC). Lower keeps the resident size closer to the live cache for
	// some CPU on the miss path. Default 100: with the packed caches the
	// resident size per cached record is below Unbound's already, and 50
	// or 25 cost 10-25% more CPU per miss (docs/BENCHMARKS.md, issue 20);
	// 0: the runtime's.
	GCPercent int `json:"gc_percent,omitempty"`
}

func dnsResolverCommand(g *globals) *cobra.Command {
	var fc resolverFile
	var cfgFile string
	cmd := &cobra.Command{
		Use:   "resolver",
		Short: "Run a recursive, caching, validating resolver (the local DNS server)",
		Long: `Runs the local DNS server of the chapter: it answers recursive queries from
allowed clients (loopback by default; others get REFUSED) by iterating
through the DNS hierarchy from the root hints, following referrals, CNAME
and DNAME chains, and caches what it learns with its TTLs (negative answers
per RFC 2308, serve-stale per RFC 8767, prefetch). It randomises query IDs,
source ports and name case (0x20), checks every reply against its question,
never caches records from outside a server's zone, and minimises the names
it sends (RFC 9156). With --forward it sends every query to an upstream
resolver instead. With --trust-anchor it validates DNSSEC.

A config file (YAML or JSON, the fields of the flags in snake_case) may be
given with --config; flags given on the command line override it.`,
		Example: `  applayer dns resolver --listen 127.0.0.1:5353 --root-hints-file root.hints
  applayer dns resolver --listen 127.0.0.1:5353 --root-hint 127.53.0.1 --upstream-port 10053
  applayer dns resolver --listen 127.0.0.1:5353 --forward 127.0.0.53 --admin 127.0.0.1:9953
  dig @127.0.0.1 -p 5353 www.example.com`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := loadConfigFile(cmd, cfgFile, &fc); err != nil {
				return err
			}
			cfg := fc.Config
			if len(cfg.RootHints) == 0 && cfg.RootHintsFile == "" && len(cfg.Forwarders) == 0 {
				return errors.New("dns resolver: give --root-hint, --root-hints-file or --forward")
			}
			logger, err := g.logger()
			if err != nil {
				return err
			}
			restore, err := setGCPercent(cmd, fc.GCPercent, logger)
			if err != nil {
				return err
			}
			defer restore()
			return serveWithAdmin(cmd, g, func(d service.Deps) (service.Service, error) {
				return resolver.New(cfg, d)
			}, func(s service.Service, a *obs.Admin) {
				a.Handle("/dns/resolver/flush", s.(*resolver.Server).FlushHandler())
			})
		},
	}
	f := cmd.Flags()
	resolverFlags(f, &fc, &cfgFile)
	adminFlags(cmd, g, "POST /dns/resolver/flush[?name=]")
	return cmd
}

// resolverFlags binds `dns resolver`'s flags to the config fields they set.
func resolverFlags(f *pflag.FlagSet, fc *resolverFile, cfgFile *string) {
	cfg := &fc.Config
	cfg.Timeout = config.Duration(400 * time.Millisecond)
	cfg.ServeStale = config.Duration(24 * time.Hour)
	f.StringVar(cfgFile, "config", "", "config `FILE` (YAML or JSON); flags given override it")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:53", "address to serve on (UDP and TCP)")
	f.StringSliceVar(&cfg.RootHints, "root-hint", nil, "root server address (repeatable)")
	f.StringVar(&cfg.RootHintsFile, "root-hints-file", "", "root hints file (zone-file format)")
	f.IntVar(&cfg.UpstreamPort, "upstream-port", 53, "port authoritative servers are queried on")
	f.StringSliceVar(&cfg.Forwarders, "forward", nil, "forward every query to this resolver (ip or ip:port, repeatable)")
	f.StringVar(&cfg.TrustAnchorFile, "trust-anchor", "", "DNSSEC trust anchor file (DS or DNSKEY records)")
	f.StringSliceVar(&cfg.Allow, "allow", nil, "client prefixes allowed recursion (default loopback)")
	f.IntVar(&cfg.CacheSize, "cache-size", 100000, "most cached entries")
	f.Int64Var(&cfg.CacheBytes, "cache-bytes", 64<<20, "most heap bytes the caches hold")
	f.BoolVar(&cfg.NoQNAMEMinimisation, "no-qname-minimisation", false, "send the full name to every server")
	f.BoolVar(&cfg.NoPrefetch, "no-prefetch", false, "do not refresh popular entries before they expire")
	f.Var(&cfg.Timeout, "timeout", "first per-try upstream timeout (doubles each round)")
	f.Var(&cfg.ServeStale, "serve-stale", "serve expired answers this long when no authority answers (negative disables)")
	gcPercentFlag(f, &fc.GCPercent, 100)
}
