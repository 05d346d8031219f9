// Package resolver is applayer's local DNS server: a recursive, caching
// resolver that answers stub resolvers' recursive queries by iterating
// through the DNS hierarchy from the root hints (or by forwarding to an
// upstream resolver), caches what it learns with its TTLs (negative answers
// per RFC 2308, serve-stale per RFC 8767, prefetch of popular entries), and
// defends itself against spoofing: random IDs and source ports, 0x20 case
// randomisation, reply matching, bailiwick checks and QNAME minimisation.
package resolver

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/config"
)

// Config configures a Server.
type Config struct {
	// Listen is the address served over UDP and TCP, e.g. "127.0.0.1:53";
	// port 0 picks one.
	Listen string `json:"listen"`
	// RootHints lists root server addresses ("ip" or "ip:port"); if
	// empty, RootHintsFile is read.
	RootHints []string `json:"root_hints,omitempty"`
	// RootHintsFile is a root hints file in zone-file format (NS for "."
	// and the servers' A/AAAA records).
	RootHintsFile string `json:"root_hints_file,omitempty"`
	// UpstreamPort is the port authoritative servers are queried on.
	// Default 53.
	UpstreamPort int `json:"upstream_port,omitempty"`
	// Forwarders, when set, turns iteration off: every query is sent with
	// RD set to these resolvers ("ip" or "ip:port").
	Forwarders []string `json:"forwarders,omitempty"`
	// TrustAnchorFile holds DS or DNSKEY records for "." (or another
	// zone) in presentation format; when set, answers are validated.
	TrustAnchorFile string `json:"trust_anchor_file,omitempty"`
	// TrustAnchorOptional runs without validation when TrustAnchorFile
	// does not exist at Start (the lab: the root may be unsigned).
	TrustAnchorOptional bool `json:"trust_anchor_optional,omitempty"`
	// TrustAnchorWait is how long Start waits for TrustAnchorFile to
	// appear (the lab: the root writes it when it starts). Default 0.
	TrustAnchorWait config.Duration `json:"trust_anchor_wait,omitempty"`
	// Allow lists the client prefixes given recursion; others are
	// REFUSED. Default: loopback only.
	Allow []string `json:"allow,omitempty"`
	// CacheSize bounds the number of cached entries. Default 100000.
	CacheSize int `json:"cache_size,omitempty"`
	// CacheBytes bounds the heap bytes the caches hold (half for RRsets,
	// negative entries included, half for packed replies); the least
	// recently used entries go first (a sampled CLOCK). Default 64 MiB.
	CacheBytes int64 `json:"cache_bytes,omitempty"`
	// MaxTTL caps cached TTLs. Default 1 day.
	MaxTTL config.Duration `json:"max_ttl,omitempty"`
	// MaxNegativeTTL caps negative TTLs. Default 1 hour.
	MaxNegativeTTL config.Duration `json:"max_negative_ttl,omitempty"`
	// ServeStale is how long past expiry an entry may still be answered
	// when every authority is unreachable (RFC 8767). Default 1 day; a
	// negative value disables serve-stale.
	ServeStale config.Duration `json:"serve_stale,omitempty"`
	// NoPrefetch disables refreshing popular entries near expiry.
	NoPrefetch bool `json:"no_prefetch,omitempty"`
	// NoQNAMEMinimisation sends the full name to every server.
	NoQNAMEMinimisation bool `json:"no_qname_minimisation,omitempty"`
	// No0x20 turns off case randomisation of query names.
	No0x20 bool `json:"no_0x20,omitempty"`
	// Timeout is the first per-try upstream timeout; it doubles on each
	// retry round. Default 400ms.
	Timeout config.Duration `json:"timeout,omitempty"`
	// ResolveTimeout bounds one client query's whole resolution. Default 5s.
	ResolveTimeout config.Duration `json:"resolve_timeout,omitempty"`
	// MaxUpstreamQueries bounds the upstream queries one client query may
	// cause (loop and amplification protection). Default 64.
	MaxUpstreamQueries int `json:"max_upstream_queries,omitempty"`
	// MaxSigChecks bounds the signature verifications one client query
	// may cause, chain of trust included (KeyTrap, CVE-2023-50387): past
	// it the answer is bogus. Default 32.
	MaxSigChecks int `json:"max_sig_checks,omitempty"`
	// MaxSigFailures bounds the failed signature verifications per client
	// query. Default 16.
	MaxSigFailures int `json:"max_sig_failures,omitempty"`
	// MaxKeyTagCollisions bounds the DNSKEYs tried for one signature (keys
	// sharing its key tag and algorithm). Default 4.
	MaxKeyTagCollisions int `json:"max_key_tag_collisions,omitempty"`
	// MaxNSEC3Iterations: NSEC3 records with more iterations are not
	// hashed (CVE-2023-50868) and a proof that needs them is insecure
	// (RFC 9276). Default 150.
	MaxNSEC3Iterations int `json:"max_nsec3_iterations,omitempty"`
	// BogusTTL is how long a bogus answer or zone state is remembered.
	// Default 60s.
	BogusTTL config.Duration `json:"bogus_ttl,omitempty"`
	// MaxConcurrent bounds in-flight resolutions. Default 1000.
	MaxConcurrent int `json:"max_concurrent,omitempty"`
	// TCPIdleTimeout closes client TCP connections that wait this long
	// for their next query (Unbound's tcp-idle-timeout). Default 10s.
	TCPIdleTimeout config.Duration `json:"tcp_idle_timeout,omitempty"`
	// TCPQueryTimeout bounds the rest of a query once its first byte
	// came, and the writing of its answer. Default 5s.
	TCPQueryTimeout config.Duration `json:"tcp_query_timeout,omitempty"`
	// MaxTCPConns bounds client TCP connections (Unbound's
	// incoming-num-tcp, for all threads). When they are all taken, the
	// connection idle longest is closed for the new one. Default 256.
	MaxTCPConns int `json:"max_tcp_conns,omitempty"`
	// MaxTCPConnsPerClient bounds the TCP connections of one client
	// address (Unbound's tcp-connection-limit): more are closed at once.
	// Default 32; negative: no limit.
	MaxTCPConnsPerClient int `json:"max_tcp_conns_per_client,omitempty"`
	// Hazards switch defences against forged replies off, for the lab's
	// dns-poisoning lesson only: never read from a file, refused outside
	// a lab on loopback (hazards.go).
	Hazards *Hazards `json:"-"`
}

func (c *Config) defaults() {
	if c.UpstreamPort == 0 {
		c.UpstreamPort = 53
	}
	if c.CacheSize == 0 {
		c.CacheSize = 100000
	}
	if c.CacheBytes == 0 {
		c.CacheBytes = 64 << 20
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = config.Duration(24 * time.Hour)
	}
	if c.MaxNegativeTTL == 0 {
		c.MaxNegativeTTL = config.Duration(time.Hour)
	}
	if c.ServeStale == 0 {
		c.ServeStale = config.Duration(24 * time.Hour)
	}
	if c.Timeout == 0 {
		c.Timeout = config.Duration(400 * time.Millisecond)
	}
	if c.ResolveTimeout == 0 {
		c.ResolveTimeout = config.Duration(5 * time.Second)
	}
	if c.MaxUpstreamQueries == 0 {
		c.MaxUpstreamQueries = 64
	}
	if c.MaxSigChecks == 0 {
		c.MaxSigChecks = 32
	}
	if c.MaxSigFailures == 0 {
		c.MaxSigFailures = 16
	}
	if c.MaxKeyTagCollisions == 0 {
		c.MaxKeyTagCollisions = 4
	}
	if c.MaxNSEC3Iterations == 0 {
		c.MaxNSEC3Iterations = 150
	}
	if c.BogusTTL == 0 {
		c.BogusTTL = config.Duration(60 * time.Second)
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = 1000
	}
	if c.TCPIdleTimeout == 0 {
		c.TCPIdleTimeout = config.Duration(10 * time.Second)
	}
	if c.MaxTCPConns == 0 {
		c.MaxTCPConns = 256
	}
	if c.TCPQueryTimeout == 0 {
		c.TCPQueryTimeout = config.Duration(5 * time.Second)
	}
	switch {
	case c.MaxTCPConnsPerClient == 0:
		c.MaxTCPConnsPerClient = 32
	case c.MaxTCPConnsPerClient < 0:
		c.MaxTCPConnsPerClient = 0 // no limit
	}
}

// Validate reports every invalid field.
func (c Config) Validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, config.Errorf("listen", "required"))
	} else if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, config.Errorf("listen", "%v", err))
	}
	return errors.Join(append(errs, c.engineErrors()...)...)
}

// engineErrors reports the invalid fields that an Engine uses.
func (c Config) engineErrors() []error {
	var errs []error
	for i, h := range c.RootHints {
		if _, err := parseServer(h, 53); err != nil {
			errs = append(errs, config.Errorf(fmt.Sprintf("root_hints[%d]", i), "%v", err))
		}
	}
	for i, h := range c.Forwarders {
		if _, err := parseServer(h, 53); err != nil {
			errs = append(errs, config.Errorf(fmt.Sprintf("forwarders[%d]", i), "%v", err))
		}
	}
	if c.TrustAnchorWait < 0 {
		errs = append(errs, config.Errorf("trust_anchor_wait", "negative"))
	}
	for i, a := range c.Allow {
		if _, err := parsePrefix(a); err != nil {
			errs = append(errs, config.Errorf(fmt.Sprintf("allow[%d]", i), "%v", err))
		}
	}
	if c.UpstreamPort < 0 || c.UpstreamPort > 65535 {
		errs = append(errs, config.Errorf("upstream_port", "%d out of range", c.UpstreamPort))
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"max_sig_checks", c.MaxSigChecks}, {"max_sig_failures", c.MaxSigFailures}, {"max_key_tag_collisions", c.MaxKeyTagCollisions}, {"max_nsec3_iterations", c.MaxNSEC3Iterations}} {
		if f.v < 0 {
			errs = append(errs, config.Errorf(f.name, "must not be negative"))
		}
	}
	if c.CacheSize < 0 {
		errs = append(errs, config.Errorf("cache_size", "must not be negative"))
	}
	if c.CacheBytes < 0 {
		errs = append(errs, config.Errorf("cache_bytes", "must not be negative"))
	}
	return append(errs, c.hazardErrors()...)
}

func parseServer(s string, port int) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an address or address:port", s)
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a prefix or address", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.BitLen()), nil
}

// ReadRootHints parses a root hints file: the A and AAAA records of the
// names in "."'s NS set.
func ReadRootHints(path string) ([]netip.Addr, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("resolver: root hints: %w", err)
	}
	defer f.Close()
	zp := dns.NewZoneParser(f, ".", path)
	var addrs []netip.Addr
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		switch r := rr.(type) {
		case *dns.A:
			if a, ok := netip.AddrFromSlice(r.A.To4()); ok {
				addrs = append(addrs, a)
			}
		case *dns.AAAA:
			if a, ok := netip.AddrFromSlice(r.AAAA); ok {
				addrs = append(addrs, a)
			}
		}
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("resolver: root hints: %w", err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("resolver: root hints %s: no addresses", path)
	}
	return addrs, nil
}

// ReadTrustAnchors parses DS and DNSKEY records in presentation format.
func ReadTrustAnchors(path string) ([]dns.RR, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("resolver: trust anchor: %w", err)
	}
	zp := dns.NewZoneParser(strings.NewReader(string(b)), ".", path)
	var out []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		switch rr.(type) {
		case *dns.DS, *dns.DNSKEY:
			out = append(out, rr)
		}
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("resolver: trust anchor: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("resolver: trust anchor %s: no DS or DNSKEY records", path)
	}
	return out, nil
}

func itoa(i int) string { return strconv.Itoa(i) }
