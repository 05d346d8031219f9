package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/web/cache"
	"github.com/applayer/applayer/web/proxy"
)

// proxyFile is `http proxy`'s config file: the proxy's own fields plus the
// process's GC target, which is the binary's choice.
type proxyFile struct {
	proxy.Config
	// GCPercent is --gc-percent: the Go GC target of the process (as
	// GOGC). Default 25.
	GCPercent int `json:"gc_percent,omitempty"`
}

func httpProxyCommand(g *globals) *cobra.Command {
	var (
		fc        proxyFile
		cfgFile   string
		sites     []string
		balance   string
		stats     bool
		memMiB    int64
		maxObjKiB int64
	)
	cfg := &fc.Config
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run the web cache: a caching forward proxy (and reverse proxy) following RFC 9111",
		Long: `Runs the chapter's web cache. As a forward proxy (the default), browsers and
curl configured to use it send it absolute URLs; it answers from its cache
when it can (RFC 9111 freshness, validation, Vary, ...) and otherwise fetches
from the origin, and it tunnels https with CONNECT (port 443 only unless
--connect-port says otherwise) without caching. Only loopback clients may use
it unless --allow says otherwise, and it refuses to forward to loopback,
link-local or its own addresses unless --allow-to lists them (the lab lists
its own block).

With --site HOST=ADDR[,ADDR...] it is a caching reverse proxy for HOST,
spreading requests over the replicas (--balance round-robin or least-loaded)
and health-checking them.

Every response carries Cache-Status (RFC 9211). With --admin, a loopback
listener serves /metrics, /healthz, /readyz, /cache/stats and
POST /cache/purge?url=|prefix=. With --stats, the command instead prints the
statistics of a running proxy (from its --admin listener): requests, hit
ratio, bytes from cache and from origins, and the access-link utilisation
they imply for --link-rate. A --config file (YAML or JSON, the fields of
proxy.Config plus gc_percent) may be given; flags given override it.`,
		Example: `  applayer http proxy --listen 127.0.0.1:3128 --admin 127.0.0.1:9931 --allow-to 127.0.0.0/8 --cache-dir /var/tmp/webcache
  curl --proxy http://127.0.0.1:3128 http://127.0.0.1:8080/     # a site on loopback (--allow-to admits it)
  applayer http proxy --stats --admin 127.0.0.1:9931
  applayer http proxy --stats --admin 127.0.0.1:9900/hosts/cache.nyu.edu   # the lab's campus cache
  curl -X POST '127.0.0.1:9931/cache/purge?prefix=http://127.0.0.1:8080/'
  applayer http proxy --listen 127.0.0.1:8080 --site www.example.com=127.0.0.1:8081,127.0.0.1:8082 --balance least-loaded`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if stats {
				return printProxyStats(cmd.Context(), g.stdout, g.admin.Addr)
			}
			if err := loadConfigFile(cmd, cfgFile, &fc); err != nil {
				return err
			}
			if fromFlag(cmd, len(cfg.Sites) == 0, "site") {
				cfg.Sites = nil
				for _, s := range sites {
					host, origins, ok := strings.Cut(s, "=")
					if !ok || host == "" || origins == "" {
						return fmt.Errorf("--site %q: want HOST=ADDR[,ADDR...]", s)
					}
					cfg.Sites = append(cfg.Sites, proxy.Site{Host: host, Origins: strings.Split(origins, ","), Balance: balance})
				}
			}
			if fromFlag(cmd, cfg.Cache.MaxBytes == 0, "cache-mem") {
				cfg.Cache.MaxBytes = memMiB << 20
			}
			if fromFlag(cmd, cfg.Cache.MaxObjectBytes == 0, "max-object") {
				cfg.Cache.MaxObjectBytes = maxObjKiB << 10
			}
			// The proxy's admin listener is the command's shared one; an
			// admin address in the file is used when --admin is not given.
			if g.admin.Addr == "" {
				g.admin.Addr = cfg.Admin
			}
			cfg.Admin = ""
			logger, err := g.logger()
			if err != nil {
				return err
			}
			// Cached bodies are long-lived and hits allocate nothing: a
			// lower GC target trades a little miss-path CPU for a
			// resident size closer to the cache's byte budget.
			restore, err := setGCPercent(cmd, fc.GCPercent, logger)
			if err != nil {
				return err
			}
			defer restore()
			return serveWithAdmin(cmd, g, func(d service.Deps) (service.Service, error) {
				return proxy.New(*cfg, d)
			}, func(s service.Service, a *obs.Admin) {
				a.Handle("/cache/", s.(*proxy.Server).Cache().AdminHandler())
			})
		},
	}
	cfg.Cache.LinkRate = 15.4e6
	cfg.Cache.FetchTimeout = config.Duration(60 * time.Second)
	cfg.ConnectPorts = []int{443}
	f := cmd.Flags()
	gcPercentFlag(f, &fc.GCPercent, 25)
	f.StringVar(&cfgFile, "config", "", "configuration `FILE` (YAML or JSON, the fields of proxy.Config); flags given override it")
	f.StringVar(&cfg.Addr, "listen", "127.0.0.1:3128", "address to listen on")
	f.StringVar(&cfg.Name, "name", "applayer", "pseudonym in Via and Cache-Status")
	adminFlags(cmd, g, "/cache/stats, POST /cache/purge (with --stats: the running proxy's)")
	f.BoolVar(&stats, "stats", false, "print the statistics of the proxy running with --admin ADDR and exit")
	f.StringVar(&cfg.Cache.Dir, "cache-dir", "", "enable the disk tier in this directory (survives restarts)")
	f.Int64Var(&memMiB, "cache-mem", 256, "memory tier budget in MiB")
	f.Int64Var(&maxObjKiB, "max-object", 16<<10, "largest object stored, in KiB")
	f.Float64Var(&cfg.Cache.LinkRate, "link-rate", cfg.Cache.LinkRate, "access-link rate in bits/s for the utilisation statistic")
	f.Var(&cfg.Cache.FetchTimeout, "fetch-timeout", "time allowed for one origin fetch")
	f.StringArrayVar(&sites, "site", nil, "reverse-proxy `HOST=ADDR[,ADDR...]` (repeatable; HOST * is the default site)")
	f.StringVar(&balance, "balance", "round-robin", "choice among a site's replicas: round-robin or least-loaded")
	f.IntSliceVar(&cfg.ConnectPorts, "connect-port", cfg.ConnectPorts, "ports CONNECT may reach")
	f.StringSliceVar(&cfg.AllowedClients, "allow", nil, "client networks (CIDR) allowed to use the proxy (default loopback)")
	f.StringSliceVar(&cfg.TrustForwardedFrom, "trust-xff", nil, "proxies (CIDR) whose X-Forwarded-For is kept")
	f.StringSliceVar(&cfg.AllowDestinations, "allow-to", nil, "loopback/link-local/own networks (CIDR) forward requests may reach (refused by default)")
	return cmd
}

func printProxyStats(ctx context.Context, w io.Writer, admin string) error {
	if admin == "" {
		return fmt.Errorf("--stats needs --admin ADDR (the running proxy's admin listener)")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/cache/stats", nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("proxy stats: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("proxy stats: %s", res.Status)
	}
	var st cache.Stats
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return fmt.Errorf("proxy stats: %w", err)
	}
	_, err = io.WriteString(w, st.String())
	return err
}
