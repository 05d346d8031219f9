package proxy

import (
	"encoding/json"
	"path/filepath"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/lab"
)

// LabKinds are the proxy's lab kinds: web-cache, the campus web cache
// (config: Config), fetching from the lab's hosts through the plan's dialer.
func LabKinds() []lab.Kind {
	return []lab.Kind{{
		Name: "web-cache", Summary: "campus web cache: caching forward proxy (RFC 9111)", Port: DefaultPort, Network: "tcp",
		Check: func(raw json.RawMessage) error {
			var c Config
			if err := lab.DecodeConfig(raw, &c); err != nil {
				return err
			}
			return c.Validate()
		},
		Build: func(env lab.Env) (service.Service, error) {
			var c Config
			if err := lab.DecodeConfig(env.Spec.Config, &c); err != nil {
				return nil, err
			}
			c.Addr = env.Listen.String()
			if c.Name == "" {
				c.Name = env.Host.Name
			}
			if c.AllowDestinations == nil {
				// the lab's hosts live on loopback: allowed explicitly
				c.AllowDestinations = []string{env.Plan.Block.String()}
			}
			if c.Cache.Dir == "" && env.Plan.StateDir != "" {
				c.Cache.Dir = filepath.Join(env.Plan.StateDir, "web-cache", env.Host.Name)
			}
			d := env.Deps.Defaults()
			d.Dialer = env.Plan.Dialer(d.Dialer)
			srv, err := New(c, d)
			if err != nil {
				return nil, err
			}
			// Stats and purge on the lab's admin listener, under
			// /hosts/<name>/: applayer http proxy --stats --admin 127.0.0.1:9900/hosts/cache.nyu.edu
			env.Admin.Handle("/cache/", srv.Cache().AdminHandler())
			return srv, nil
		},
	}}
}
