package dht

import (
	"encoding/json"
	"net/netip"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/lab"
)

// DefaultPort is the DHT's conventional UDP port.
const DefaultPort = 6881

// LabConfig configures the lab's torrent-dht kind.
type LabConfig struct {
	// Bootstrap are lab host names of other torrent-dht nodes to join.
	Bootstrap []string `json:"bootstrap,omitempty"`
}

// LabKinds are the DHT's lab kinds: torrent-dht, a DHT node (UDP 6881),
// the bootstrap node of the lab's peers (get --dht-bootstrap HOST:PORT).
func LabKinds() []lab.Kind {
	return []lab.Kind{{
		Name: "torrent-dht", Summary: "BitTorrent DHT node (BEP 5), the lab's bootstrap node", Port: DefaultPort, Network: "udp",
		Check: func(raw json.RawMessage) error { var c LabConfig; return lab.DecodeConfig(raw, &c) },
		Build: func(env lab.Env) (service.Service, error) {
			var c LabConfig
			if err := lab.DecodeConfig(env.Spec.Config, &c); err != nil {
				return nil, err
			}
			cfg := Config{Addr: env.Listen.String()}
			for _, h := range c.Bootstrap {
				if ph, ok := env.Plan.Lookup(h); ok {
					cfg.Bootstrap = append(cfg.Bootstrap, netip.AddrPortFrom(ph.Addr, uint16(env.Plan.Port(DefaultPort))).String())
				}
			}
			return New(cfg, env.Deps)
		},
	}}
}
