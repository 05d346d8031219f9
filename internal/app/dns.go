package app

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/applayer/applayer/dns/authority"
	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
)

func dnsCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dns",
		Short: "DNS servers: the authoritative server and the recursive resolver (local DNS server)",
		Example: `  applayer dns serve --listen 127.0.0.1:5300 --zone example.com=db.example.com
  applayer dns resolver --listen 127.0.0.1:5353 --root-hints-file root.hints
  applayer dig @127.0.0.1:5300 www.example.com`,
	}
	cmd.AddCommand(dnsServeCommand(g), dnsResolverCommand(g))
	return cmd
}

func dnsServeCommand(g *globals) *cobra.Command {
	var (
		cfg                      authority.Config
		cfgFile                  string
		zones                    []string
		secondary                []string
		sign                     bool
		nsec3                    bool
		alg                      string
		keyDir                   string
		zskLifetime, kskLifetime time.Duration
		parentDSTTL              time.Duration
		printDS                  bool
		tsigKeys                 []string
		primaryKey               string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the authoritative DNS server for zones from master files",
		Long: `Serves zones from RFC 1035 master files (several per server) over UDP and
TCP, as NSD and Knot answer them: AA answers, referrals with glue, NXDOMAIN and
NODATA with the SOA, CNAME chains, wildcards, EDNS0, truncation over UDP.
AXFR/IXFR go to the --allow-transfer addresses or TSIG keys (--tsig defines
keys; "--allow-transfer key:NAME"); --notify names secondaries. --state-dir
keeps the IXFR journal on disk, so secondaries get IXFR after a restart.
--secondary ZONE=PRIMARY serves a zone transferred from a primary.
--sign signs every zone (keys in --key-dir, generated when missing) and
prints each zone's DS record to hand to the parent; --zsk-lifetime rolls the
zone-signing key over (pre-publish) when it has signed that long;
--ksk-lifetime rolls the key-signing key over (double signature): the new DS is
logged and written to K<zone>+<alg>+<tag>.ds in --key-dir, and the rollover
waits until you create K<zone>.ds-seen there once the parent publishes it. SIGHUP reloads the zone
files; a broken file is reported with file:line and the old zone keeps
serving. A --config file (YAML or JSON, see docs/dns.md) may give the
settings; flags given on the command line override it (--zone and
--secondary replace its zones, --tsig its keys).`,
		Example: `  applayer dns serve --listen 127.0.0.1:5300 --zone example.com=db.example.com
  applayer dns serve --listen 127.0.0.1:5300 --zone example.com=db.example.com --allow-transfer 127.0.0.2 --notify 127.0.0.2:5301
  applayer dns serve --listen 127.0.0.2:5301 --secondary example.com=127.0.0.1:5300
  applayer dns serve --listen 127.0.0.1:5300 --zone example.com=db.example.com --tsig hmac-sha256:xfr-key:c2VjcmV0 --allow-transfer key:xfr-key --state-dir state
  applayer dns serve --listen 127.0.0.2:5301 --tsig hmac-sha256:xfr-key:c2VjcmV0 --primary-key xfr-key --secondary example.com=127.0.0.1:5300
  applayer dns serve --listen 127.0.0.1:5300 --zone example.com=db.example.com --sign --key-dir keys --print-ds
  applayer dns serve --listen 127.0.0.1:5300 --zone example.com=db.example.com --sign --key-dir keys --zsk-lifetime 720h
  applayer dns serve --listen 127.0.0.1:5300 --zone example.com=db.example.com --sign --key-dir keys --ksk-lifetime 8760h --parent-ds-ttl 24h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := loadConfigFile(cmd, cfgFile, &cfg); err != nil {
				return err
			}
			if fromFlag(cmd, len(cfg.TSIGKeys) == 0, "tsig") {
				cfg.TSIGKeys = nil
				for _, k := range tsigKeys {
					// kdig -y's form: [ALG:]NAME:SECRET.
					parts := strings.Split(k, ":")
					switch len(parts) {
					case 2:
						cfg.TSIGKeys = append(cfg.TSIGKeys, authority.TSIGKey{Name: parts[0], Secret: parts[1]})
					case 3:
						cfg.TSIGKeys = append(cfg.TSIGKeys, authority.TSIGKey{Algorithm: parts[0], Name: parts[1], Secret: parts[2]})
					default:
						return fmt.Errorf("--tsig %q: want [ALG:]NAME:SECRET", k)
					}
				}
			}
			if fromFlag(cmd, len(cfg.Zones) == 0, "zone", "secondary") {
				cfg.Zones = nil
				for _, z := range zones {
					origin, file, ok := strings.Cut(z, "=")
					if !ok {
						return fmt.Errorf("--zone %q: want ORIGIN=FILE", z)
					}
					zc := authority.ZoneConfig{Origin: origin, File: file}
					if sign {
						zc.Sign = &authority.SignConfig{KeyDir: keyDir, Algorithm: alg, NSEC3: nsec3, ZSKLifetime: config.Duration(zskLifetime),
							KSKLifetime: config.Duration(kskLifetime), ParentDSTTL: config.Duration(parentDSTTL)}
					}
					cfg.Zones = append(cfg.Zones, zc)
				}
				for _, z := range secondary {
					origin, pri, ok := strings.Cut(z, "=")
					if !ok {
						return fmt.Errorf("--secondary %q: want ORIGIN=PRIMARY:PORT", z)
					}
					cfg.Zones = append(cfg.Zones, authority.ZoneConfig{Origin: origin, Primary: pri, PrimaryKey: primaryKey})
				}
			}
			cfg.ZoneLoaded = freeAfterBigZone
			var srv atomic.Pointer[authority.Server]
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			stop := make(chan struct{})
			defer func() { signal.Stop(hup); close(stop) }()
			go func() {
				for {
					select {
					case <-stop:
						return
					case <-hup:
						if s := srv.Load(); s != nil {
							if err := s.Reload(true); err != nil {
								fmt.Fprintln(g.stderr, "reload:", err)
							}
						}
					}
				}
			}()
			return serveWithAdmin(cmd, g, func(d service.Deps) (service.Service, error) {
				s, err := authority.New(cfg, d)
				if err != nil {
					return nil, err
				}
				if printDS {
					for _, zc := range cfg.Zones {
						if z := s.Zone(zc.Origin); z != nil {
							for _, ds := range authority.DSRecords(z) {
								fmt.Fprintln(g.stdout, ds.String())
							}
						}
					}
				}
				srv.Store(s)
				return s, nil
			}, func(s service.Service, a *obs.Admin) {
				a.Handle("POST /dns/authority/reload", reloadHandler(s.(*authority.Server)))
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&cfgFile, "config", "c", "", "server config `FILE` (YAML or JSON); flags given override it")
	f.StringVar(&cfg.Addr, "listen", "127.0.0.1:53", "address to listen on (UDP and TCP)")
	f.StringArrayVar(&zones, "zone", nil, "zone to serve, `ORIGIN=FILE` (repeatable)")
	f.StringArrayVar(&secondary, "secondary", nil, "secondary zone, `ORIGIN=PRIMARY:PORT` (repeatable)")
	f.StringVar(&cfg.NSID, "nsid", "", "NSID to return to queries that ask (RFC 5001)")
	f.StringArrayVar(&cfg.AllowTransfer, "allow-transfer", nil, "who may AXFR/IXFR: address, prefix, key:NAME or \"ADDR key:NAME\" (repeatable)")
	f.StringArrayVar(&tsigKeys, "tsig", nil, "TSIG key `[ALG:]NAME:SECRET` (base64 secret; ALG default hmac-sha256; repeatable)")
	f.StringVar(&primaryKey, "primary-key", "", "TSIG key `NAME` signing the --secondary zones' SOA checks and transfers")
	f.StringVar(&cfg.NotifyKey, "notify-key", "", "TSIG key `NAME` signing outgoing NOTIFYs")
	f.StringVar(&cfg.StateDir, "state-dir", "", "directory for the IXFR journal (kept across restarts)")
	f.StringArrayVar(&cfg.Notify, "notify", nil, "secondary `HOST:PORT` to NOTIFY on change (repeatable)")
	f.BoolVar(&sign, "sign", false, "sign the zones (DNSSEC)")
	f.BoolVar(&nsec3, "nsec3", false, "with --sign: NSEC3 instead of NSEC")
	f.StringVar(&alg, "algorithm", "ecdsap256sha256", "with --sign: ecdsap256sha256 or ed25519")
	f.StringVar(&keyDir, "key-dir", "keys", "with --sign: directory of the zones' keys")
	f.DurationVar(&zskLifetime, "zsk-lifetime", 0, "with --sign: roll the ZSK over (pre-publish) after this `DURATION` of use, e.g. 720h; 0 never")
	f.DurationVar(&kskLifetime, "ksk-lifetime", 0, "with --sign: roll the KSK over (double signature, waiting for K<zone>.ds-seen in --key-dir) after this `DURATION` of use, e.g. 8760h; 0 never")
	f.DurationVar(&parentDSTTL, "parent-ds-ttl", 24*time.Hour, "with --ksk-lifetime: the TTL of the zone's DS at the parent")
	f.BoolVar(&printDS, "print-ds", false, "print each signed zone's DS record at start")
	f.Var(&cfg.Watch, "watch", "poll zone files this often and reload changed ones (0: only on SIGHUP)")
	adminFlags(cmd, g, "POST /dns/authority/reload")
	return cmd
}

// reloadHandler reloads every zone from its file, as SIGHUP does; a broken
// file is reported and its old zone keeps serving.
func reloadHandler(s *authority.Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if err := s.Reload(true); err != nil {
			http.Error(w, "reload: "+err.Error(), http.StatusUnprocessableEntity)
			return
		}
		fmt.Fprintln(w, "reloaded")
	})
}
