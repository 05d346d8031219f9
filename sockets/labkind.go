package sockets

import (
	"encoding/json"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/lab"
)

// LabKinds are the lab kinds of the socket-programming examples:
// udp-upper and tcp-upper (configs: UDPConfig and TCPConfig).
func LabKinds() []lab.Kind {
	return []lab.Kind{
		{
			Name: "udp-upper", Summary: "UDP upper-case server (socket programming)", Port: DefaultPort, Network: "udp",
			Check: func(raw json.RawMessage) error { var c UDPConfig; return lab.DecodeConfig(raw, &c) },
			Build: func(env lab.Env) (service.Service, error) {
				var c UDPConfig
				if err := lab.DecodeConfig(env.Spec.Config, &c); err != nil {
					return nil, err
				}
				c.Addr = env.Listen.String()
				return NewUDPServer(c, env.Deps)
			},
		},
		{
			Name: "tcp-upper", Summary: "TCP upper-case server (socket programming)", Port: DefaultPort, Network: "tcp",
			Check: func(raw json.RawMessage) error { var c TCPConfig; return lab.DecodeConfig(raw, &c) },
			Build: func(env lab.Env) (service.Service, error) {
				var c TCPConfig
				if err := lab.DecodeConfig(env.Spec.Config, &c); err != nil {
					return nil, err
				}
				c.Addr = env.Listen.String()
				return NewTCPServer(c, env.Deps)
			},
		},
	}
}
