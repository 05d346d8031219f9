// Package dnstest starts DNS hierarchies for tests: one authoritative
// server per host, each on its own address of a random 127.x.y.0/24 block
// (never 127.0.0.x or the lab's 127.1.x.x), all on one port, with zones
// generated the way the lab generates them.
package dnstest

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/applayer/applayer/dns/authority"
	"github.com/applayer/applayer/dns/labzone"
	"github.com/applayer/applayer/dns/zone"
)

// Host is one host of a test hierarchy.
type Host struct {
	Name  string
	Zones []string
}

// Options describe a hierarchy.
type Options struct {
	// Port every server listens on; 0 picks one free port for all.
	Port int
	// Signed lists the zones to sign (NSEC).
	Signed []string
	// Records are extra master-file lines by zone origin ("umass.edu.").
	Records map[string][]string
}

// Hierarchy is a running set of authoritative servers.
type Hierarchy struct {
	// Servers by host name.
	Servers map[string]*authority.Server
	// Addrs by host name.
	Addrs map[string]netip.Addr
	// Port all servers listen on.
	Port int
	// KeyDir holds the signed zones' keys.
	KeyDir string
	// RootDS is the file holding the root's DS records (when the root is
	// signed).
	RootDS string
}

// Root returns the root server's address (the host serving ".").
func (h *Hierarchy) Root(hosts []Host) netip.AddrPort {
	for _, x := range hosts {
		for _, z := range x.Zones {
			if z == "." {
				return netip.AddrPortFrom(h.Addrs[x.Name], uint16(h.Port))
			}
		}
	}
	return netip.AddrPort{}
}

// RandomBlock returns a random 127.x.y.0 base address outside 127.0/16
// and 127.1/16.
func RandomBlock() netip.Addr {
	var b [2]byte
	rand.Read(b[:])
	return netip.AddrFrom4([4]byte{127, 2 + b[0]%250, b[1], 0})
}

// Start starts the hierarchy; it is shut down when the test ends.
func Start(t testing.TB, hosts []Host, opt Options) *Hierarchy {
	t.Helper()
	var lastErr error
	for try := 0; try < 5; try++ {
		h, err := start(t, RandomBlock(), hosts, opt)
		if err == nil {
			return h
		}
		lastErr = err
	}
	t.Fatalf("dnstest: %v", lastErr)
	return nil
}

func start(t testing.TB, base netip.Addr, hosts []Host, opt Options) (*Hierarchy, error) {
	h := &Hierarchy{Servers: map[string]*authority.Server{}, Addrs: map[string]netip.Addr{}, Port: opt.Port}
	var zh []labzone.Host
	a := base
	for _, x := range hosts {
		a = a.Next()
		h.Addrs[x.Name] = a
		zh = append(zh, labzone.Host{Name: x.Name, Addr: a, Zones: x.Zones})
	}
	signed := map[string]bool{}
	for _, z := range opt.Signed {
		signed[zone.Key(z)] = true
	}
	// StartZones adds each signed zone's DS to its parent.
	texts, err := labzone.Zones(zh, labzone.Options{Records: opt.Records})
	if err != nil {
		return nil, err
	}
	var zones []Zone
	for _, x := range hosts {
		for _, z := range x.Zones {
			k := zone.Key(z)
			zz := Zone{Origin: k, Addr: h.Addrs[x.Name], Host: x.Name, Text: texts[k]}
			if signed[k] {
				zz.Sign = &Signing{}
			}
			zones = append(zones, zz)
		}
	}
	sv, err := StartZones(t, opt.Port, zones)
	if err != nil {
		return nil, err
	}
	h.Port, h.KeyDir, h.RootDS = sv.Port, sv.KeyDir, sv.Anchor
	for _, x := range hosts {
		if s := sv.Servers[h.Addrs[x.Name]]; s != nil {
			h.Servers[x.Name] = s
		}
	}
	return h, nil
}

// HintsFile writes a root hints file naming the hierarchy's root server
// and returns its path.
func (h *Hierarchy) HintsFile(t testing.TB, hosts []Host) string {
	t.Helper()
	var b strings.Builder
	for _, x := range hosts {
		for _, z := range x.Zones {
			if z == "." {
				fmt.Fprintf(&b, ".\t3600000\tIN\tNS\t%s.\n%s.\t3600000\tIN\tA\t%s\n", x.Name, x.Name, h.Addrs[x.Name])
			}
		}
	}
	p := filepath.Join(t.TempDir(), "root.hints")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Chapter returns the textbook's hierarchy: root, edu/com TLDs, umass.edu with
// cs.umass.edu delegated to gaia.
func Chapter() []Host {
	return []Host{
		{Name: "a.root-servers.net", Zones: []string{"."}},
		{Name: "a.edu-servers.net", Zones: []string{"edu"}},
		{Name: "a.gtld-servers.net", Zones: []string{"com", "net"}},
		{Name: "dns.umass.edu", Zones: []string{"umass.edu"}},
		{Name: "gaia.cs.umass.edu", Zones: []string{"cs.umass.edu"}},
		{Name: "dns.amazon.com", Zones: []string{"amazon.com"}},
		{Name: "www.umass.edu"},
	}
}
