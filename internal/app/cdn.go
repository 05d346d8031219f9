package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/applayer/applayer/cdn/edge"
	"github.com/applayer/applayer/cdn/router"
	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
)

func cdnCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cdn",
		Short: "Content distribution: the request router (DNS) and caching edges",
		Long: `A CDN as in the chapter's NetCinema / KingCDN walk-through: the content
provider's DNS aliases video.netcinema.com into the CDN's domain; the CDN's
request router (cdn route), authoritative for that domain, answers with the
address of an edge cluster near the client (by the EDNS Client Subnet the
resolver sends, else the resolver's address), skipping clusters that fail
health checks or are overloaded; the edges (cdn edge) are caches in reverse
mode that pull from the origin, or through a shield cache, on demand, and
take pushed objects ahead of demand.`,
		Example: `  applayer cdn route --listen 127.0.0.1:5310 --domain kingcdn.com --admin 127.0.0.1:9953 --edge umass/edge1=192.0.2.11 --edge nyu/edge1=192.0.2.21 --network 10.1.0.0/16=umass:1,nyu:4 --network 10.2.0.0/16=nyu:1,umass:4
  dig @127.0.0.1 -p 5310 video.kingcdn.com +subnet=10.1.2.0/24 +short   # -> 192.0.2.11
  applayer cdn status --admin 127.0.0.1:9953`,
	}
	cmd.AddCommand(cdnRouteCommand(g), cdnEdgeCommand(g), cdnStatusCommand(g), cdnPurgeCommand(g))
	return cmd
}

func cdnRouteCommand(g *globals) *cobra.Command {
	var (
		cfg      router.Config
		cfgFile  string
		edges    []string
		networks []string
		origins  []string
	)
	cmd := &cobra.Command{
		Use:   "route",
		Short: "Run the CDN's request router: an authoritative DNS server choosing an edge per query",
		Long: `Serves the CDN's domain over DNS (UDP and TCP). Every name under it is
answered with the address of one edge: the client is the query's EDNS Client
Subnet (RFC 7871; the answer echoes it with the scope of the network matched)
or else the resolver's address; the network map gives the client's network
and the clusters in order of distance; the nearest cluster with an edge that
passes its health checks and is under the cluster's max_load wins; within the
cluster the name picks the edge by rendezvous hashing. With no cluster left,
the origin's address (--origin) is the last resort. Answers have a short TTL
(--ttl). Every decision is traced (--trace, proto cdn/route) and counted
(applayer_cdn_router_decisions_total).

The network map is a YAML or JSON file (--map; see router.Map), or given with
flags: --edge CLUSTER/NAME=ADDR[@CONTROL] (CONTROL is the edge's control
listener, checked every --check-interval) and --network
PREFIX[,PREFIX...]=CLUSTER:DIST[,CLUSTER:DIST...]. With --admin, GET
/cdn/status shows health, load and recent decisions (cdn status reads it) and
POST /cdn/purge?url=|prefix= purges every edge.`,
		Example: `  applayer cdn route --listen 127.0.0.1:5310 --domain kingcdn.com --admin 127.0.0.1:9953 --edge umass/edge1=192.0.2.11 --edge nyu/edge1=192.0.2.21 --network 10.1.0.0/16=umass:1,nyu:4 --network 10.2.0.0/16=nyu:1,umass:4 --origin 192.0.2.1
  dig @127.0.0.1 -p 5310 video.kingcdn.com +subnet=10.1.2.0/24 +short   # -> 192.0.2.11
  dig @127.0.0.1 -p 5310 video.kingcdn.com +subnet=10.2.0.0/24 +short   # -> 192.0.2.21`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := loadConfigFile(cmd, cfgFile, &cfg); err != nil {
				return err
			}
			if cfg.MapFile == "" && cfg.Map == nil || cmd.Flags().Changed("edge") {
				m, err := mapFromFlags(edges, networks, origins)
				if err != nil {
					return err
				}
				cfg.Map, cfg.MapFile = m, ""
			}
			return serveWithAdmin(cmd, g, func(d service.Deps) (service.Service, error) {
				return router.New(cfg, d)
			}, func(s service.Service, a *obs.Admin) {
				a.Handle("/cdn/", s.(*router.Server).Handler())
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgFile, "config", "", "configuration `FILE` (YAML or JSON, the fields of router.Config); flags given override it")
	f.StringVar(&cfg.Addr, "listen", "127.0.0.1:53", "address to serve DNS on (UDP and TCP)")
	f.StringVar(&cfg.Domain, "domain", "", "the CDN's domain, e.g. kingcdn.com")
	f.StringSliceVar(&cfg.NS, "ns", nil, "the domain's name servers (default ns.DOMAIN)")
	f.StringVar(&cfg.MapFile, "map", "", "network map `FILE` (YAML or JSON)")
	f.StringArrayVar(&edges, "edge", nil, "an edge: `CLUSTER/NAME=ADDR[@CONTROL]` (repeatable; instead of --map)")
	f.StringArrayVar(&networks, "network", nil, "a client network: `PREFIX[,PREFIX]=CLUSTER:DIST[,...]` (repeatable)")
	f.StringSliceVar(&origins, "origin", nil, "the origin's addresses, answered when no cluster can serve")
	f.Var(&cfg.TTL, "ttl", "TTL of the answers (default 20s)")
	f.Var(&cfg.CheckInterval, "check-interval", "how often each edge's health is checked (default 2s)")
	f.IntVar(&cfg.Fall, "fall", 2, "failed checks in a row that mark an edge down")
	adminFlags(cmd, g, "GET /cdn/status, POST /cdn/purge")
	return cmd
}

// mapFromFlags builds a network map from --edge, --network and --origin.
func mapFromFlags(edges, networks, origins []string) (*router.Map, error) {
	m := &router.Map{Origin: origins}
	idx := map[string]int{}
	for _, e := range edges {
		lhs, rhs, ok := strings.Cut(e, "=")
		cl, name, ok2 := strings.Cut(lhs, "/")
		if !ok || !ok2 || cl == "" || name == "" {
			return nil, fmt.Errorf("--edge %q: want CLUSTER/NAME=ADDR[@CONTROL]", e)
		}
		addr, control, _ := strings.Cut(rhs, "@")
		i, seen := idx[cl]
		if !seen {
			i = len(m.Clusters)
			idx[cl] = i
			m.Clusters = append(m.Clusters, router.Cluster{Name: cl})
		}
		m.Clusters[i].Edges = append(m.Clusters[i].Edges, router.Edge{Name: name, Addr: addr, Control: control})
	}
	for _, n := range networks {
		lhs, rhs, ok := strings.Cut(n, "=")
		if !ok {
			return nil, fmt.Errorf("--network %q: want PREFIX[,PREFIX]=CLUSTER:DIST[,...]", n)
		}
		nw := router.Network{Name: lhs, Prefixes: strings.Split(lhs, ","), Distances: map[string]int{}}
		for _, d := range strings.Split(rhs, ",") {
			cl, dist, ok := strings.Cut(d, ":")
			v, err := strconv.Atoi(dist)
			if !ok || err != nil {
				return nil, fmt.Errorf("--network %q: %q is not CLUSTER:DISTANCE", n, d)
			}
			nw.Distances[cl] = v
		}
		m.Networks = append(m.Networks, nw)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("network map from flags: %w", err)
	}
	return m, nil
}

func cdnEdgeCommand(g *globals) *cobra.Command {
	var (
		cfg     edge.Config
		cfgFile string
		memMiB  int64
	)
	cmd := &cobra.Command{
		Use:   "edge",
		Short: "Run a CDN edge (or shield): the web cache in reverse mode for the content provider",
		Long: `Runs one edge: a caching reverse proxy for every site, fetching misses from
--upstream (the cluster's shield, or the origin), coalescing concurrent misses
into one fetch. With --shield it is a shield cache that edges fetch through.
--prefetch URL pushes an object into the cache at start (repeatable; also
POST /cdn/prefetch on the control listener, one URL per line).
CDN-Cache-Control (RFC 9213) overrides Cache-Control for the CDN and is not
passed to clients. Ranges are answered from whole stored objects; 103 Early
Hints are forwarded; stale-if-error is honoured.

The control listener (--control, loopback) is what the request router checks:
GET /cdn/health (health and load: open connections over --capacity),
POST /cdn/purge?url=|prefix=, POST /cdn/prefetch, /cache/stats, /metrics.`,
		Example: `  applayer cdn edge --listen 127.0.0.1:8088 --control 127.0.0.1:8089 --upstream 127.0.0.1:8080 --name edge1.umass
  applayer cdn edge --listen 127.0.0.1:8090 --control 127.0.0.1:8091 --upstream 127.0.0.1:8080 --shield --name shield`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := loadConfigFile(cmd, cfgFile, &cfg); err != nil {
				return err
			}
			if fromFlag(cmd, cfg.Cache.MaxBytes == 0, "cache-mem") {
				cfg.Cache.MaxBytes = memMiB << 20
			}
			return serveWithAdmin(cmd, g, func(d service.Deps) (service.Service, error) {
				return edge.New(cfg, d)
			}, func(s service.Service, a *obs.Admin) {
				a.Handle("/cache/", s.(*edge.Server).Cache().AdminHandler())
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgFile, "config", "", "configuration `FILE` (YAML or JSON, the fields of edge.Config); flags given override it")
	f.StringVar(&cfg.Addr, "listen", "127.0.0.1:80", "HTTP address to listen on")
	f.StringVar(&cfg.Control, "control", "", "control listener for the router (health, load, purge, prefetch), loopback")
	f.StringVar(&cfg.Name, "name", "edge", "the edge's name (Via, Cache-Status, reports)")
	f.StringSliceVar(&cfg.Upstreams, "upstream", nil, "where misses go: the shield's or the origin's host:port")
	f.BoolVar(&cfg.Shield, "shield", false, "be a shield cache (keep CDN-Cache-Control for the edges behind)")
	f.IntVar(&cfg.Capacity, "capacity", 512, "open client connections at full load")
	f.StringArrayVar(&cfg.Prefetch, "prefetch", nil, "a URL to push into the cache at start (repeatable)")
	f.StringSliceVar(&cfg.Cache.TargetedCacheControl, "targeted", nil, "the RFC 9213 target list (default CDN-Cache-Control)")
	f.StringVar(&cfg.Cache.Dir, "cache-dir", "", "enable the disk tier in this directory")
	f.Int64Var(&memMiB, "cache-mem", 512, "memory tier budget in MiB")
	adminFlags(cmd, g, "/cache/stats")
	return cmd
}

// fetchJSON GETs or POSTs a control URL and decodes its JSON answer.
func fetchJSON(ctx context.Context, method, u string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return fmt.Errorf("%s: %s", res.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(io.LimitReader(res.Body, 16<<20)).Decode(v)
}

func cdnStatusCommand(g *globals) *cobra.Command {
	var admin string
	var recent int
	cmd := &cobra.Command{
		Use:     "status",
		Short:   "Show a running router's clusters: health, load, hit ratio, bytes from cache and upstream, recent decisions",
		Example: `  applayer cdn status --admin 127.0.0.1:9953 --recent 5   # -> CDN kingcdn.com.`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st router.Status
			if err := fetchJSON(cmd.Context(), http.MethodGet, "http://"+admin+"/cdn/status", &st); err != nil {
				return fmt.Errorf("cdn status: %w", err)
			}
			return printCDNStatus(g.stdout, st, recent)
		},
	}
	cmd.Flags().StringVar(&admin, "admin", "127.0.0.1:9953", "the router's admin `ADDR[/PATH]`")
	cmd.Flags().IntVar(&recent, "recent", 10, "how many recent decisions to show")
	return cmd
}

func printCDNStatus(w io.Writer, st router.Status, recent int) error {
	fmt.Fprintf(w, "CDN %s\n\n", st.Domain)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tEDGE\tADDR\tHEALTH\tLOAD\tCLIENTS\tREQUESTS\tHIT RATIO\tFROM CACHE\tFROM UPSTREAM")
	for _, c := range st.Clusters {
		for _, e := range c.Edges {
			health := "up"
			if !e.Up {
				health = "DOWN"
				if e.Error != "" {
					health += " (" + e.Error + ")"
				}
			} else if e.Load > c.MaxLoad {
				health = "OVERLOADED"
			}
			req, ratio, fromCache, fromUp := "-", "-", "-", "-"
			if r := e.Report; r != nil {
				req = strconv.FormatInt(r.Requests, 10)
				if r.Requests > 0 {
					ratio = fmt.Sprintf("%.1f%%", 100*float64(r.Hits)/float64(r.Requests))
				}
				fromCache, fromUp = humanBytes(r.BytesCache), humanBytes(r.BytesUpstream)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f/%.2f\t%d\t%s\t%s\t%s\t%s\n", c.Name, e.Name, e.Addr, health, e.Load, c.MaxLoad, e.Clients, req, ratio, fromCache, fromUp)
		}
	}
	tw.Flush()
	if recent > 0 && len(st.Recent) > 0 {
		fmt.Fprintf(w, "\nRecent decisions (newest first):\n")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tNAME\tCLIENT\tNETWORK\tSKIPPED\tANSWER\tREASON")
		for i, d := range st.Recent {
			if i == recent {
				break
			}
			ans := d.Addr
			if d.Edge != "" {
				ans = d.Cluster + "/" + d.Edge + " " + d.Addr
			}
			netw := d.Network
			if netw == "" {
				netw = "-"
			}
			skipped := strings.Join(d.Skipped, "; ")
			if skipped == "" {
				skipped = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s (%s)\t%s\t%s\t%s\t%s\n", d.Time.Format("15:04:05.000"), d.Name, d.Client, d.Source, netw, skipped, ans, d.Reason)
		}
		tw.Flush()
	}
	return nil
}

func cdnPurgeCommand(g *globals) *cobra.Command {
	var admin, target string
	var prefix bool
	cmd := &cobra.Command{
		Use:   "purge URL",
		Short: "Purge a URL (or, with --prefix, every URL under it) from every edge and shield, through the router",
		Example: `  applayer cdn purge --admin 127.0.0.1:9953 http://video.netcinema.com/video/manifest.mpd   # -> purged from
  applayer cdn purge --admin 127.0.0.1:9953 --prefix http://video.netcinema.com/video/`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			target = args[0]
			q := url.Values{}
			if prefix {
				q.Set("prefix", target)
			} else {
				q.Set("url", target)
			}
			var res []router.PurgeResult
			if err := fetchJSON(cmd.Context(), http.MethodPost, "http://"+admin+"/cdn/purge?"+q.Encode(), &res); err != nil {
				return fmt.Errorf("cdn purge: %w", err)
			}
			failed, removed := 0, 0
			for _, r := range res {
				if r.Error != "" {
					failed++
					fmt.Fprintf(g.stdout, "%s: error: %s\n", r.Cache, r.Error)
					continue
				}
				fmt.Fprintf(g.stdout, "%s: %d removed\n", r.Cache, r.Removed)
				removed += r.Removed
			}
			fmt.Fprintf(g.stdout, "purged from %d caches: %d objects removed\n", len(res)-failed, removed)
			if failed > 0 {
				return fmt.Errorf("cdn purge: %d of %d caches failed", failed, len(res))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&admin, "admin", "127.0.0.1:9953", "the router's admin `ADDR[/PATH]`")
	cmd.Flags().BoolVar(&prefix, "prefix", false, "purge every URL starting with URL")
	return cmd
}
