package app

import (
	"fmt"
	"net"
	"strconv"

	"github.com/applayer/applayer/dns/labzone"
	"github.com/applayer/applayer/lab"
)

// clientLabPlan is the plan of the lab the clients' --lab flags talk to:
// the topology at path (the embedded default when empty), as lab up would
// make it; offset < 0 lets it decide the port offset (10000 when privileged
// ports cannot be bound).
func clientLabPlan(path string, offset int) (*lab.Plan, error) {
	topo, err := loadTopology(path)
	if err != nil {
		return nil, err
	}
	if offset >= 0 {
		topo.Lab.PortOffset = &offset
	}
	return lab.NewPlan(topo, labKinds(), nil)
}

// labResolver is the address of the plan's recursive resolver (the
// dns-resolver service: resolver.nyu.edu in the default lab).
func labResolver(plan *lab.Plan) (string, error) {
	for _, h := range plan.Hosts {
		for _, s := range h.Services {
			if s.Kind == "dns-resolver" {
				port := plan.Port(53)
				if s.Port != 0 {
					port = plan.Port(s.Port)
				}
				return net.JoinHostPort(h.Addr.String(), strconv.Itoa(port)), nil
			}
		}
	}
	return "", fmt.Errorf("the lab topology has no dns-resolver")
}

// labRoot returns the plan's root server address and its DNS port.
func labRoot(plan *lab.Plan) (string, int, error) {
	h, ok := labzone.Root(plan)
	if !ok {
		return "", 0, fmt.Errorf("the lab topology has no root server")
	}
	port := plan.Port(53)
	return net.JoinHostPort(h.Addr.String(), strconv.Itoa(port)), port, nil
}
