package dnstest

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/authority"
	"github.com/applayer/applayer/dns/zone"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

// Zone is one zone of a hierarchy given as master-file text: the one way
// tests serve DNS zones with real authority servers (Start builds its
// zones with dns/labzone and serves them through StartZones too).
type Zone struct {
	// Origin is the zone's apex.
	Origin string
	// Addr is the server that serves it (several zones may share one), on
	// the port given to StartZones.
	Addr netip.Addr
	// Host names the server (its NSID); optional.
	Host string
	// Text is the zone's master-file text (delegations included; the DS
	// of a signed child in the set is added to it).
	Text string
	// Sign signs the zone at start (never committed: signatures expire);
	// nil serves it unsigned.
	Sign *Signing
	// Edit rewrites the zone's records after signing (tampering).
	Edit func([]dns.RR) []dns.RR
}

// Signing says how StartZones signs a zone.
type Signing struct {
	// Algorithm is "" (ECDSA P-256) or "ed25519".
	Algorithm string
	// NSEC3 uses NSEC3 with Iterations (else NSEC).
	NSEC3      bool
	Iterations uint16
	// Expired signs with a validity that ended three days ago.
	Expired bool
	// DSOnly publishes the DS in the parent but serves the zone unsigned.
	DSOnly bool
	// EditDS rewrites the DS the parent publishes.
	EditDS func(*dns.DS)
}

// Served is a running set of zones.
type Served struct {
	// Servers by address.
	Servers map[netip.Addr]*authority.Server
	// Port every server listens on.
	Port int
	// KeyDir holds the signed zones' keys.
	KeyDir string
	// Keys by zone origin (lower case, fully qualified).
	Keys map[string]*zone.Keys
	// Anchor is a file with the DS records of the topmost signed zones
	// (the root's, when it is signed): a validating resolver's trust
	// anchor. Empty when nothing is signed.
	Anchor string
}

// StartZones serves zones with authority servers, one per address, all on
// port (0: a free one). Signed zones are signed child first, each child's
// DS added to its parent in the set. The servers stop when the test ends.
func StartZones(t testing.TB, port int, zones []Zone) (*Served, error) {
	sv := &Served{Servers: map[netip.Addr]*authority.Server{}, Port: port, KeyDir: t.TempDir(), Keys: map[string]*zone.Keys{}}
	byKey := map[string]*Zone{}
	for i := range zones {
		zones[i].Origin = zone.Key(zones[i].Origin)
		byKey[zones[i].Origin] = &zones[i]
	}
	parentOf := func(origin string) *Zone {
		for n := origin; n != "."; {
			if off, end := dns.NextLabel(n, 0); end {
				n = "."
			} else {
				n = n[off:]
			}
			if p, ok := byKey[n]; ok {
				return p
			}
		}
		return nil
	}
	// Children first: deeper origins before their parents.
	order := make([]*Zone, 0, len(zones))
	for i := range zones {
		order = append(order, &zones[i])
	}
	sort.SliceStable(order, func(i, j int) bool { return dns.CountLabel(order[i].Origin) > dns.CountLabel(order[j].Origin) })
	extra := map[string]string{} // DS lines added to a parent
	texts := map[string]string{}
	var anchors []string
	now := time.Now()
	for _, z := range order {
		text := z.Text + "\n" + extra[z.Origin]
		zz, err := zone.Parse(strings.NewReader(text), z.Origin, "", false)
		if err != nil {
			return nil, fmt.Errorf("dnstest: %s: %w", z.Origin, err)
		}
		rrs := zz.Records()
		if z.Sign != nil {
			keys, err := zone.LoadOrCreateKeys(sv.KeyDir, z.Origin, z.Sign.Algorithm)
			if err != nil {
				return nil, err
			}
			sv.Keys[z.Origin] = keys
			ds := keys.DS()
			if z.Sign.EditDS != nil {
				z.Sign.EditDS(ds)
			}
			if p := parentOf(z.Origin); p != nil {
				extra[p.Origin] += ds.String() + "\n"
			} else {
				anchors = append(anchors, ds.String())
			}
			if !z.Sign.DSOnly {
				opt := zone.SignOptions{NSEC3: z.Sign.NSEC3, NSEC3Iterations: z.Sign.Iterations, Inception: now.Add(-time.Hour), Expiration: now.Add(24 * time.Hour)}
				if z.Sign.Expired {
					opt.Inception, opt.Expiration = now.Add(-60*24*time.Hour), now.Add(-3*24*time.Hour) // past Unbound's 24h skew
				}
				signed, err := zone.Sign(zz, keys, opt)
				if err != nil {
					return nil, fmt.Errorf("dnstest: sign %s: %w", z.Origin, err)
				}
				rrs = signed.Records()
			}
		}
		if z.Edit != nil {
			rrs = z.Edit(rrs)
		}
		var b strings.Builder
		for _, rr := range rrs {
			b.WriteString(rr.String() + "\n")
		}
		texts[z.Origin] = b.String()
	}
	if len(anchors) > 0 {
		sv.Anchor = filepath.Join(sv.KeyDir, "anchor.ds")
		if err := os.WriteFile(sv.Anchor, []byte(strings.Join(anchors, "\n")+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	// One server per address, in the order the zones were given.
	var addrs []netip.Addr
	cfgs := map[netip.Addr]*authority.Config{}
	for _, z := range zones {
		c := cfgs[z.Addr]
		if c == nil {
			c = &authority.Config{NSID: z.Host, UDPSockets: 1}
			cfgs[z.Addr] = c
			addrs = append(addrs, z.Addr)
		}
		c.Zones = append(c.Zones, authority.ZoneConfig{Origin: z.Origin, Text: texts[z.Origin]})
	}
	var started []*authority.Server
	stopAll := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, s := range started {
			s.Shutdown(ctx)
		}
	}
	for _, a := range addrs {
		c := cfgs[a]
		c.Addr = netip.AddrPortFrom(a, uint16(sv.Port)).String()
		s, err := authority.New(*c, service.Deps{Logger: testkit.Logger(t)})
		if err == nil {
			err = s.Start(context.Background())
		}
		if err != nil {
			stopAll()
			return nil, fmt.Errorf("dnstest: server %s: %w", c.Addr, err)
		}
		started = append(started, s)
		sv.Servers[a] = s
		if sv.Port == 0 {
			ap, _ := netip.ParseAddrPort(s.Addrs()[0].String())
			sv.Port = int(ap.Port())
		}
	}
	t.Cleanup(stopAll)
	return sv, nil
}
