package authority

import (
	"encoding/json"
	"net/netip"
	"path/filepath"

	"github.com/applayer/applayer/dns/labzone"
	"github.com/applayer/applayer/dns/zone"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/lab"
)

// LabKinds are the lab kinds of the authoritative server: dns-authority,
// serving zones generated from the lab's hosts by dns/labzone (config:
// labzone.ServerConfig).
func LabKinds() []lab.Kind {
	return []lab.Kind{{
		Name:    labzone.AuthorityKind,
		Summary: "authoritative DNS server (zones generated from the lab's hosts)",
		Port:    53,
		Network: "udp+tcp",
		Check: func(raw json.RawMessage) error {
			_, err := labzone.DecodeServerConfig(raw)
			return err
		},
		Build: buildLab,
	}}
}

func buildLab(env lab.Env) (service.Service, error) {
	mine, err := labzone.DecodeServerConfig(env.Spec.Config)
	if err != nil {
		return nil, err
	}
	texts, err := labzone.LabZones(env.Plan)
	if err != nil {
		return nil, err
	}
	cfg := Config{Addr: env.Listen.String(), NSID: mine.NSID, AllowTransfer: mine.AllowTransfer}
	if env.Plan.StateDir != "" {
		cfg.StateDir = filepath.Join(env.Plan.StateDir, "dns", "authority", env.Host.Name)
	}
	if cfg.NSID == "" {
		cfg.NSID = env.Host.Name
	}
	for _, z := range mine.Zones {
		k := zone.Key(z.Origin)
		zc := ZoneConfig{Origin: k, File: z.File}
		if z.File == "" {
			zc.Text = texts[k]
		}
		if z.Sign {
			zc.Sign = &SignConfig{KeyDir: labzone.KeyDir(env.Plan), NSEC3: z.NSEC3}
			if k == "." {
				cfg.DSFile = labzone.TrustAnchorFile(env.Plan)
			}
		}
		cfg.Zones = append(cfg.Zones, zc)
	}
	srv, err := New(cfg, env.Deps)
	if err != nil {
		return nil, err
	}
	// The recursive mode of the dns-recursive scenario, off until asked.
	rec := Recursion{Port: env.Plan.Port(53)}
	if root, ok := labzone.Root(env.Plan); ok {
		rec.Root = netip.AddrPortFrom(root.Addr, uint16(env.Plan.Port(53))).String()
	}
	if env.Admin != nil {
		env.Admin.Handle("POST /dns/authority/recursion", srv.RecursionHandler(rec))
	}
	return srv, nil
}
