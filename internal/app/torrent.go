package app

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/applayer/applayer/internal/atomicfile"
	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/torrent/metainfo"
	"github.com/applayer/applayer/torrent/tracker"
)

func torrentCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "torrent",
		Short: "BitTorrent: make and read .torrent files and magnet links",
		Long: `P2P file distribution with BitTorrent: the file is cut into pieces, each
identified by its SHA-1 in the .torrent's info dictionary, whose own SHA-1
(the info-hash) names the torrent in trackers, magnet links and the peer
wire protocol.`,
		Example: `  applayer torrent tracker --http 127.0.0.1:6969 --udp 127.0.0.1:6969 &
  applayer torrent create --announce http://127.0.0.1:6969/announce -o movie.torrent movie.mp4
  applayer torrent info movie.torrent
  applayer torrent seed --dir . --listen 127.0.0.2:6881 movie.torrent &
  applayer torrent get --dir downloads --listen 127.0.0.3:6881 movie.torrent   # -> complete: movie.mp4`,
	}
	cmd.AddCommand(torrentCreateCommand(g), torrentInfoCommand(g), torrentTrackerCommand(g), torrentSeedCommand(g), torrentGetCommand(g), torrentDHTCommand(g), torrentExperimentCommand(g))
	return cmd
}

func torrentCreateCommand(g *globals) *cobra.Command {
	var (
		out       string
		announce  []string
		webSeeds  []string
		pieceLen  int64
		opts      metainfo.CreateOptions
		noDate    bool
		printOnly bool
	)
	cmd := &cobra.Command{
		Use:   "create FILE|DIR",
		Short: "Make a .torrent (v1) of a file or a directory and print its info-hash and magnet link",
		Long: `Hashes every piece of FILE (or every regular file under DIR, in path order)
and writes the .torrent. The piece length is chosen by size (at most 1024
pieces, from 16 KiB to 16 MiB) unless --piece-length is given. Each
--announce is one tier of the announce-list (BEP 12); separate URLs of one
tier with commas.`,
		Example: `  applayer torrent create --announce http://127.0.0.1:6969/announce -o movie.torrent movie.mp4
  applayer torrent create --announce udp://127.0.0.1:6969,http://127.0.0.1:6969/announce --private --web-seed http://127.0.0.1:8080/photos/ photos/`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, a := range announce {
				var tier []string
				for _, u := range strings.Split(a, ",") {
					if u = strings.TrimSpace(u); u != "" {
						tier = append(tier, u)
					}
				}
				if len(tier) > 0 {
					opts.Trackers = append(opts.Trackers, tier)
				}
			}
			opts.WebSeeds = webSeeds
			opts.PieceLength = pieceLen
			opts.CreatedBy = "applayer"
			if !noDate {
				opts.CreationDate = time.Now()
			}
			m, err := metainfo.Create(args[0], opts)
			if err != nil {
				return err
			}
			if out == "" {
				out = m.Info.Name + ".torrent"
			}
			if !printOnly {
				if err := atomicfile.Write(out, m.Bytes(), 0o644); err != nil {
					return err
				}
				fmt.Fprintf(g.stdout, "wrote %s\n", out)
			}
			fmt.Fprintf(g.stdout, "info-hash %s\n%d pieces of %s, %s in total\nmagnet %s\n",
				m.InfoHash, m.Info.NumPieces(), humanBytes(m.Info.PieceLength), humanBytes(m.Info.TotalLength()), m.Magnet())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&out, "output", "o", "", "write the torrent to `FILE` (default NAME.torrent)")
	f.StringArrayVarP(&announce, "announce", "a", nil, "tracker `URLS` of one tier, comma-separated (repeat for more tiers)")
	f.StringArrayVarP(&webSeeds, "web-seed", "w", nil, "web seed `URL` (BEP 19; repeatable)")
	f.Int64VarP(&pieceLen, "piece-length", "l", 0, "piece length in bytes, a power of two (default: chosen by size)")
	f.BoolVarP(&opts.Private, "private", "p", false, "set the private flag (peers only from the trackers)")
	f.StringVarP(&opts.Name, "name", "n", "", "torrent name (default: the file's or directory's base name)")
	f.StringVarP(&opts.Comment, "comment", "c", "", "comment")
	f.BoolVar(&noDate, "no-date", false, "leave out the creation date (reproducible output)")
	f.BoolVar(&printOnly, "print-only", false, "print the info-hash and magnet link without writing a file")
	return cmd
}

func torrentInfoCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "info FILE|MAGNET",
		Short: "Show what a .torrent or a magnet link holds: info-hash, pieces, files, trackers",
		Example: `  applayer torrent create -o movie.torrent movie.mp4
  applayer torrent info movie.torrent                 # -> name:       movie.mp4
  applayer torrent info 'magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&dn=movie.mp4'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.HasPrefix(args[0], "magnet:") {
				m, err := metainfo.ParseMagnet(args[0])
				if err != nil {
					return err
				}
				printMagnet(g.stdout, m)
				return nil
			}
			m, err := metainfo.ReadFile(args[0])
			if err != nil {
				return err
			}
			printMetaInfo(g.stdout, m)
			return nil
		},
	}
	return cmd
}

func printMagnet(w io.Writer, m *metainfo.Magnet) {
	fmt.Fprintf(w, "info-hash:  %s\n", m.InfoHash)
	if m.Name != "" {
		fmt.Fprintf(w, "name:       %s\n", m.Name)
	}
	for _, t := range m.Trackers {
		fmt.Fprintf(w, "tracker:    %s\n", t)
	}
	for _, s := range m.WebSeeds {
		fmt.Fprintf(w, "web seed:   %s\n", s)
	}
	for _, p := range m.Peers {
		fmt.Fprintf(w, "peer:       %s\n", p)
	}
	fmt.Fprintf(w, "magnet:     %s\n", m)
}

func printMetaInfo(w io.Writer, m *metainfo.MetaInfo) {
	in := &m.Info
	fmt.Fprintf(w, "name:       %s\n", in.Name)
	fmt.Fprintf(w, "info-hash:  %s\n", m.InfoHash)
	fmt.Fprintf(w, "size:       %s (%d bytes)\n", humanBytes(in.TotalLength()), in.TotalLength())
	fmt.Fprintf(w, "pieces:     %d of %s\n", in.NumPieces(), humanBytes(in.PieceLength))
	fmt.Fprintf(w, "private:    %v\n", in.Private)
	if m.CreatedBy != "" {
		fmt.Fprintf(w, "created by: %s\n", m.CreatedBy)
	}
	if m.CreationDate != 0 {
		fmt.Fprintf(w, "created:    %s\n", time.Unix(m.CreationDate, 0).UTC().Format(time.RFC3339))
	}
	if m.Comment != "" {
		fmt.Fprintf(w, "comment:    %s\n", m.Comment)
	}
	tiers := m.AnnounceList
	if len(tiers) == 0 && m.Announce != "" {
		tiers = [][]string{{m.Announce}}
	}
	for i, tier := range tiers {
		fmt.Fprintf(w, "tier %d:     %s\n", i+1, strings.Join(tier, " "))
	}
	for _, s := range m.URLList {
		fmt.Fprintf(w, "web seed:   %s\n", s)
	}
	fmt.Fprintf(w, "files:\n")
	for _, f := range in.FileList() {
		fmt.Fprintf(w, "  %10d  %s\n", f.Length, strings.Join(f.Path, "/"))
	}
	fmt.Fprintf(w, "magnet:     %s\n", m.Magnet())
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func torrentTrackerCommand(g *globals) *cobra.Command {
	var (
		cfg                             tracker.Config
		interval, minInterval, peerTime time.Duration
		allowFile                       string
	)
	cmd := &cobra.Command{
		Use:   "tracker",
		Short: "Run a BitTorrent tracker: HTTP announce/scrape and the UDP tracker protocol",
		Long: `Runs a tracker: peers announce (info-hash, peer id, port, bytes left, event) and
get back a random sample of the torrent's swarm. HTTP (BEP 3, compact peer
lists BEP 23, IPv6 peers BEP 7, scrape) at http://ADDR/announce and UDP
(BEP 15) at udp://ADDR. Peers that stop announcing are dropped after
--peer-timeout. With --admin, /torrent/tracker/stats and
/torrent/tracker/peers?info_hash=HEX show the swarms.`,
		Example: `  applayer torrent tracker --http 127.0.0.1:6969 --udp 127.0.0.1:6969 --admin 127.0.0.1:9169
  applayer torrent tracker --http 127.0.0.1:6969 --udp "" --allow c12fe1c06bba254a9dc9f519b335aa7c1367a88a --snapshot tracker.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Interval, cfg.MinInterval, cfg.PeerTimeout = config.Duration(interval), config.Duration(minInterval), config.Duration(peerTime)
			if allowFile != "" {
				b, err := os.ReadFile(allowFile)
				if err != nil {
					return fmt.Errorf("tracker: %w", err)
				}
				for _, l := range strings.Split(string(b), "\n") {
					if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
						cfg.AllowList = append(cfg.AllowList, l)
					}
				}
			}
			return serveWithAdmin(cmd, g, func(d service.Deps) (service.Service, error) { return tracker.New(cfg, d) },
				func(s service.Service, a *obs.Admin) {
					a.Handle("/torrent/tracker/", s.(*tracker.Tracker).AdminHandler())
				})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:6969", "HTTP tracker address (empty for none)")
	f.StringVar(&cfg.UDPAddr, "udp", "127.0.0.1:6969", "UDP tracker address (empty for none)")
	f.DurationVar(&interval, "interval", 2*time.Minute, "announce interval handed to peers")
	f.DurationVar(&minInterval, "min-interval", 30*time.Second, "minimum announce interval")
	f.DurationVar(&peerTime, "peer-timeout", 0, "drop peers silent this long (default 2 intervals + min interval)")
	f.IntVar(&cfg.DefaultNumWant, "numwant", 50, "peers per answer when the client does not say")
	f.IntVar(&cfg.MaxNumWant, "max-numwant", 200, "most peers per answer")
	f.StringArrayVar(&cfg.AllowList, "allow", nil, "serve only this info-hash (hex; repeatable)")
	f.StringVar(&allowFile, "allow-file", "", "serve only the info-hashes listed in `FILE`, one per line")
	f.BoolVar(&cfg.TrustIP, "trust-ip", false, "honour the ip parameter of announces")
	f.StringVar(&cfg.Snapshot, "snapshot", "", "save the state to `FILE` on shutdown and restore it on start")
	adminFlags(cmd, g, "/torrent/tracker/ (stats and each torrent's peer table)")
	return cmd
}
