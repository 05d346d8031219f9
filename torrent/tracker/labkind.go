package tracker

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/lab"
)

// DefaultPort is the tracker's conventional port (HTTP and UDP).
const DefaultPort = 6969

// KindName is the tracker's lab kind.
const KindName = "torrent-tracker"

// LabConfig is the torrent-tracker kind's config: the tracker's Config
// (its addresses are the host's) and the name it is known by.
type LabConfig struct {
	Config
	// Name is the tracker's DNS name; default the host's name. Another
	// name becomes a CNAME to the host (e.g. tracker.lab on a host named
	// bt1.lab), and the lab's torrent-seed may name the tracker by it.
	Name string `json:"name,omitempty"`
}

func decodeLab(env lab.Env) (LabConfig, error) {
	var c LabConfig
	if err := lab.DecodeConfig(env.Spec.Config, &c); err != nil {
		return c, err
	}
	host := strings.ToLower(strings.TrimSuffix(env.Host.Name, "."))
	c.Name = strings.ToLower(strings.TrimSuffix(c.Name, "."))
	if c.Name == "" {
		c.Name = host
	}
	return c, nil
}

// Records are the tracker's DNS records: its name as a CNAME to the host
// when the two differ, SRV records _bittorrent-tracker._tcp and ._udp in
// the name's parent domain pointing at the host and the tracker's port
// (the lab's offset applied), and the announce URLs by name in a TXT
// record at the host.
func Records(env lab.Env) ([]string, error) {
	c, err := decodeLab(env)
	if err != nil {
		return nil, err
	}
	host := strings.ToLower(strings.TrimSuffix(env.Host.Name, "."))
	port := strconv.Itoa(int(env.Listen.Port()))
	var out []string
	if c.Name != host {
		out = append(out, fmt.Sprintf("%s. 300 IN CNAME %s.", c.Name, host))
	}
	if _, domain, ok := strings.Cut(c.Name, "."); ok {
		for _, proto := range []string{"tcp", "udp"} {
			out = append(out, fmt.Sprintf("_bittorrent-tracker._%s.%s. 300 IN SRV 0 0 %s %s.", proto, domain, port, host))
		}
	}
	hp := c.Name + ":" + port
	out = append(out, fmt.Sprintf(`%s. 300 IN TXT "announce=http://%s/announce" "announce=udp://%s"`, host, hp, hp))
	return out, nil
}

// LabTracker finds the lab's tracker called name (a host running
// torrent-tracker, or the name a tracker's config gives it) and returns
// its host and port (the lab's offset applied).
func LabTracker(plan *lab.Plan, name string) (lab.PlannedHost, int, error) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	for _, h := range plan.Hosts {
		for _, s := range h.Services {
			if s.Kind != KindName {
				continue
			}
			c, err := decodeLab(lab.Env{Host: h, Spec: s, Plan: plan})
			if err != nil {
				return h, 0, err
			}
			if c.Name != name && !strings.EqualFold(h.Name, name) {
				continue
			}
			port := DefaultPort
			if s.Port != 0 {
				port = s.Port
			}
			return h, plan.Port(port), nil
		}
	}
	return lab.PlannedHost{}, 0, fmt.Errorf("no lab host runs a torrent-tracker named %q", name)
}

// LabKinds are the tracker's lab kinds: torrent-tracker (config:
// LabConfig; the addresses are the host's, on port 6969 plus the lab's
// offset, HTTP and UDP; the state is snapshotted to
// STATE/torrent/HOST-tracker.json; DNS records from Records). Its stats
// and peer tables are on the lab's admin listener under
// /hosts/HOST/torrent/tracker/.
func LabKinds() []lab.Kind {
	return []lab.Kind{{
		Name: KindName, Summary: "BitTorrent tracker (HTTP and UDP announce, scrape)", Port: DefaultPort, Network: "udp+tcp",
		Check: func(raw json.RawMessage) error {
			var c LabConfig
			if err := lab.DecodeConfig(raw, &c); err != nil {
				return err
			}
			if c.Name != "" && (strings.ContainsAny(c.Name, " \t\"") || !strings.Contains(strings.Trim(c.Name, "."), ".")) {
				return fmt.Errorf("name: %q is not a DNS name with a parent domain", c.Name)
			}
			return nil
		},
		Records: Records,
		Build: func(env lab.Env) (service.Service, error) {
			lc, err := decodeLab(env)
			if err != nil {
				return nil, err
			}
			c := lc.Config
			c.HTTPAddr, c.UDPAddr = env.Listen.String(), env.Listen.String()
			if c.Snapshot == "" && env.Plan.StateDir != "" {
				c.Snapshot = filepath.Join(env.Plan.StateDir, "torrent", env.Host.Name+"-tracker.json")
			}
			t, err := New(c, env.Deps)
			if err != nil {
				return nil, err
			}
			env.Admin.Handle("/torrent/tracker/", t.AdminHandler())
			return t, nil
		},
	}}
}
