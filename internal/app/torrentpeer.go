package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/torrent/dht"
	"github.com/applayer/applayer/torrent/experiment"
	"github.com/applayer/applayer/torrent/metainfo"
	"github.com/applayer/applayer/torrent/swarm"
)

// peerFlags are the flags seed and get share.
type peerFlags struct {
	cfg        swarm.Config
	up, down   string
	verbose    bool
	interval   time.Duration
	statusFreq time.Duration
	dhtAddr    string
	dhtBoot    []string
}

func (pf *peerFlags) add(cmd *cobra.Command, listen string) {
	f := cmd.Flags()
	f.StringVarP(&pf.cfg.Dir, "dir", "d", ".", "data directory: the torrent's file or directory is DIR/NAME")
	f.StringVar(&pf.cfg.Listen, "listen", listen, "address to accept peers on, and to dial and announce from")
	f.StringArrayVar(&pf.cfg.Trackers, "tracker", nil, "extra tracker `URL` (repeatable)")
	f.StringArrayVar(&pf.cfg.Peers, "peer", nil, "peer `HOST:PORT` to connect to (repeatable)")
	f.StringVar(&pf.up, "upload-limit", "0", "upload rate limit in bytes/s (suffix K, M, G: KiB/s...; 0: none)")
	f.StringVar(&pf.down, "download-limit", "0", "download rate limit in bytes/s (0: none)")
	f.IntVar(&pf.cfg.MaxPeers, "max-peers", 50, "most peer connections")
	f.DurationVar(&pf.interval, "announce-interval", 0, "announce at least this often (default: the tracker's interval)")
	f.BoolVarP(&pf.verbose, "verbose", "v", false, "print every choke decision and piece pick, and a live piece map")
	f.DurationVar(&pf.statusFreq, "status-interval", time.Second, "how often to print progress")
	f.StringVar(&pf.dhtAddr, "dht", "", "run a DHT node (BEP 5) on this UDP `ADDR` and find peers through it")
	f.StringArrayVar(&pf.dhtBoot, "dht-bootstrap", nil, "DHT node `HOST:PORT` to join through (repeatable; no public routers are used)")
}

func (pf *peerFlags) config(target string) (swarm.Config, error) {
	cfg := pf.cfg
	var err error
	if cfg.UploadLimit, err = parseRate(pf.up); err != nil {
		return cfg, fmt.Errorf("--upload-limit: %w", err)
	}
	if cfg.DownloadLimit, err = parseRate(pf.down); err != nil {
		return cfg, fmt.Errorf("--download-limit: %w", err)
	}
	cfg.AnnounceInterval = config.Duration(pf.interval)
	if strings.HasPrefix(target, "magnet:") {
		m, err := metainfo.ParseMagnet(target)
		if err != nil {
			return cfg, err
		}
		cfg.Magnet = m
	} else {
		m, err := metainfo.ReadFile(target)
		if err != nil {
			return cfg, err
		}
		cfg.Torrent = m
	}
	return cfg, nil
}

// parseRate reads "0", "500000", "512K", "4M" (binary multiples).
func parseRate(s string) (int, error) {
	s = strings.TrimSpace(strings.TrimSuffix(strings.TrimSuffix(s, "/s"), "iB"))
	mult := 1
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'k', 'K':
			mult, s = 1<<10, s[:n-1]
		case 'm', 'M':
			mult, s = 1<<20, s[:n-1]
		case 'g', 'G':
			mult, s = 1<<30, s[:n-1]
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 || v*float64(mult) > 1<<40 {
		return 0, fmt.Errorf("%q is not a rate", s)
	}
	return int(v * float64(mult)), nil
}

func torrentSeedCommand(g *globals) *cobra.Command {
	var pf peerFlags
	cmd := &cobra.Command{
		Use:   "seed FILE.torrent|MAGNET",
		Short: "Seed a torrent: verify the data in --dir and serve it to the swarm until stopped",
		Long: `Checks every piece of DIR/NAME against the torrent's hashes, announces to its
trackers from --listen's address and uploads to the peers it meets, unchoking
by upload rate (seeding mode of tit-for-tat). A partial copy is completed
first.`,
		Example: `  applayer torrent create -a http://127.0.0.1:6969/announce -o movie.torrent movie.mp4
  applayer torrent seed --dir . --listen 127.0.0.2:6881 movie.torrent &
  applayer torrent seed --dir . --listen 127.0.0.3:6881 --upload-limit 4M --admin 127.0.0.1:9170 movie.torrent &`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := pf.config(args[0])
			if err != nil {
				return err
			}
			cfg.Seed = true
			return runPeer(cmd, g, &pf, cfg, false)
		},
	}
	pf.add(cmd, "127.0.0.1:6881")
	adminFlags(cmd, g, "")
	return cmd
}

func torrentGetCommand(g *globals) *cobra.Command {
	var pf peerFlags
	var seed bool
	cmd := &cobra.Command{
		Use:   "get FILE.torrent|MAGNET",
		Short: "Download a torrent (from a .torrent or a magnet link) into --dir, with progress",
		Long: `Joins the swarm through the torrent's trackers (and --peer), downloads with
rarest-first piece selection and tit-for-tat, checks every piece's SHA-1 and
bans peers that send bad data. Data already in DIR is checked and kept, so
an interrupted download resumes. Progress is a bar on a terminal and a line
a second otherwise. Exits when complete, unless --seed.`,
		Example: `  applayer torrent tracker --http 127.0.0.1:6969 --udp 127.0.0.1:6969 &
  applayer torrent create -a udp://127.0.0.1:6969 -o movie.torrent movie.mp4
  applayer torrent seed --listen 127.0.0.2:6881 movie.torrent &
  applayer torrent get --dir downloads --listen 127.0.0.3:6881 movie.torrent          # -> complete: movie.mp4
  applayer torrent get --dir downloads2 --listen 127.0.0.4:0 --verbose movie.torrent  # -> pick piece`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := pf.config(args[0])
			if err != nil {
				return err
			}
			cfg.Seed = seed
			return runPeer(cmd, g, &pf, cfg, !seed)
		},
	}
	pf.add(cmd, "127.0.0.1:0")
	cmd.Flags().BoolVar(&seed, "seed", false, "keep seeding after the download completes")
	adminFlags(cmd, g, "")
	return cmd
}

// runPeer runs a swarm client with progress output until it completes
// (when exitWhenDone) or the command is interrupted.
func runPeer(cmd *cobra.Command, g *globals, pf *peerFlags, cfg swarm.Config, exitWhenDone bool) error {
	e, err := g.env()
	if err != nil {
		return err
	}
	defer e.close()
	d := e.deps()
	reg := obs.NewRegistry()
	d.Metrics = reg
	// The trace sink (swarm goroutines) and the progress loop share stdout.
	stdout := &syncWriter{w: g.stdout}
	if pf.verbose {
		cancel := e.trace.Subscribe(trace.SinkFunc(func(ev trace.Event) {
			if strings.HasPrefix(ev.Proto, "bittorrent/") {
				fmt.Fprintf(stdout, "%s %s\n", strings.TrimPrefix(ev.Proto, "bittorrent/"), ev.Summary)
			}
		}))
		defer cancel()
	}
	group := service.NewGroup(e.logger)
	if pf.dhtAddr != "" {
		node, err := dht.New(dht.Config{Addr: pf.dhtAddr, Bootstrap: pf.dhtBoot}, d)
		if err != nil {
			return err
		}
		group.Add(node)
		cfg.DHT = node
	} else if len(pf.dhtBoot) > 0 {
		return fmt.Errorf("--dht-bootstrap needs --dht ADDR")
	}
	c, err := swarm.New(cfg, d)
	if err != nil {
		return err
	}
	var admin *obs.Admin
	if g.admin.Addr != "" {
		admin, err = obs.NewAdmin(g.admin, reg, e.logger.With("service", "admin"))
		if err != nil {
			return fmt.Errorf("--admin: %w", err)
		}
		group.Add(admin)
	}
	group.Add(c)
	ctx := cmd.Context()
	if err := group.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "peer listening on %s, info-hash %s\n", c.Addrs()[0], c.InfoHash())
	if admin != nil {
		admin.SetReady(true)
	}
	p := newProgress(g.stdout, stdout, pf.verbose)
	tick := time.NewTicker(pf.statusFreq)
	defer tick.Stop()
	done := c.Done()
	finished := false
	for !finished {
		select {
		case <-ctx.Done():
			finished = true
		case <-done:
			done = nil
			p.print(c.Stats(), true)
			fmt.Fprintf(stdout, "download complete after %.3fs\n", time.Since(p.start).Seconds())
			if exitWhenDone {
				finished = true
			}
		case <-tick.C:
			p.print(c.Stats(), false)
		}
	}
	p.end()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), service.DefaultGrace)
	defer cancel()
	err = group.Shutdown(sctx)
	st := c.Stats()
	if st.Complete {
		fmt.Fprintf(stdout, "complete: %s (%s), uploaded %s\n", st.Name, humanBytes(st.Total), humanBytes(st.Uploaded))
	} else if exitWhenDone {
		return fmt.Errorf("torrent: stopped before completion (%d of %d pieces)", st.Have, st.Pieces)
	}
	return err
}

// progress prints status: a redrawn bar on a terminal, lines otherwise.
type progress struct {
	w        io.Writer
	tty      bool
	verbose  bool
	start    time.Time
	lastLine bool
}

func newProgress(out, w io.Writer, verbose bool) *progress {
	tty := false
	if f, ok := out.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, tty: tty && !verbose, verbose: verbose, start: time.Now()}
}

func (p *progress) print(s swarm.Stats, final bool) {
	if !s.HaveMetadata {
		fmt.Fprintf(p.w, "fetching metadata from %d peers\n", s.Peers)
		return
	}
	pct := 100 * float64(s.Total-s.Left) / float64(max(s.Total, 1))
	eta := "-"
	if s.Left == 0 {
		eta = "done"
	} else if s.DownRate > 0 {
		eta = (time.Duration(float64(s.Left)/s.DownRate) * time.Second / time.Second).Round(time.Second).String()
	}
	line := fmt.Sprintf("%5.1f%% %d/%d pieces  down %s/s  up %s/s  peers %d  unchoked %d  eta %s",
		pct, s.Have, s.Pieces, humanBytes(int64(s.DownRate)), humanBytes(int64(s.UpRate)), s.Peers, len(s.Unchoked), eta)
	if s.EndGame {
		line += "  end-game"
	}
	if p.tty {
		const width = 30
		n := int(pct / 100 * width)
		fmt.Fprintf(p.w, "\r[%s%s] %s\x1b[K", strings.Repeat("=", n), strings.Repeat(" ", width-n), line)
		p.lastLine = true
		return
	}
	fmt.Fprintln(p.w, line)
	if p.verbose {
		fmt.Fprintf(p.w, "pieces %s\nunchoked %v\n", s.PieceMap, s.Unchoked)
	}
}

func (p *progress) end() {
	if p.lastLine {
		fmt.Fprintln(p.w)
	}
}

// syncWriter serialises writes from several goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func torrentDHTCommand(g *globals) *cobra.Command {
	var cfg dht.Config
	cmd := &cobra.Command{
		Use:   "dht",
		Short: "Run a DHT node (BEP 5) alone, e.g. as the bootstrap node of a lab",
		Long: `Runs a Mainline DHT node: it answers ping, find_node, get_peers and
announce_peer, keeps a routing table and stores announced peers. Peers join
the DHT through it with --dht-bootstrap. It contacts only the nodes given
with --bootstrap.`,
		Example: `  applayer torrent dht --listen 127.0.0.1:6881 &
  applayer torrent create -o movie.torrent movie.mp4
  applayer torrent seed --listen 127.0.0.2:6881 --dht 127.0.0.2:6881 --dht-bootstrap 127.0.0.1:6881 movie.torrent &
  applayer torrent get --dir viadht --listen 127.0.0.3:6881 --dht 127.0.0.3:6881 --dht-bootstrap 127.0.0.1:6881 movie.torrent   # -> complete: movie.mp4`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd, g, func(d service.Deps) (service.Service, error) { return dht.New(cfg, d) })
		},
	}
	cmd.Flags().StringVar(&cfg.Addr, "listen", "127.0.0.1:6881", "UDP address to listen on")
	cmd.Flags().StringArrayVar(&cfg.Bootstrap, "bootstrap", nil, "DHT node `HOST:PORT` to join through (repeatable)")
	adminFlags(cmd, g, "")
	return cmd
}

func torrentExperimentCommand(g *globals) *cobra.Command {
	var (
		c            experiment.Config
		size, us, u  string
		out, block   string
		maxN         int
		keepWorkDirs bool
	)
	cmd := &cobra.Command{
		Use:   "experiment",
		Short: "Client-server vs P2P distribution time, measured for N = 1..max, with the chapter's bounds and a plot",
		Long: `Distributes one file of --size bytes to N = 1..--max-n clients twice: from one
HTTP server whose upload is capped at --seed-up (client-server), and through
a BitTorrent swarm (our tracker, a seed capped at --seed-up, N peers capped
at --peer-up each, every one on its own loopback address). Prints each
measured time beside the lower bounds D_cs >= N F/u_s and
D_p2p >= max{F/u_s, N F/(u_s + N u)} (downloads are not capped), and draws
them against N in OUT.png and OUT.svg.`,
		Example: `  applayer torrent experiment --size 1M --seed-up 1M --peer-up 512K --max-n 3 --out /tmp/distribution   # -> plot:`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := parseRate(size)
			if err != nil || n <= 0 {
				return fmt.Errorf("--size: %q is not a size", size)
			}
			c.FileSize = int64(n)
			if c.SeedUp, err = parseRate(us); err != nil || c.SeedUp <= 0 {
				return fmt.Errorf("--seed-up: %q is not a rate", us)
			}
			if c.PeerUp, err = parseRate(u); err != nil || c.PeerUp <= 0 {
				return fmt.Errorf("--peer-up: %q is not a rate", u)
			}
			c.MaxN = maxN
			c.Block = strings.TrimSuffix(block, "0") // "127.88.1.0" -> "127.88.1."
			dir, err := os.MkdirTemp("", "applayer-experiment-")
			if err != nil {
				return err
			}
			if !keepWorkDirs {
				defer os.RemoveAll(dir)
			}
			c.Dir = dir
			e, err := g.env()
			if err != nil {
				return err
			}
			defer e.close()
			experiment.Table(g.stdout, nil)
			rows, err := experiment.Run(cmd.Context(), c, e.deps(), func(r experiment.Row) {
				experiment.Table(rowWriter{g.stdout}, []experiment.Row{r})
			})
			if err != nil {
				return err
			}
			if err := experiment.Plot(rows, c, out+".png", out+".svg"); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "plot: %s.png %s.svg\n", out, out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&size, "size", "4M", "file size F (suffix K, M, G)")
	f.StringVar(&us, "seed-up", "1M", "server and seed upload rate u_s, bytes/s")
	f.StringVar(&u, "peer-up", "512K", "each peer's upload rate u, bytes/s")
	f.IntVar(&maxN, "max-n", 6, "largest N")
	f.StringVar(&out, "out", "distribution", "plot file name without extension (writes OUT.png and OUT.svg)")
	f.StringVar(&block, "block", "127.88.1.0", "loopback /24 whose addresses the run uses, one per host")
	f.BoolVar(&keepWorkDirs, "keep", false, "keep the work directory")
	return cmd
}

// rowWriter drops the header line Table writes, to print rows one by one.
type rowWriter struct{ w io.Writer }

func (r rowWriter) Write(p []byte) (int, error) {
	if bytes.HasPrefix(bytes.TrimSpace(p), []byte("N ")) {
		return len(p), nil
	}
	return r.w.Write(p)
}
