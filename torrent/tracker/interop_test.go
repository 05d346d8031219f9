package tracker

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/torrent/metainfo"
)

// ariaArgs are the flags every aria2c of the tests gets: no DHT (unless
// the caller turns on an empty one), LPD, PEX or IPv6, bound to its own
// loopback address.
func ariaArgs(dir, addr string, port int) []string {
	return []string{"--no-conf", "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
		"--enable-peer-exchange=false", "--disable-ipv6", "--summary-interval=0", "--console-log-level=warn",
		"--interface=" + addr, "--listen-port=" + strconv.Itoa(port), "--dir=" + dir,
		"--bt-tracker-interval=2", "--bt-tracker-connect-timeout=5", "--bt-tracker-timeout=5",
		"--dht-file-path=" + filepath.Join(dir, "dht.dat")}
}

// TestInteropAria2 serves a real swarm of aria2c: a seed announcing over
// HTTP and a leecher announcing only over UDP (aria2 speaks UDP trackers
// only with its DHT on: it gets an empty one) find each other through our
// tracker and the leecher completes.
func TestInteropAria2(t *testing.T) {
	aria := testkit.Peer(t, "aria2c")
	tr := startTracker(t, Config{Interval: 5e9, MinInterval: 1e9}, service.Deps{})
	urls := tr.AnnounceURLs()
	dir := t.TempDir()
	seedDir, leechDir := filepath.Join(dir, "seed"), filepath.Join(dir, "leech")
	os.MkdirAll(seedDir, 0o755)
	os.MkdirAll(leechDir, 0o755)
	data := make([]byte, 1<<20+12345)
	for i := range data {
		data[i] = byte(rand.Uint32())
	}
	if err := os.WriteFile(filepath.Join(seedDir, "blob.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := metainfo.Create(filepath.Join(seedDir, "blob.bin"), metainfo.CreateOptions{Trackers: [][]string{{urls[0]}, {urls[1]}}})
	if err != nil {
		t.Fatal(err)
	}
	tf := filepath.Join(dir, "blob.torrent")
	os.WriteFile(tf, m.Bytes(), 0o644)
	block := fmt.Sprintf("127.%d.%d.", 100+rand.IntN(100), rand.IntN(250))

	var seedOut testkit.Buffer
	seed := exec.Command(aria, append(ariaArgs(seedDir, block+"2", testkit.FreePort(t, "tcp", block+"2")),
		"--check-integrity", "--seed-ratio=0.0", "--bt-exclude-tracker="+urls[1], tf)...)
	seed.Stdout, seed.Stderr = &seedOut, &seedOut
	if err := seed.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { seed.Process.Kill(); seed.Wait(); t.Logf("seed output:\n%s", seedOut.String()) }()
	// Wait for the seed's announce.
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := tr.Stats()
		if len(st) == 1 && st[0].Complete == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("aria2 seed never announced: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leechArgs := append(ariaArgs(leechDir, block+"3", testkit.FreePort(t, "tcp", block+"3")),
		"--enable-dht=true", "--dht-listen-port="+strconv.Itoa(testkit.FreePort(t, "udp", block+"3")),
		"--seed-time=0", "--bt-exclude-tracker="+urls[0], tf)
	out, err := exec.CommandContext(ctx, aria, leechArgs...).CombinedOutput()
	if err != nil {
		t.Fatalf("aria2c leecher: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(leechDir, "blob.bin"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("leecher's file differs (%v)", err)
	}
	http, udp := tr.m.announces.WithLabelValues("http", "started"), tr.m.announces.WithLabelValues("udp", "started")
	if testutilValue(http) < 1 || testutilValue(udp) < 1 {
		t.Errorf("started announces: http %v, udp %v", testutilValue(http), testutilValue(udp))
	}
	peers, _ := tr.st.peers(InfoHash(m.InfoHash))
	found := false
	for _, p := range peers {
		if p.Addr[:len(block)] == block && p.Seeder {
			found = true
		}
	}
	if !found {
		t.Errorf("peer table lacks the aria2 seed at %s2: %+v", block, peers)
	}
}
