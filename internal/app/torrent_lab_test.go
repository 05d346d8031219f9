package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/torrent/metainfo"
)

// TestLabTorrent runs the lab's tracker and seed, resolves tracker.lab,
// the tracker's SRV record and its announce URLs (TXT) at the lab's root
// server, and downloads the sample with `applayer torrent
// get` from the .torrent the seed wrote, as docs/torrent.md says.
func TestLabTorrent(t *testing.T) {
	seedCfg, _ := json.Marshal(map[string]any{"tracker": "tracker.lab", "size": 700000, "dht": "dht.lab"})
	topo := &lab.Topology{Hosts: []lab.Host{
		{Name: "a.root-servers.net", Services: []lab.ServiceSpec{{Kind: "dns-authority", Config: json.RawMessage(`{"zones": [{"origin": "."}]}`)}}},
		{Name: "tracker.lab", Services: []lab.ServiceSpec{{Kind: "torrent-tracker"}}},
		{Name: "seed.lab", Services: []lab.ServiceSpec{{Kind: "torrent-seed", Config: seedCfg}}},
		{Name: "dht.lab", Services: []lab.ServiceSpec{{Kind: "torrent-dht"}}},
	}}
	ctx := testkit.Context(t, 60*time.Second)
	plan, r, _ := startRandomLab(t, ctx, topo, 42000, "127.0.0.1:0")

	root, _ := plan.Lookup("a.root-servers.net")
	trk, _ := plan.Lookup("tracker.lab")
	m := new(dns.Msg)
	m.SetQuestion("tracker.lab.", dns.TypeA)
	in, _, err := (&dns.Client{Timeout: 3 * time.Second}).Exchange(m, fmt.Sprintf("%s:%d", root.Addr, plan.Port(53)))
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Answer) != 1 || in.Answer[0].(*dns.A).A.String() != trk.Addr.String() {
		t.Fatalf("tracker.lab A at the root: %v", in.Answer)
	}
	// The tracker kind's Records hook: where to announce, by SRV (the
	// lab's port) and TXT.
	m.SetQuestion("_bittorrent-tracker._udp.lab.", dns.TypeSRV)
	in, _, err = (&dns.Client{Timeout: 3 * time.Second}).Exchange(m, fmt.Sprintf("%s:%d", root.Addr, plan.Port(53)))
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Answer) != 1 || in.Answer[0].(*dns.SRV).Target != "tracker.lab." || int(in.Answer[0].(*dns.SRV).Port) != plan.Port(6969) {
		t.Fatalf("_bittorrent-tracker._udp.lab SRV at the root: %v", in.Answer)
	}
	m.SetQuestion("tracker.lab.", dns.TypeTXT)
	in, _, err = (&dns.Client{Timeout: 3 * time.Second}).Exchange(m, fmt.Sprintf("%s:%d", root.Addr, plan.Port(53)))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("announce=http://tracker.lab:%d/announce", plan.Port(6969)); len(in.Answer) != 1 || !slices.Contains(in.Answer[0].(*dns.TXT).Txt, want) {
		t.Fatalf("tracker.lab TXT at the root: %v, want %s", in.Answer, want)
	}

	tf := filepath.Join(plan.StateDir, "torrent", "sample.bin.torrent")
	dl := t.TempDir()
	out, err := runApp(t, "torrent", "get", "--dir", dl, "--listen", strings.TrimSuffix(plan.Block.Addr().String(), ".0")+".250:0", tf)
	if err != nil {
		t.Fatalf("get: %v\n%s", err, out)
	}
	want, _ := os.ReadFile(filepath.Join(plan.StateDir, "torrent", "seed.lab", "sample.bin"))
	got, _ := os.ReadFile(filepath.Join(dl, "sample.bin"))
	if len(want) != 700000 || !bytes.Equal(got, want) {
		t.Fatalf("sample: got %d bytes, want the seed's %d", len(got), len(want))
	}
	// The tracker's stats are on the lab's admin listener.
	resp, err := http.Get("http://" + r.Admin.Addrs()[0].String() + "/hosts/tracker.lab/torrent/tracker/stats")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"complete": `) || !strings.Contains(string(body), `"downloaded": `) {
		t.Errorf("tracker stats through the lab admin: %d %s", resp.StatusCode, body)
	}
	http.DefaultClient.CloseIdleConnections()

	// The same sample from a bare magnet link through the lab's DHT.
	dh, _ := plan.Lookup("dht.lab")
	mi, err := metainfo.ReadFile(tf)
	if err != nil {
		t.Fatal(err)
	}
	dl2 := t.TempDir()
	self := strings.TrimSuffix(plan.Block.Addr().String(), ".0") + ".251"
	out, err = runApp(t, "torrent", "get", "--dir", dl2, "--listen", self+":0", "--dht", self+":0",
		"--dht-bootstrap", fmt.Sprintf("%s:%d", dh.Addr, plan.Port(6881)), "magnet:?xt=urn:btih:"+mi.InfoHash.String())
	if err != nil {
		t.Fatalf("get over the DHT: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(filepath.Join(dl2, "sample.bin")); !bytes.Equal(got, want) {
		t.Fatal("sample over the DHT differs")
	}
}
