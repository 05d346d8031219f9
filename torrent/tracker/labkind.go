package tracker

import (
	"encoding/json"
	"path/filepath"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/lab"
)

// DefaultPort is the tracker's conventional port (HTTP and UDP).
const DefaultPort = 6969

// KindName is the tracker's lab kind.
const KindName = "torrent-tracker"

// LabKinds are the tracker's lab kinds: torrent-tracker (config: Config;
// the addresses are the host's, on port 6969 plus the lab's offset, HTTP
// and UDP; the state is snapshotted to STATE/torrent/HOST-tracker.json).
// Its stats and peer tables are on the lab's admin listener under
// /hosts/HOST/torrent/tracker/.
func LabKinds() []lab.Kind {
	return []lab.Kind{{
		Name: KindName, Summary: "BitTorrent tracker (HTTP and UDP announce, scrape)", Port: DefaultPort, Network: "udp+tcp",
		Check: func(raw json.RawMessage) error { var c Config; return lab.DecodeConfig(raw, &c) },
		Build: func(env lab.Env) (service.Service, error) {
			var c Config
			if err := lab.DecodeConfig(env.Spec.Config, &c); err != nil {
				return nil, err
			}
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
