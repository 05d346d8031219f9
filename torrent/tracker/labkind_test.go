package tracker

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/lab"
)

// TestLabRecords: the torrent-tracker kind's Records hook gives the
// tracker's name (a CNAME when it differs from the host's), SRV records
// for HTTP (tcp) and UDP announces in the name's domain with the port the
// lab's offset moved, and the announce URLs in a TXT record; each parses
// as DNS. LabTracker finds a tracker by its host or its name; a bad name
// is refused by Check.
func TestLabRecords(t *testing.T) {
	off := 10000
	topo := &lab.Topology{Hosts: []lab.Host{
		{Name: "bt1.lab", Services: []lab.ServiceSpec{{Kind: KindName, Config: json.RawMessage(`{"name":"tracker.lab","interval":"1m"}`)}}},
		{Name: "tracker.example.org", Services: []lab.ServiceSpec{{Kind: KindName, Port: 7000}}},
	}}
	topo.Lab.PortOffset = &off
	topo.Lab.Block = "127.0.99.0/24"
	topo.Lab.StateDir = t.TempDir()
	plan, err := lab.NewPlan(topo, lab.NewKinds(LabKinds()...), nil)
	if err != nil {
		t.Fatal(err)
	}
	bt1, other := plan.Hosts[0], plan.Hosts[1]
	want := []string{
		"tracker.lab. 300 IN CNAME bt1.lab.",
		"_bittorrent-tracker._tcp.lab. 300 IN SRV 0 0 16969 bt1.lab.",
		"_bittorrent-tracker._udp.lab. 300 IN SRV 0 0 16969 bt1.lab.",
		`bt1.lab. 300 IN TXT "announce=http://tracker.lab:16969/announce" "announce=udp://tracker.lab:16969"`,
		"_bittorrent-tracker._tcp.example.org. 300 IN SRV 0 0 17000 tracker.example.org.",
		"_bittorrent-tracker._udp.example.org. 300 IN SRV 0 0 17000 tracker.example.org.",
		`tracker.example.org. 300 IN TXT "announce=http://tracker.example.org:17000/announce" "announce=udp://tracker.example.org:17000"`,
	}
	if !slices.Equal(plan.Records, want) {
		t.Errorf("records:\n%s\nwant:\n%s", strings.Join(plan.Records, "\n"), strings.Join(want, "\n"))
	}
	for _, r := range plan.Records {
		if _, err := dns.NewRR(r); err != nil {
			t.Errorf("%s: %v", r, err)
		}
	}
	for _, tc := range []struct {
		name string
		host lab.PlannedHost
		port int
	}{{"tracker.lab", bt1, 16969}, {"bt1.lab.", bt1, 16969}, {"TRACKER.example.org", other, 17000}} {
		h, port, err := LabTracker(plan, tc.name)
		if err != nil || h.Name != tc.host.Name || port != tc.port {
			t.Errorf("LabTracker(%q) = %s %d %v, want %s %d", tc.name, h.Name, port, err, tc.host.Name, tc.port)
		}
	}
	if _, _, err := LabTracker(plan, "nope.lab"); err == nil || !strings.Contains(err.Error(), `"nope.lab"`) {
		t.Errorf("LabTracker(nope.lab): %v", err)
	}
	k := LabKinds()[0]
	for _, bad := range []string{`{"name":"tracker"}`, `{"name":"a b.lab"}`, `{"nmae":"x.lab"}`} {
		if err := k.Check(json.RawMessage(bad)); err == nil {
			t.Errorf("Check(%s) accepted", bad)
		}
	}
	if err := k.Check(json.RawMessage(fmt.Sprintf(`{"name":"tracker.lab","interval":"%s"}`, "30s"))); err != nil {
		t.Errorf("Check: %v", err)
	}
}
