package app

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/lab"
)

// TestLabStreamPlay: the lab's dash-origin packages its synthetic video
// (503 until then) and `applayer stream play --lab` from a client finds
// origin.netcinema.com through the lab's resolver and plays it, with its
// segment requests and rung decisions on the trace.
func TestLabStreamPlay(t *testing.T) {
	testkit.Peer(t, "ffmpeg")
	topo := &lab.Topology{Hosts: []lab.Host{
		{Name: "a.root-servers.net", Services: []lab.ServiceSpec{{Kind: "dns-authority", Config: json.RawMessage(`{"zones": [{"origin": "."}]}`)}}},
		{Name: "resolver.nyu.edu", Services: []lab.ServiceSpec{{Kind: "dns-resolver"}}},
		{Name: "origin.netcinema.com", Services: []lab.ServiceSpec{{Kind: "dash-origin",
			Config: json.RawMessage(`{"duration": "6s", "width": 320, "height": 180, "ladder": "144:150k,180:300k"}`)}}},
	}}
	ctx := testkit.Context(t, 120*time.Second)
	plan, _, _ := startRandomLab(t, ctx, topo, 44000, "off")
	raw, _ := json.Marshal(plan.Topology)
	topoFile := filepath.Join(t.TempDir(), "lab.json")
	os.WriteFile(topoFile, raw, 0o600)
	traceFile := filepath.Join(t.TempDir(), "trace.jsonl")
	out, err := runApp(t, "--trace", traceFile, "stream", "play", "--lab", "--lab-topology", topoFile, "--port-offset", strconv.Itoa(plan.PortOffset),
		"--algorithm", "bola", "--json", "http://origin.netcinema.com/manifest.mpd")
	if err != nil {
		t.Fatalf("play: %v\n%s", err, out)
	}
	var rep struct {
		Segments []struct{ Rung int } `json:"segments"`
		Bitrates []float64            `json:"bitrates"`
		Stalls   int                  `json:"stalls"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(rep.Segments) != 3 || len(rep.Bitrates) != 2 {
		t.Fatalf("%d segments over %v", len(rep.Segments), rep.Bitrates)
	}
	tr, err := os.ReadFile(traceFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bola chose rung", "GET http://origin.netcinema.com/seg-v", "segment 3 arrived"} {
		if !strings.Contains(string(tr), want) {
			t.Errorf("trace lacks %q", want)
		}
	}
	// The state dir keeps the packaging for the next start.
	if _, err := os.Stat(filepath.Join(plan.StateDir, "stream", "origin.netcinema.com", ".packaged.json")); err != nil {
		t.Error(err)
	}
}
