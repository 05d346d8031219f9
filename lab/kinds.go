package lab

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strings"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
)

// Kind is a kind of service the lab can run, e.g. "udp-upper" or
// "dns-authority". Each system declares its kinds beside its code (e.g.
// sockets.LabKinds in sockets/labkind.go); the wiring table in internal/app
// lists them all. The lab package imports no system, so any system may
// import it.
type Kind struct {
	// Name is the kind's name in topology files.
	Name string
	// Summary says in a few words what it is, for `lab kinds` and errors.
	Summary string
	// Port is the kind's standard port.
	Port int
	// Network is "udp", "tcp" or "udp+tcp": what the kind listens on.
	Network string
	// Check validates a raw config; nil accepts only an empty config.
	Check func(raw json.RawMessage) error
	// Build constructs the service for one host of a planned lab.
	Build func(env Env) (service.Service, error)
	// Records, when set, is the service's contribution to the lab's DNS:
	// resource records in master-file form with fully qualified owner
	// names ("nyu.edu. MX 10 mail.nyu.edu.", "www.cdn.lab. CNAME
	// edge.cdn.lab.", "cdn.lab. NS ns.cdn.lab."). Each goes into the
	// deepest zone of the lab that contains its owner (dns/labzone), so a
	// system adds MX, aliases or a delegation without touching the DNS
	// wiring. It gets the Env of Build without Deps and Admin, during
	// NewPlan, after every host has its address; the records are in
	// Plan.Records.
	Records func(env Env) ([]string, error)
}

func (k Kind) networks() []string {
	return strings.Split(k.Network, "+")
}

// Env is what a Kind's Build gets: where to listen, the whole plan (for
// services that need to know about other hosts, such as DNS zones), and the
// service's dependencies.
type Env struct {
	// Host is the host the service runs on.
	Host PlannedHost
	// Spec is the service's entry in the topology.
	Spec ServiceSpec
	// Listen is the address and port (offset applied) to listen on.
	Listen netip.AddrPort
	// Plan is the whole lab.
	Plan *Plan
	// Deps carries the logger (with host and kind attributes), the metrics
	// registerer (with host and kind labels), the trace bus and the dialer
	// (whose connections to loopback leave from the host's own address).
	Deps service.Deps
	// Admin adds endpoints (a cache's purge, a resolver's flush) to the
	// lab's admin listener under /hosts/<host name>/; it does nothing when
	// the lab has no admin listener. Use it during Build.
	Admin AdminMux
}

// AdminMux is where a service registers its admin endpoints.
type AdminMux interface {
	// Handle registers h for pattern ("POST /cache/purge" or "/cache/"),
	// relative to the service's own admin prefix.
	Handle(pattern string, h http.Handler)
}

// hostAdmin registers a host's handlers on the lab's admin listener under
// /hosts/<name>, with that prefix stripped before the handler sees the path.
type hostAdmin struct {
	mux    interface{ Handle(string, http.Handler) }
	prefix string
}

// Handle implements AdminMux.
func (a hostAdmin) Handle(pattern string, h http.Handler) {
	if a.mux == nil {
		return
	}
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "", pattern
	}
	full := a.prefix + path
	if method != "" {
		full = method + " " + full
	}
	a.mux.Handle(full, http.StripPrefix(a.prefix, h))
}

// DecodeConfig strictly decodes the service's raw config into v; an empty
// config leaves v as it is.
func DecodeConfig(raw json.RawMessage, v any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return config.Decode(raw, "json", v)
}

// Kinds is a set of kinds by name.
type Kinds struct {
	m map[string]Kind
}

// NewKinds returns a set of the given kinds. It panics on a duplicate name,
// which is a wiring mistake.
func NewKinds(ks ...Kind) *Kinds {
	s := &Kinds{m: map[string]Kind{}}
	for _, k := range ks {
		if _, dup := s.m[k.Name]; dup {
			panic(fmt.Sprintf("lab: kind %q listed twice", k.Name))
		}
		s.m[k.Name] = k
	}
	return s
}

// Get returns the named kind.
func (s *Kinds) Get(name string) (Kind, bool) {
	k, ok := s.m[name]
	return k, ok
}

// All returns the kinds sorted by name.
func (s *Kinds) All() []Kind {
	out := make([]Kind, 0, len(s.m))
	for _, k := range s.m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// NameList returns the kind names, comma-separated.
func (s *Kinds) NameList() string {
	var names []string
	for _, k := range s.All() {
		names = append(names, k.Name)
	}
	return strings.Join(names, ", ")
}
