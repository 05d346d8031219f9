package dashboard

import (
	"encoding/json"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"

	"github.com/applayer/applayer/lab"
)

func TestGroupOf(t *testing.T) {
	for _, tc := range []struct {
		name  string
		zones []string
		want  string
	}{
		{"a.root-servers.net", []string{"."}, groupRoot},
		{"a.edu-servers.net", []string{"edu."}, groupTLD},
		{"a.gtld-servers.net", []string{"com.", "net."}, groupTLD},
		{"dns.umass.edu", []string{"umass.edu."}, "umass.edu"},
		{"gaia.cs.umass.edu", []string{"cs.umass.edu."}, "umass.edu"},
		{"cache.nyu.edu", nil, "nyu.edu"},
		{"mail.crepes.fr", nil, "crepes.fr"},
		{"tracker.lab", nil, "lab"},
		{"www.bbc.co.uk", nil, "bbc.co.uk"},
	} {
		if got := groupOf(tc.name, tc.zones); got != tc.want {
			t.Errorf("groupOf(%s, %v) = %q, want %q", tc.name, tc.zones, got, tc.want)
		}
	}
}

// TestTopologyLinks: the topology shows each host's access link and the
// links between hosts, written as lab/link writes them.
func TestTopologyLinks(t *testing.T) {
	kinds := lab.NewKinds(lab.Kind{Name: "noop", Summary: "nothing", Port: 7, Network: "tcp"})
	off := 0
	topo := &lab.Topology{
		Lab: lab.Settings{Block: "127.93.0.0/16", PortOffset: &off, Admin: "off"},
		Hosts: []lab.Host{
			{Name: "gaia.cs.umass.edu", Services: []lab.ServiceSpec{{Kind: "noop"}}, Link: "delay=100ms,rate=1.54Mbit,loss=1%"},
			{Name: "resolver.nyu.edu", Services: []lab.ServiceSpec{{Kind: "noop"}}},
		},
		Links: []lab.PairLink{{Between: []string{"resolver.nyu.edu", "gaia.cs.umass.edu"}, Link: "delay=20ms"}},
	}
	plan, err := lab.NewPlan(topo, kinds, func(netip.Addr) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	d := New(&lab.Running{Plan: plan}, nil, nil, Config{RunDir: t.TempDir()})
	rec := httptest.NewRecorder()
	d.ServeHTTP(rec, httptest.NewRequest("GET", "/api/topology", nil))
	var got topology
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, rec.Body)
	}
	if len(got.Hosts) != 2 || got.Hosts[0].Link != "delay=100ms,rate=1.54Mbit,loss=1%" || got.Hosts[1].Link != "" {
		t.Errorf("hosts' links: %+v", got.Hosts)
	}
	if len(got.Links) != 1 || !slices.Equal(got.Links[0].Between, []string{"resolver.nyu.edu", "gaia.cs.umass.edu"}) || got.Links[0].Link != "delay=20ms" {
		t.Errorf("links: %+v", got.Links)
	}
	if len(got.Groups) != 2 || got.Groups[0].Name != "umass.edu" || got.Groups[1].Name != "nyu.edu" {
		t.Errorf("groups: %+v", got.Groups)
	}
}

// TestTopologyHostWithoutServices: a host with nothing listening (the
// default lab's attacker.lab) is listed with "services": [], never null,
// which the page could not read.
func TestTopologyHostWithoutServices(t *testing.T) {
	kinds := lab.NewKinds(lab.Kind{Name: "noop", Summary: "nothing", Port: 7, Network: "tcp"})
	off := 0
	topo := &lab.Topology{
		Lab:   lab.Settings{Block: "127.93.0.0/16", PortOffset: &off, Admin: "off"},
		Hosts: []lab.Host{{Name: "tracker.lab", Services: []lab.ServiceSpec{{Kind: "noop"}}}, {Name: "attacker.lab"}},
	}
	plan, err := lab.NewPlan(topo, kinds, func(netip.Addr) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	d := New(&lab.Running{Plan: plan}, nil, nil, Config{RunDir: t.TempDir()})
	rec := httptest.NewRecorder()
	d.ServeHTTP(rec, httptest.NewRequest("GET", "/api/topology", nil))
	var got struct {
		Hosts []struct {
			Name     string             `json:"name"`
			Services *[]json.RawMessage `json:"services"`
		} `json:"hosts"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, rec.Body)
	}
	if len(got.Hosts) != 2 {
		t.Fatalf("%s", rec.Body)
	}
	for _, h := range got.Hosts {
		if h.Services == nil {
			t.Errorf("%s: services is null: %s", h.Name, rec.Body)
		}
	}
}
