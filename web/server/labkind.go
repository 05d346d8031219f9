package server

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/lab"
)

// labConfig is the lab config of kinds http-server and shop.
type labConfig struct {
	// Sites are served as in Config; with none, the host serves the demo
	// page (DemoImages images) generated under the state dir.
	Sites []Site `json:"sites,omitempty"`
	// DemoImages is how many images the generated demo page references. Default 10.
	DemoImages int `json:"demo_images,omitempty"`
	// TLS serves HTTPS (lab CA, port 443 plus the lab's offset) and HTTP/3 there.
	TLS bool `json:"tls,omitempty"`
	// NonPersistent closes the connection after every response.
	NonPersistent bool `json:"non_persistent,omitempty"`
	// AccessLog is common or combined.
	AccessLog string `json:"access_log,omitempty"`
	// Push is HTTP/2 server push for the demo site (as Site.Push).
	Push *Push `json:"push,omitempty"`
}

// LabKinds are the web server's lab kinds: http-server (static files, the
// demo page) and shop (the cookie shop).
func LabKinds() []lab.Kind {
	check := func(raw json.RawMessage) error { var c labConfig; return lab.DecodeConfig(raw, &c) }
	return []lab.Kind{
		{
			Name: "http-server", Summary: "web server (static files, demo page with images; tls: https + HTTP/3 on 443)", Port: 80, Network: "tcp",
			Check: check,
			Build: func(env lab.Env) (service.Service, error) { return buildLab(env, false) },
		},
		{
			Name: "shop", Summary: "the cookie shop: session cookie, cart in SQLite under the state dir", Port: 80, Network: "tcp",
			Check: check,
			Build: func(env lab.Env) (service.Service, error) { return buildLab(env, true) },
		},
	}
}

func buildLab(env lab.Env, shop bool) (service.Service, error) {
	var lc labConfig
	if err := lab.DecodeConfig(env.Spec.Config, &lc); err != nil {
		return nil, err
	}
	web := filepath.Join(env.Plan.StateDir, "web")
	cfg := Config{Addr: env.Listen.String(), NonPersistent: lc.NonPersistent, AccessLog: lc.AccessLog, Sites: lc.Sites}
	switch {
	case shop:
		cfg.Sites = []Site{{Hosts: []string{env.Host.Name}, Shop: filepath.Join(web, "shop")}}
	case len(cfg.Sites) == 0:
		dir := filepath.Join(web, env.Host.Name)
		n := lc.DemoImages
		if n <= 0 {
			n = 10
		}
		if err := WriteDemoSite(dir, n); err != nil {
			return nil, err
		}
		cfg.Sites = []Site{{Hosts: []string{env.Host.Name}, Root: dir, Uploads: true, Push: lc.Push}}
	}
	if lc.TLS {
		cfg.TLSAddr = fmt.Sprintf("%s:%d", env.Host.Addr, env.Plan.Port(443))
		cfg.HTTP3 = true
		cfg.TLS = TLSConfig{CADir: filepath.Join(web, "ca"), Names: []string{env.Host.Name}}
	}
	return New(cfg, env.Deps)
}
