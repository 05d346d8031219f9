package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/web/cache"
	"github.com/applayer/applayer/web/proxy"
)

func httpProxyCommand(g *globals) *cobra.Command {
	var (
		cfg          proxy.Config
		cfgFile      string
		sites        []string
		balance      string
		stats        bool
		memMiB       int64
		maxObjKiB    int64
		connect      []int
		fetchTimeout time.Duration
		gcPercent    int
	)
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
listener serves /metrics, /cache/stats and POST /cache/purge?url=|prefix=.
With --stats, the command instead prints the statistics of a running proxy
(from its --admin listener): requests, hit ratio, bytes from cache and from
origins, and the access-link utilisation they imply for --link-rate.`,
		Example: `  applayer http proxy --listen 127.0.0.1:3128 --admin 127.0.0.1:9931 --cache-dir /var/tmp/webcache
  curl --proxy http://127.0.0.1:3128 http://gaia.cs.umass.edu/
  applayer http proxy --stats --admin 127.0.0.1:9931
  applayer http proxy --stats --admin 127.0.0.1:9900/hosts/cache.nyu.edu   # the lab's campus cache
  curl -X POST '127.0.0.1:9931/cache/purge?prefix=http://gaia.cs.umass.edu/'
  applayer http proxy --listen 127.0.0.1:8080 --site www.example.com=127.0.0.1:8081,127.0.0.1:8082 --balance least-loaded`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if stats {
				return printProxyStats(cmd.Context(), g.stdout, cfg.Admin)
			}
			if cfgFile != "" {
				var fc proxy.Config
				if err := config.Load(cfgFile, &fc); err != nil {
					return err
				}
				mergeFlags(cmd, &fc, &cfg)
				cfg = fc
			}
			for _, s := range sites {
				host, origins, ok := strings.Cut(s, "=")
				if !ok || host == "" || origins == "" {
					return fmt.Errorf("--site %q: want HOST=ADDR[,ADDR...]", s)
				}
				cfg.Sites = append(cfg.Sites, proxy.Site{Host: host, Origins: strings.Split(origins, ","), Balance: balance})
			}
			if cmd.Flags().Changed("cache-mem") {
				cfg.Cache.MaxBytes = memMiB << 20
			}
			if cmd.Flags().Changed("max-object") {
				cfg.Cache.MaxObjectBytes = maxObjKiB << 10
			}
			if cmd.Flags().Changed("connect-port") {
				cfg.ConnectPorts = connect
			}
			if cmd.Flags().Changed("fetch-timeout") {
				cfg.Cache.FetchTimeout = config.Duration(fetchTimeout)
			}
			if os.Getenv("GOGC") == "" {
				// Cached bodies are long-lived and hits allocate nothing:
				// a lower GC target trades a little miss-path CPU for a
				// resident size closer to the cache's byte budget.
				debug.SetGCPercent(gcPercent)
			}
			return serve(cmd, g, func(d service.Deps) (service.Service, error) {
				d.Metrics = obs.NewRegistry()
				return proxy.New(cfg, d)
			})
		},
	}
	f := cmd.Flags()
	f.IntVar(&gcPercent, "gc-percent", 25, "Go GC target percentage for this process (unless GOGC is set)")
	f.StringVar(&cfgFile, "config", "", "configuration `FILE` (YAML or JSON, the fields of proxy.Config); flags given override it")
	f.StringVar(&cfg.Addr, "listen", "127.0.0.1:3128", "address to listen on")
	f.StringVar(&cfg.Name, "name", "applayer", "pseudonym in Via and Cache-Status")
	f.StringVar(&cfg.Admin, "admin", "", "loopback admin listener for /metrics, /cache/stats, /cache/purge (with --stats: the running proxy's)")
	f.BoolVar(&stats, "stats", false, "print the statistics of the proxy running with --admin ADDR and exit")
	f.StringVar(&cfg.Cache.Dir, "cache-dir", "", "enable the disk tier in this directory (survives restarts)")
	f.Int64Var(&memMiB, "cache-mem", 256, "memory tier budget in MiB")
	f.Int64Var(&maxObjKiB, "max-object", 16<<10, "largest object stored, in KiB")
	f.Float64Var(&cfg.Cache.LinkRate, "link-rate", 15.4e6, "access-link rate in bits/s for the utilisation statistic")
	f.DurationVar(&fetchTimeout, "fetch-timeout", 60*time.Second, "time allowed for one origin fetch")
	f.StringArrayVar(&sites, "site", nil, "reverse-proxy `HOST=ADDR[,ADDR...]` (repeatable; HOST * is the default site)")
	f.StringVar(&balance, "balance", "round-robin", "choice among a site's replicas: round-robin or least-loaded")
	f.IntSliceVar(&connect, "connect-port", []int{443}, "ports CONNECT may reach")
	f.StringSliceVar(&cfg.AllowedClients, "allow", nil, "client networks (CIDR) allowed to use the proxy (default loopback)")
	f.StringSliceVar(&cfg.TrustForwardedFrom, "trust-xff", nil, "proxies (CIDR) whose X-Forwarded-For is kept")
	f.StringSliceVar(&cfg.AllowDestinations, "allow-to", nil, "loopback/link-local/own networks (CIDR) forward requests may reach (refused by default)")
	return cmd
}

// mergeFlags copies into fc the flag values the user gave explicitly.
func mergeFlags(cmd *cobra.Command, fc, flags *proxy.Config) {
	ch := cmd.Flags().Changed
	if ch("listen") || fc.Addr == "" {
		fc.Addr = flags.Addr
	}
	if ch("name") {
		fc.Name = flags.Name
	}
	if ch("admin") {
		fc.Admin = flags.Admin
	}
	if ch("cache-dir") {
		fc.Cache.Dir = flags.Cache.Dir
	}
	if ch("link-rate") {
		fc.Cache.LinkRate = flags.Cache.LinkRate
	}
	if ch("allow") {
		fc.AllowedClients = flags.AllowedClients
	}
	if ch("trust-xff") {
		fc.TrustForwardedFrom = flags.TrustForwardedFrom
	}
	if ch("allow-to") {
		fc.AllowDestinations = flags.AllowDestinations
	}
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

// labDialer resolves the lab's host names to their planned addresses and
// moves standard ports by the lab's offset, so the campus cache can fetch
// http://gaia.cs.umass.edu/ inside the mini-Internet.
type labDialer struct {
	plan *lab.Plan
	next service.Dialer
}

func (d labDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err == nil {
		if h, ok := d.plan.Lookup(host); ok {
			p, _ := strconv.Atoi(port)
			address = net.JoinHostPort(h.Addr.String(), strconv.Itoa(d.plan.Port(p)))
		}
	}
	return d.next.DialContext(ctx, network, address)
}

// proxyKinds are the lab kinds of package web/proxy.
func proxyKinds() []lab.Kind {
	return []lab.Kind{{
		Name: "web-cache", Summary: "campus web cache: caching forward proxy (RFC 9111)", Port: proxy.DefaultPort, Network: "tcp",
		Check: func(raw json.RawMessage) error {
			var c proxy.Config
			if err := lab.DecodeConfig(raw, &c); err != nil {
				return err
			}
			return c.Validate()
		},
		Build: func(env lab.Env) (service.Service, error) {
			var c proxy.Config
			if err := lab.DecodeConfig(env.Spec.Config, &c); err != nil {
				return nil, err
			}
			c.Addr = env.Listen.String()
			if c.Name == "" {
				c.Name = env.Host.Name
			}
			if c.AllowDestinations == nil {
				// the lab's hosts live on loopback: allowed explicitly
				c.AllowDestinations = []string{env.Plan.Block.String()}
			}
			if c.Cache.Dir == "" && env.Plan.StateDir != "" {
				c.Cache.Dir = filepath.Join(env.Plan.StateDir, "web-cache", env.Host.Name)
			}
			d := env.Deps.Defaults()
			d.Dialer = labDialer{plan: env.Plan, next: d.Dialer}
			srv, err := proxy.New(c, d)
			if err != nil {
				return nil, err
			}
			// Stats and purge on the lab's admin listener, under
			// /hosts/<name>/: applayer http proxy --stats --admin 127.0.0.1:9900/hosts/cache.nyu.edu
			env.Admin.Handle("/cache/", srv.Cache().AdminHandler())
			return srv, nil
		},
	}}
}
