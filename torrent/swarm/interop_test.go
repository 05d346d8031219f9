package swarm

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/torrent/metainfo"
)

// aria2 runs aria2c as the test's own process on addr, with DHT, LPD, PEX
// and IPv6 off, its files in dir; it is killed at the end of the test.
func aria2(t *testing.T, addr, dir string, args ...string) (*exec.Cmd, *testkit.Buffer) {
	t.Helper()
	bin := testkit.Peer(t, "aria2c")
	port := testkit.FreePort(t, "tcp", addr)
	base := []string{"--no-conf", "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
		"--enable-peer-exchange=false", "--disable-ipv6", "--summary-interval=0", "--console-log-level=warn",
		"--interface=" + addr, "--listen-port=" + strconv.Itoa(port), "--dir=" + dir,
		"--bt-tracker-interval=1", "--dht-file-path=" + filepath.Join(dir, "dht.dat"), "--bt-save-metadata=false"}
	var out testkit.Buffer
	cmd := exec.Command(bin, append(base, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("aria2c output:\n%s", out.String())
		}
	})
	return cmd, &out
}

func (f *fixture) torrentFile() string {
	p := filepath.Join(f.dir, "file.torrent")
	if err := os.WriteFile(p, f.m.Bytes(), 0o644); err != nil {
		f.t.Fatal(err)
	}
	return p
}

func waitExit(t *testing.T, cmd *exec.Cmd, d time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("aria2c: %v", err)
		}
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		t.Fatalf("aria2c did not finish in %v", d)
	}
}

// TestInteropAria2FromOurSeed: aria2c downloads from our seed, once from
// the .torrent and once from a magnet link (metadata from our seed, BEP 9).
func TestInteropAria2FromOurSeed(t *testing.T) {
	f := newFixture(t, 2<<20+5, 32<<10)
	f.client("seed", 2, Config{Dir: filepath.Join(f.dir, "seed"), Seed: true}, nil)
	tf := f.torrentFile()
	for i, target := range []string{tf, f.m.Magnet().String()} {
		name := "aria" + strconv.Itoa(i)
		cmd, _ := aria2(t, f.block+strconv.Itoa(10+i), filepath.Join(f.dir, name), "--seed-time=0", target)
		waitExit(t, cmd, 60*time.Second)
		// aria2 run without the file exits 0 only when complete; check
		// the bytes anyway.
		f.checkFile(name)
	}
}

// TestInteropOursFromAria2Seed: our peer downloads from an aria2c seed,
// found through our tracker (aria2 over HTTP, ours over UDP), then again
// from a magnet link.
func TestInteropOursFromAria2Seed(t *testing.T) {
	f := newFixture(t, 2<<20+5, 32<<10)
	tf := f.torrentFile()
	aria2(t, f.block+"2", filepath.Join(f.dir, "seed"), "--check-integrity", "--seed-ratio=0.0", tf)
	udp := f.tracker.AnnounceURLs()[1]
	m := *f.m
	m.Announce, m.AnnounceList = udp, nil
	l := f.client("leech", 3, Config{Torrent: &m}, nil)
	waitDone(t, l, 60*time.Second)
	f.checkFile("leech")

	mag := &metainfo.Magnet{InfoHash: f.m.InfoHash, Trackers: []string{udp}}
	l2 := f.client("magnet", 4, Config{Magnet: mag}, nil)
	waitDone(t, l2, 60*time.Second)
	f.checkFile("magnet")
	_ = context.Background
}

// transmission runs transmission-cli on addr with its own config dir (DHT,
// LPD, PEX, uTP, port mapping and encryption off), downloading into or
// seeding from dir. transmission-cli never exits by itself; it is killed
// at the end of the test.
func transmission(t *testing.T, addr, dir, torrent string) {
	t.Helper()
	bin := testkit.Peer(t, "transmission-cli")
	cfg := t.TempDir()
	port := testkit.FreePort(t, "tcp", addr)
	settings := `{"dht-enabled": false, "lpd-enabled": false, "pex-enabled": false, "port-forwarding-enabled": false,
 "utp-enabled": false, "bind-address-ipv4": "` + addr + `", "bind-address-ipv6": "::1", "peer-port": ` + strconv.Itoa(port) + `,
 "peer-port-random-on-start": false, "encryption": 0, "rpc-enabled": false, "ratio-limit-enabled": false,
 "blocklist-enabled": false, "message-level": 2}`
	if err := os.WriteFile(filepath.Join(cfg, "settings.json"), []byte(settings), 0o644); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(dir, 0o755)
	var out testkit.Buffer
	cmd := exec.Command(bin, "-g", cfg, "-w", dir, "-et", "-M", torrent)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "HOME="+cfg)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			s := out.String()
			if len(s) > 4000 {
				s = s[len(s)-4000:]
			}
			t.Logf("transmission-cli output (tail):\n%s", s)
		}
	})
}

// TestInteropTransmission: Transmission 3.00 downloads from our seed (our
// seed dials it: it learned Transmission from the tracker), from the
// .torrent and from a magnet link, and our peer
// downloads from a Transmission seed (we dial it). PEERS.md: Transmission
// never dials loopback peers itself.
func TestInteropTransmission(t *testing.T) {
	f := newFixture(t, 1<<20+99, 32<<10)
	tf := f.torrentFile()
	f.client("seed", 2, Config{Dir: filepath.Join(f.dir, "seed"), Seed: true}, nil)
	transmission(t, f.block+"20", filepath.Join(f.dir, "tx"), tf)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if got, err := os.ReadFile(filepath.Join(f.dir, "tx", "file.bin")); err == nil && len(got) == len(f.data) && string(got) == string(f.data) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Transmission did not download from our seed in 60 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Transmission from a magnet link: the metadata comes from our seed.
	transmission(t, f.block+"22", filepath.Join(f.dir, "txmag"), f.m.Magnet().String())
	deadline = time.Now().Add(90 * time.Second)
	for {
		if got, err := os.ReadFile(filepath.Join(f.dir, "txmag", "file.bin")); err == nil && string(got) == string(f.data) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Transmission did not download from a magnet link in 90 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// A second swarm with its own tracker where Transmission is the only
	// seed: our peer finds it through the tracker and dials it.
	f2 := newFixture(t, 1<<20+99, 32<<10)
	os.MkdirAll(filepath.Join(f2.dir, "txseed"), 0o755)
	os.WriteFile(filepath.Join(f2.dir, "txseed", "file.bin"), f2.data, 0o644)
	transmission(t, f2.block+"21", filepath.Join(f2.dir, "txseed"), f2.torrentFile())
	l := f2.client("leech", 3, Config{}, nil)
	waitDone(t, l, 60*time.Second)
	f2.checkFile("leech")
}
