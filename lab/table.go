package lab

import "github.com/applayer/applayer/internal/service"

// TableEntry is one row of the lab's table in JSON (lab up --json).
type TableEntry struct {
	Host    string     `json:"host"`
	Address string     `json:"address"`
	Service string     `json:"service"`
	Listen  []Listener `json:"listen"`
}

// Listener is one address a service listens on.
type Listener struct {
	Network string `json:"network"`
	Address string `json:"address"`
}

// Table is lab up's table as data: every service with where it listens, the
// admin listener, the state dir and the port offset.
type Table struct {
	Services   []TableEntry `json:"services"`
	Admin      []Listener   `json:"admin,omitempty"`
	StateDir   string       `json:"state_dir"`
	PortOffset int          `json:"port_offset"`
	Block      string       `json:"block"`
}

// Table returns the table PrintTable prints, as data.
func (r *Running) Table() Table {
	t := Table{Services: []TableEntry{}, StateDir: r.Plan.StateDir, PortOffset: r.Plan.PortOffset, Block: r.Plan.Block.String()}
	for _, e := range r.Entries {
		t.Services = append(t.Services, TableEntry{Host: e.Host, Address: e.Addr.String(), Service: e.Kind, Listen: listeners(e.Service)})
	}
	if r.Admin != nil {
		t.Admin = listeners(r.Admin)
	}
	return t
}

func listeners(s service.Service) []Listener {
	out := []Listener{}
	if a, ok := s.(service.Addresser); ok {
		for _, addr := range a.Addrs() {
			out = append(out, Listener{Network: addr.Network(), Address: addr.String()})
		}
	}
	return out
}
