package authority

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/config"
)

// Config configures a Server. Zero fields take the documented defaults.
type Config struct {
	// Addr is the address to listen on, e.g. "127.0.0.1:53"; port 0 picks
	// one (the same for UDP and TCP).
	Addr string `json:"addr"`
	// Network is "udp+tcp" (default), "udp" or "tcp".
	Network string `json:"network,omitempty"`
	// Zones are the zones served.
	Zones []ZoneConfig `json:"zones"`
	// NSID is returned in the EDNS NSID option when a query asks for it;
	// empty sends none.
	NSID string `json:"nsid,omitempty"`
	// MaxUDPSize is the largest UDP answer, whatever the client's EDNS
	// buffer says. Default 1232 (the DNS flag day 2020 value).
	MaxUDPSize int `json:"max_udp_size,omitempty"`
	// UDPSockets is how many SO_REUSEPORT UDP sockets serve in parallel.
	// Default: GOMAXPROCS.
	UDPSockets int `json:"udp_sockets,omitempty"`
	// BlockingReads (Linux) waits for UDP queries in a blocking receive
	// rather than in Go's netpoller. It was the default until the answer
	// table: with answers that cheap, the Go runtime's work around a
	// blocked thread (its P taken and handed back on every wake-up, the
	// monitor thread polling every 20 µs meanwhile) cost more CPU per
	// answer than the netpoller's extra receive (docs/BENCHMARKS.md).
	BlockingReads bool `json:"blocking_reads,omitempty"`
	// ReadTimeout bounds the wait for a TCP query once a connection is
	// open. Default 5s.
	ReadTimeout config.Duration `json:"read_timeout,omitempty"`
	// IdleTimeout closes TCP connections idle this long. Default 10s.
	IdleTimeout config.Duration `json:"idle_timeout,omitempty"`
	// MaxTCPConns caps concurrent TCP connections. Default 256.
	MaxTCPConns int `json:"max_tcp_conns,omitempty"`
	// AnswerCacheBytes bounds the cache of packed UDP answers shared by
	// the UDP sockets (keys, answers and per-entry overhead). Default
	// 32 MiB; negative turns the cache off.
	AnswerCacheBytes int64 `json:"answer_cache_bytes,omitempty"`
	// AnswerCacheAge is how long a cached answer is served before it is
	// answered afresh; older entries are removed. Default 30s.
	AnswerCacheAge config.Duration `json:"answer_cache_age,omitempty"`
	// AnswerTableBytes bounds the table of precomputed UDP answers built
	// when the zones load (every name and type of a zone, with and without
	// DNSSEC records, plus templates for referrals, wildcards and
	// NXDOMAIN): a zone whose table would pass the bound is answered
	// through the answer cache instead. Default 64 MiB; negative turns
	// the table off.
	AnswerTableBytes int64 `json:"answer_table_bytes,omitempty"`
	// AllowTransfer lists who may AXFR and IXFR: an address or prefix
	// ("127.0.0.0/8"), a TSIG key ("key:xfr-key": any address, the request
	// signed with that key), or both ("192.0.2.2 key:xfr-key"). Empty
	// refuses every transfer.
	AllowTransfer []string `json:"allow_transfer,omitempty"`
	// Notify lists secondaries (host:port) sent a NOTIFY when a zone's
	// serial changes on reload.
	Notify []string `json:"notify,omitempty"`
	// Watch, when non-zero, polls zone files this often and reloads those
	// that changed. SIGHUP reloads regardless (wired by the command).
	Watch config.Duration `json:"watch,omitempty"`
	// DSFile, when set, is written at Start with the DS records (one per
	// line, presentation format) of every signed zone's KSKs: the trust
	// anchor a validating resolver reads for the root.
	DSFile string `json:"ds_file,omitempty"`
	// StateDir, when set, keeps each primary zone's IXFR journal (its
	// last version and the differences that led to it) under
	// <state_dir>/journal, so that secondaries still get incremental
	// transfers after a restart, and each secondary zone's last transferred
	// copy under <state_dir>/secondary, served after a restart until its
	// SOA expire runs out even while the primary is down (as NSD and Knot).
	StateDir string `json:"state_dir,omitempty"`
	// TSIGKeys are the shared secrets (RFC 8945) that AllowTransfer
	// entries, PrimaryKey and NotifyKey name.
	TSIGKeys []TSIGKey `json:"tsig_keys,omitempty"`
	// NotifyKey, when set, names the TSIG key that signs outgoing NOTIFYs.
	NotifyKey string `json:"notify_key,omitempty"`
	// RateLimit is response rate limiting for UDP answers (RRL, as NSD and
	// Knot): on by default at NSD's 200 answers per second, slip 2, except
	// for loopback clients.
	RateLimit RateLimitConfig `json:"rate_limit,omitempty"`
	// ZoneLoaded, when set, is called after each zone load or reload from
	// a file or text with the zone's origin and record count. The library
	// changes no process-wide setting itself: the binary uses this to give
	// a big zone's parsing garbage back to the system (debug.FreeOSMemory).
	ZoneLoaded func(origin string, records int) `json:"-"`
}

// ZoneConfig is one zone.
type ZoneConfig struct {
	// Origin is the zone's apex, e.g. "example.com." or "." for the root.
	Origin string `json:"origin"`
	// File is a master file (RFC 1035), read at start and on reload.
	File string `json:"file,omitempty"`
	// Text is the zone's master-file text, an alternative to File (the lab
	// generates its zones this way).
	Text string `json:"text,omitempty"`
	// Primary, for a secondary zone, is the primary's host:port; the zone
	// is transferred (AXFR) and refreshed as its SOA says.
	Primary string `json:"primary,omitempty"`
	// PrimaryKey, for a secondary zone, names the TSIG key that signs the
	// SOA checks and transfers sent to the primary; a NOTIFY signed with
	// it is accepted from any address.
	PrimaryKey string `json:"primary_key,omitempty"`
	// AllowNotify, for a secondary zone, lists who else may send NOTIFY
	// besides the primary's address, in allow_transfer's syntax
	// ("127.0.0.0/8", "key:NAME", "192.0.2.1 key:NAME"); as NSD's
	// allow-notify and Knot's notify acl. Primaries often send from the
	// host's default address rather than the one they serve on.
	AllowNotify []string `json:"allow_notify,omitempty"`
	// Sign signs the zone when it is loaded.
	Sign *SignConfig `json:"sign,omitempty"`
}

// SignConfig asks the server to sign an unsigned zone.
type SignConfig struct {
	// KeyDir holds the zone's keys (K<zone>+<alg>+<tag>.key/.private, as
	// dnssec-keygen writes them); missing keys are generated there.
	KeyDir string `json:"key_dir"`
	// Algorithm is "ecdsap256sha256" (default) or "ed25519".
	Algorithm string `json:"algorithm,omitempty"`
	// NSEC3 uses NSEC3 (no opt-out, 0 iterations, empty salt) instead of NSEC.
	NSEC3 bool `json:"nsec3,omitempty"`
	// Validity is how long signatures are valid. Default 14 days; the zone
	// is re-signed when a quarter of that remains.
	Validity config.Duration `json:"validity,omitempty"`
	// ZSKLifetime, when set, rolls the ZSK over (pre-publish, RFC 6781
	// 4.1.1.1) once it has signed that long; 0 keeps it forever.
	ZSKLifetime config.Duration `json:"zsk_lifetime,omitempty"`
	// KSKLifetime, when set, rolls the KSK over (double signature, RFC
	// 6781 4.1.2) once it has signed that long; the rollover waits for the
	// operator to confirm that the parent publishes the new DS (the file
	// K<zone>.ds-seen in KeyDir); 0 keeps the KSK forever.
	KSKLifetime config.Duration `json:"ksk_lifetime,omitempty"`
	// ParentDSTTL is the TTL of the zone's DS at the parent: the old KSK
	// keeps signing this long (plus PropagationDelay) after the new DS is
	// confirmed. Default 24h.
	ParentDSTTL config.Duration `json:"parent_ds_ttl,omitempty"`
	// PropagationDelay is how long a change takes to reach every
	// secondary; rollover steps wait for it on top of the TTLs. Default 5m.
	PropagationDelay config.Duration `json:"propagation_delay,omitempty"`
}

// Validate checks the config and reports the first problem by field.
func (c *Config) Validate() error {
	if c.Addr == "" {
		return config.Errorf("addr", "is required")
	}
	switch c.Network {
	case "", "udp+tcp", "udp", "tcp":
	default:
		return config.Errorf("network", "must be udp+tcp, udp or tcp, not %q", c.Network)
	}
	if len(c.Zones) == 0 {
		return config.Errorf("zones", "at least one zone is required")
	}
	seen := map[string]bool{}
	for i, z := range c.Zones {
		f := fmt.Sprintf("zones[%d]", i)
		if _, ok := dns.IsDomainName(z.Origin); !ok || z.Origin == "" {
			return config.Errorf(f+".origin", "%q is not a domain name", z.Origin)
		}
		k := strings.ToLower(dns.Fqdn(z.Origin))
		if seen[k] {
			return config.Errorf(f+".origin", "zone %s listed twice", k)
		}
		seen[k] = true
		n := 0
		for _, s := range []string{z.File, z.Text, z.Primary} {
			if s != "" {
				n++
			}
		}
		if n != 1 {
			return config.Errorf(f, "exactly one of file, text or primary is required")
		}
		if z.Sign != nil {
			switch z.Sign.Algorithm {
			case "", "ecdsap256sha256", "ed25519":
			default:
				return config.Errorf(f+".sign.algorithm", "must be ecdsap256sha256 or ed25519, not %q", z.Sign.Algorithm)
			}
			if z.Sign.ZSKLifetime < 0 || z.Sign.KSKLifetime < 0 || z.Sign.ParentDSTTL < 0 || z.Sign.PropagationDelay < 0 {
				return config.Errorf(f+".sign", "zsk_lifetime, ksk_lifetime, parent_ds_ttl and propagation_delay cannot be negative")
			}
			if z.Primary != "" {
				return config.Errorf(f+".sign", "a secondary zone cannot be signed here")
			}
		}
	}
	keys, err := parseTSIGKeys(c.TSIGKeys)
	if err != nil {
		return config.Errorf("tsig_keys", "%v", err)
	}
	for i, a := range c.AllowTransfer {
		if _, err := parseACL(a, keys); err != nil {
			return config.Errorf(fmt.Sprintf("allow_transfer[%d]", i), "%v", err)
		}
	}
	if c.NotifyKey != "" {
		if _, ok := keys[strings.ToLower(dns.Fqdn(c.NotifyKey))]; !ok {
			return config.Errorf("notify_key", "unknown TSIG key %q", c.NotifyKey)
		}
	}
	for i, z := range c.Zones {
		for j, a := range z.AllowNotify {
			if z.Primary == "" {
				return config.Errorf(fmt.Sprintf("zones[%d].allow_notify", i), "only a secondary zone (with primary) takes NOTIFY")
			}
			if _, err := parseACL(a, keys); err != nil {
				return config.Errorf(fmt.Sprintf("zones[%d].allow_notify[%d]", i, j), "%v", err)
			}
		}
		if z.PrimaryKey == "" {
			continue
		}
		if _, ok := keys[strings.ToLower(dns.Fqdn(z.PrimaryKey))]; !ok {
			return config.Errorf(fmt.Sprintf("zones[%d].primary_key", i), "unknown TSIG key %q", z.PrimaryKey)
		}
	}
	if c.MaxUDPSize != 0 && (c.MaxUDPSize < 512 || c.MaxUDPSize > 65535) {
		return config.Errorf("max_udp_size", "must be between 512 and 65535")
	}
	return nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (c *Config) defaults() {
	if c.Network == "" {
		c.Network = "udp+tcp"
	}
	if c.MaxUDPSize == 0 {
		c.MaxUDPSize = 1232
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = config.Duration(5e9)
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = config.Duration(10e9)
	}
	if c.MaxTCPConns == 0 {
		c.MaxTCPConns = 256
	}
	if c.AnswerCacheBytes == 0 {
		c.AnswerCacheBytes = 32 << 20
	}
	if c.AnswerTableBytes == 0 {
		c.AnswerTableBytes = 64 << 20
	}
	if c.AnswerCacheAge <= 0 {
		c.AnswerCacheAge = config.Duration(30 * time.Second)
	}
}
