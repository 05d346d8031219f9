package labzone

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/zone"
	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/lab"
)

// AuthorityKind is the lab kind of the authoritative DNS server: the hosts
// running it serve the lab's zones (its code is in dns/authority/labkind.go).
const AuthorityKind = "dns-authority"

// ServerConfig is the config of a dns-authority service in a topology.
type ServerConfig struct {
	// Zones are the zones the host serves. Zone data is generated from the
	// lab's hosts unless a file is given.
	Zones []ServerZone `json:"zones"`
	// NSID is returned to queries that ask for it; default the host name.
	NSID string `json:"nsid,omitempty"`
	// AllowTransfer lists addresses or prefixes allowed AXFR/IXFR.
	AllowTransfer []string `json:"allow_transfer,omitempty"`
}

// ServerZone is one zone a dns-authority service serves.
type ServerZone struct {
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

// DecodeServerConfig strictly decodes and checks a dns-authority config.
func DecodeServerConfig(raw json.RawMessage) (*ServerConfig, error) {
	var c ServerConfig
	if err := lab.DecodeConfig(raw, &c); err != nil {
		return nil, err
	}
	if len(c.Zones) == 0 {
		return nil, config.Errorf("zones", "at least one zone is required")
	}
	for i, z := range c.Zones {
		if _, ok := dns.IsDomainName(z.Origin); !ok || z.Origin == "" {
			return nil, config.Errorf(fmt.Sprintf("zones[%d].origin", i), "%q is not a domain name", z.Origin)
		}
	}
	return &c, nil
}

// LabHost is a host of a planned lab with the zones it serves.
type LabHost struct {
	Host
	// Config is its dns-authority config; nil when it serves no zone.
	Config *ServerConfig
}

// LabHosts lists every host of the plan, with the zones it serves.
func LabHosts(p *lab.Plan) []LabHost {
	var out []LabHost
	for _, h := range p.Hosts {
		lh := LabHost{Host: Host{Name: h.Name, Addr: h.Addr}}
		for _, s := range h.Services {
			if s.Kind != AuthorityKind {
				continue
			}
			c, err := DecodeServerConfig(s.Config)
			if err != nil {
				continue // lab.NewPlan has refused it already
			}
			lh.Config = c
			for _, z := range c.Zones {
				lh.Zones = append(lh.Zones, zone.Key(z.Origin))
			}
		}
		out = append(out, lh)
	}
	return out
}

// KeyDir is where the lab keeps its zones' DNSSEC keys.
func KeyDir(p *lab.Plan) string { return filepath.Join(p.StateDir, "dns", "keys") }

// TrustAnchorFile is where a signed lab root writes its DS records when it
// starts: the lab resolvers' trust anchor.
func TrustAnchorFile(p *lab.Plan) string { return filepath.Join(p.StateDir, "dns", "root.ds") }

// LabZones generates the master-file text of every zone of the lab, by
// lower-case fully qualified origin: each host's address, NS and glue,
// delegations with DS for signed children (keys in KeyDir, created when
// missing), the records each zone's config lists, and the records the
// kinds contribute (Plan.Records), each in the deepest zone containing it.
func LabZones(p *lab.Plan) (map[string]string, error) {
	signed := map[string]bool{}
	records := map[string][]string{}
	var hosts []Host
	for _, h := range LabHosts(p) {
		hosts = append(hosts, h.Host)
		if h.Config == nil {
			continue
		}
		for _, z := range h.Config.Zones {
			k := zone.Key(z.Origin)
			signed[k] = signed[k] || z.Sign
			records[k] = append(records[k], z.Records...)
		}
	}
	keyDir := KeyDir(p)
	return Zones(hosts, Options{
		Records: records,
		Placed:  p.Records,
		DS: func(origin string) ([]dns.RR, error) {
			if !signed[origin] {
				return nil, nil
			}
			keys, err := zone.LoadOrCreateKeys(keyDir, origin, "")
			if err != nil {
				return nil, err
			}
			return []dns.RR{keys.DS()}, nil
		},
	})
}

// RootSigned reports whether one of the named lab hosts serves a signed
// root zone (and so writes TrustAnchorFile when it starts).
func RootSigned(p *lab.Plan, names []string) bool {
	for _, h := range LabHosts(p) {
		if h.Config == nil || !slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(strings.TrimSuffix(n, "."), h.Name) }) {
			continue
		}
		for _, z := range h.Config.Zones {
			if z.Sign && zone.Key(z.Origin) == "." {
				return true
			}
		}
	}
	return false
}

// RootUnsigned reports whether every named host is a lab authority whose
// zones are known and none of them signs the root: then no trust anchor
// will ever be written, and a resolver need not wait for one.
func RootUnsigned(p *lab.Plan, names []string) bool {
	if len(names) == 0 {
		return false
	}
	hosts := LabHosts(p)
	for _, n := range names {
		i := slices.IndexFunc(hosts, func(h LabHost) bool { return strings.EqualFold(strings.TrimSuffix(n, "."), h.Name) })
		if i < 0 || hosts[i].Config == nil {
			return false
		}
		for _, z := range hosts[i].Config.Zones {
			if z.Sign && zone.Key(z.Origin) == "." {
				return false
			}
		}
	}
	return true
}

// Root returns the lab host serving the root zone.
func Root(p *lab.Plan) (LabHost, bool) {
	for _, h := range LabHosts(p) {
		if slices.Contains(h.Zones, ".") {
			return h, true
		}
	}
	return LabHost{}, false
}
