package resolver

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/applayer/applayer/dns/labzone"
	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/lab"
)

// labConfig is the lab's config of a dns-resolver: the resolver's own
// fields plus the lab hosts serving the root.
type labConfig struct {
	Config
	// RootServers are lab host names of root servers; default
	// ["a.root-servers.net"].
	RootServers []string `json:"root_servers,omitempty"`
}

// LabKinds are the lab kinds of the resolver: dns-resolver, iterating from
// the lab's root servers and validating from the lab root's trust anchor.
func LabKinds() []lab.Kind {
	return []lab.Kind{{
		Name: "dns-resolver", Summary: "recursive caching validating DNS resolver (local DNS server)", Port: 53, Network: "udp+tcp",
		Check: func(raw json.RawMessage) error {
			var c labConfig
			return lab.DecodeConfig(raw, &c)
		},
		Build: buildLab,
	}}
}

func buildLab(env lab.Env) (service.Service, error) {
	var c labConfig
	if err := lab.DecodeConfig(env.Spec.Config, &c); err != nil {
		return nil, err
	}
	cfg := c.Config
	cfg.Listen = env.Listen.String()
	names := c.RootServers
	if len(names) == 0 {
		names = []string{"a.root-servers.net"}
	}
	if len(cfg.Forwarders) == 0 && len(cfg.RootHints) == 0 && cfg.RootHintsFile == "" {
		for _, n := range names {
			h, ok := env.Plan.Lookup(n)
			if !ok {
				if len(c.RootServers) > 0 {
					return nil, fmt.Errorf("dns-resolver: root server %q is not a lab host", n)
				}
				env.Deps.Logger.Warn("dns-resolver: root server is not a lab host; resolution will fail", "host", n)
				continue
			}
			cfg.RootHints = append(cfg.RootHints, h.Addr.String())
		}
		cfg.UpstreamPort = env.Plan.Port(53)
	}
	switch {
	case cfg.TrustAnchorFile == "" && labzone.RootUnsigned(env.Plan, names):
		// The lab's root is unsigned: no anchor will ever appear, so
		// neither wait for one nor pick up a stale one from an earlier
		// signed run in the same state dir.
		env.Deps.Logger.Info("dns-resolver: the lab's root zone is unsigned; DNSSEC validation is off", "root_servers", names)
	case cfg.TrustAnchorFile == "":
		// Forwarding too: the chain of trust is then built through the
		// forwarder (DS and DNSKEY queries).
		cfg.TrustAnchorFile = labzone.TrustAnchorFile(env.Plan)
		// A signed lab root writes root.ds when it starts: wait for it
		// and refuse to run unvalidated; an unsigned root never writes it.
		cfg.TrustAnchorOptional = !labzone.RootSigned(env.Plan, names)
		if cfg.TrustAnchorWait == 0 {
			cfg.TrustAnchorWait = config.Duration(10 * time.Second)
			if cfg.TrustAnchorOptional {
				cfg.TrustAnchorWait = config.Duration(time.Second)
			}
		}
	}
	srv, err := New(cfg, env.Deps)
	if err != nil {
		return nil, err
	}
	env.Admin.Handle("POST /dns/resolver/flush", srv.FlushHandler())
	return srv, nil
}
