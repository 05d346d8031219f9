package app

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/spf13/cobra"

	"github.com/applayer/applayer/dns/authority"
	"github.com/applayer/applayer/dns/labzone"
	"github.com/applayer/applayer/dns/zone"
	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/lab"
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
		cfgFile                         string
		zones                           []string
		listen                          string
		nsid                            string
		allowXfr                        []string
		notify                          []string
		secondary                       []string
		sign                            bool
		nsec3                           bool
		alg                             string
		keyDir                          string
		watch, zskLifetime, kskLifetime time.Duration
		parentDSTTL                     time.Duration
		printDS                         bool
		tsigKeys                        []string
		primaryKey, notifyKey, stateDir string
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
serving. A --config file (YAML or JSON, see docs/dns.md) replaces the flags.`,
		Example: `  applayer dns serve --listen 127.0.0.1:5300 --zone example.com=db.example.com
  applayer dns serve --zone example.com=db.example.com --allow-transfer 127.0.0.1 --notify 127.0.0.2:53
  applayer dns serve --listen 127.0.0.2:53 --secondary example.com=127.0.0.1:53
  applayer dns serve --zone example.com=db.example.com --tsig hmac-sha256:xfr-key:c2VjcmV0 --allow-transfer key:xfr-key --state-dir state
  applayer dns serve --listen 127.0.0.2:53 --tsig hmac-sha256:xfr-key:c2VjcmV0 --primary-key xfr-key --secondary example.com=127.0.0.1:53
  applayer dns serve --zone example.com=db.example.com --sign --key-dir keys --print-ds
  applayer dns serve --zone example.com=db.example.com --sign --key-dir keys --zsk-lifetime 720h
  applayer dns serve --zone example.com=db.example.com --sign --key-dir keys --ksk-lifetime 8760h --parent-ds-ttl 24h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cfg authority.Config
			if cfgFile != "" {
				if err := config.Load(cfgFile, &cfg); err != nil {
					return err
				}
			} else {
				cfg = authority.Config{Addr: listen, NSID: nsid, AllowTransfer: allowXfr, Notify: notify, Watch: config.Duration(watch), StateDir: stateDir, NotifyKey: notifyKey}
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
			var srv *authority.Server
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					if srv != nil {
						if err := srv.Reload(true); err != nil {
							fmt.Fprintln(g.stderr, "reload:", err)
						}
					}
				}
			}()
			return serve(cmd, g, func(d service.Deps) (service.Service, error) {
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
				srv = s
				return s, nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&cfgFile, "config", "c", "", "server config `FILE` (YAML or JSON) instead of flags")
	f.StringVar(&listen, "listen", "127.0.0.1:53", "address to listen on (UDP and TCP)")
	f.StringArrayVar(&zones, "zone", nil, "zone to serve, `ORIGIN=FILE` (repeatable)")
	f.StringArrayVar(&secondary, "secondary", nil, "secondary zone, `ORIGIN=PRIMARY:PORT` (repeatable)")
	f.StringVar(&nsid, "nsid", "", "NSID to return to queries that ask (RFC 5001)")
	f.StringArrayVar(&allowXfr, "allow-transfer", nil, "who may AXFR/IXFR: address, prefix, key:NAME or \"ADDR key:NAME\" (repeatable)")
	f.StringArrayVar(&tsigKeys, "tsig", nil, "TSIG key `[ALG:]NAME:SECRET` (base64 secret; ALG default hmac-sha256; repeatable)")
	f.StringVar(&primaryKey, "primary-key", "", "TSIG key `NAME` signing the --secondary zones' SOA checks and transfers")
	f.StringVar(&notifyKey, "notify-key", "", "TSIG key `NAME` signing outgoing NOTIFYs")
	f.StringVar(&stateDir, "state-dir", "", "directory for the IXFR journal (kept across restarts)")
	f.StringArrayVar(&notify, "notify", nil, "secondary `HOST:PORT` to NOTIFY on change (repeatable)")
	f.BoolVar(&sign, "sign", false, "sign the zones (DNSSEC)")
	f.BoolVar(&nsec3, "nsec3", false, "with --sign: NSEC3 instead of NSEC")
	f.StringVar(&alg, "algorithm", "ecdsap256sha256", "with --sign: ecdsap256sha256 or ed25519")
	f.StringVar(&keyDir, "key-dir", "keys", "with --sign: directory of the zones' keys")
	f.DurationVar(&zskLifetime, "zsk-lifetime", 0, "with --sign: roll the ZSK over (pre-publish) after this `DURATION` of use, e.g. 720h; 0 never")
	f.DurationVar(&kskLifetime, "ksk-lifetime", 0, "with --sign: roll the KSK over (double signature, waiting for K<zone>.ds-seen in --key-dir) after this `DURATION` of use, e.g. 8760h; 0 never")
	f.DurationVar(&parentDSTTL, "parent-ds-ttl", 24*time.Hour, "with --ksk-lifetime: the TTL of the zone's DS at the parent")
	f.BoolVar(&printDS, "print-ds", false, "print each signed zone's DS record at start")
	f.DurationVar(&watch, "watch", 0, "poll zone files this often and reload changed ones (0: only on SIGHUP)")
	return cmd
}

// dnsLabConfig is the config of a dns-authority service in a topology.
type dnsLabConfig struct {
	// Zones are the zones the host serves. Zone data is generated from the
	// lab's hosts unless a file is given.
	Zones []dnsLabZone `json:"zones"`
	// NSID is returned to queries that ask for it; default the host name.
	NSID string `json:"nsid,omitempty"`
	// AllowTransfer lists addresses or prefixes allowed AXFR/IXFR.
	AllowTransfer []string `json:"allow_transfer,omitempty"`
}

type dnsLabZone struct {
	// Origin is the zone's apex.
	Origin string `json:"origin"`
	// File, when set, is a master file used instead of generated data.
	File string `json:"file,omitempty"`
	// Records are extra master-file lines added to the generated zone.
	Records []string `json:"records,omitempty"`
	// Sign signs the zone (keys under the lab's state dir, dns/keys).
	Sign bool `json:"sign,omitempty"`
	// NSEC3 uses NSEC3 rather than NSEC when signing.
	NSEC3 bool `json:"nsec3,omitempty"`
}

func (c *dnsLabConfig) check() error {
	if len(c.Zones) == 0 {
		return config.Errorf("zones", "at least one zone is required")
	}
	for i, z := range c.Zones {
		if _, ok := dns.IsDomainName(z.Origin); !ok || z.Origin == "" {
			return config.Errorf(fmt.Sprintf("zones[%d].origin", i), "%q is not a domain name", z.Origin)
		}
	}
	return nil
}

func decodeDNSLab(raw json.RawMessage) (*dnsLabConfig, error) {
	var c dnsLabConfig
	if err := lab.DecodeConfig(raw, &c); err != nil {
		return nil, err
	}
	return &c, c.check()
}

type labDNSHost struct {
	labzone.Host
	cfg *dnsLabConfig
}

// labDNSHosts lists every host of the plan, with the zones it serves.
func labDNSHosts(p *lab.Plan) []labDNSHost {
	var out []labDNSHost
	for _, h := range p.Hosts {
		lh := labDNSHost{Host: labzone.Host{Name: h.Name, Addr: h.Addr}}
		for _, s := range h.Services {
			if s.Kind != "dns-authority" {
				continue
			}
			c, err := decodeDNSLab(s.Config)
			if err != nil {
				continue
			}
			lh.cfg = c
			for _, z := range c.Zones {
				lh.Zones = append(lh.Zones, zone.Key(z.Origin))
			}
		}
		out = append(out, lh)
	}
	return out
}

func buildLabAuthority(env lab.Env) (service.Service, error) {
	mine, err := decodeDNSLab(env.Spec.Config)
	if err != nil {
		return nil, err
	}
	hosts := labDNSHosts(env.Plan)
	keyDir := filepath.Join(env.Plan.StateDir, "dns", "keys")
	signed := map[string]dnsLabZone{}
	records := map[string][]string{}
	var zh []labzone.Host
	for _, h := range hosts {
		zh = append(zh, h.Host)
		if h.cfg == nil {
			continue
		}
		for _, z := range h.cfg.Zones {
			k := zone.Key(z.Origin)
			if z.Sign {
				signed[k] = z
			}
			records[k] = append(records[k], z.Records...)
		}
	}
	texts, err := labzone.Zones(zh, labzone.Options{
		Records: records,
		DS: func(origin string) ([]dns.RR, error) {
			if _, ok := signed[origin]; !ok {
				return nil, nil
			}
			keys, err := zone.LoadOrCreateKeys(keyDir, origin, "")
			if err != nil {
				return nil, err
			}
			return []dns.RR{keys.DS()}, nil
		},
	})
	if err != nil {
		return nil, err
	}
	cfg := authority.Config{Addr: env.Listen.String(), NSID: mine.NSID, AllowTransfer: mine.AllowTransfer}
	if env.Plan.StateDir != "" {
		cfg.StateDir = filepath.Join(env.Plan.StateDir, "dns", "authority", env.Host.Name)
	}
	if cfg.NSID == "" {
		cfg.NSID = env.Host.Name
	}
	for _, z := range mine.Zones {
		k := zone.Key(z.Origin)
		zc := authority.ZoneConfig{Origin: k, File: z.File}
		if z.File == "" {
			zc.Text = texts[k]
		}
		if z.Sign {
			zc.Sign = &authority.SignConfig{KeyDir: keyDir, NSEC3: z.NSEC3}
			if k == "." {
				cfg.DSFile = filepath.Join(env.Plan.StateDir, "dns", "root.ds")
			}
		}
		cfg.Zones = append(cfg.Zones, zc)
	}
	return authority.New(cfg, env.Deps)
}

// dnsKinds are the lab kinds of the dns packages.
func dnsKinds() []lab.Kind {
	return []lab.Kind{{
		Name:    "dns-authority",
		Summary: "authoritative DNS server (zones generated from the lab's hosts)",
		Port:    53,
		Network: "udp+tcp",
		Check: func(raw json.RawMessage) error {
			_, err := decodeDNSLab(raw)
			return err
		},
		Build: buildLabAuthority,
	}}
}
