package swarm

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/torrent/dht"
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
// the .torrent and once from a magnet link (metadata from our seed, BEP 9),
// and from a seed that spreads its pieces (super-seeding).
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
	// From a seed with an upload limit, which spreads its pieces: aria2
	// sees have-none, then haves a few pieces at a time.
	f2 := newFixture(t, 2<<20+5, 32<<10)
	f2.client("seed", 2, Config{Dir: filepath.Join(f2.dir, "seed"), Seed: true, UploadLimit: 16 << 20}, nil)
	cmd, _ := aria2(t, f2.block+"12", filepath.Join(f2.dir, "spread"), "--seed-time=0", f2.torrentFile())
	waitExit(t, cmd, 60*time.Second)
	f2.checkFile("spread")
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

// qbittorrent runs qbittorrent-nox 4.5 with its own profile directory
// (DHT, LSD, PEX, UPnP, uTP and encryption off; legal notice accepted;
// bound to addr, as libtorrent allows one connection per IP), adding
// target (a .torrent or a magnet link) to save into dir.
func qbittorrent(t *testing.T, addr, dir, target string) {
	t.Helper()
	bin := testkit.Peer(t, "qbittorrent-nox")
	prof := t.TempDir()
	port := testkit.FreePort(t, "tcp", addr)
	webui := testkit.FreePort(t, "tcp", "127.0.0.1")
	conf := `[LegalNotice]
Accepted=true

[BitTorrent]
Session\DHTEnabled=false
Session\LSDEnabled=false
Session\PeXEnabled=false
Session\Encryption=2
Session\Port=` + strconv.Itoa(port) + `
Session\Interface=lo
Session\InterfaceName=lo
Session\InterfaceAddress=` + addr + `
Session\DefaultSavePath=` + dir + `
Session\BTProtocol=TCP
Session\QueueingSystemEnabled=false
Session\AddTorrentPaused=false

[Network]
PortForwardingEnabled=false

[Preferences]
Connection\UPnP=false
WebUI\Port=` + strconv.Itoa(webui) + `
WebUI\Address=127.0.0.1
Downloads\SavePath=` + dir + `
`
	cfgDir := filepath.Join(prof, "qBittorrent", "config")
	os.MkdirAll(cfgDir, 0o755)
	if err := os.WriteFile(filepath.Join(cfgDir, "qBittorrent.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(dir, 0o755)
	var out testkit.Buffer
	cmd := exec.Command(bin, "--profile="+prof, "--save-path="+dir, "--skip-dialog=true", target)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "HOME="+prof)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("qbittorrent-nox output:\n%s", out.String())
		}
	})
}

func waitFile(t *testing.T, path string, want []byte, d time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if got, err := os.ReadFile(path); err == nil && string(got) == string(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not complete in %v", what, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestInteropQBittorrent: qBittorrent 4.5 (libtorrent) downloads from our
// seed, from the .torrent and from a magnet link, and from a seed that
// spreads its pieces; our peer downloads from a
// qBittorrent seed over our UDP tracker.
func TestInteropQBittorrent(t *testing.T) {
	f := newFixture(t, 1<<20+99, 32<<10)
	tf := f.torrentFile()
	f.client("seed", 2, Config{Dir: filepath.Join(f.dir, "seed"), Seed: true}, nil)
	qbittorrent(t, f.block+"30", filepath.Join(f.dir, "qb"), tf)
	waitFile(t, filepath.Join(f.dir, "qb", "file.bin"), f.data, 60*time.Second, "qBittorrent from our seed")
	qbittorrent(t, f.block+"31", filepath.Join(f.dir, "qbmag"), f.m.Magnet().String())
	waitFile(t, filepath.Join(f.dir, "qbmag", "file.bin"), f.data, 60*time.Second, "qBittorrent from a magnet link")
	// From a seed that spreads its pieces (an upload limit).
	fs := newFixture(t, 1<<20+99, 32<<10)
	fs.client("seed", 2, Config{Dir: filepath.Join(fs.dir, "seed"), Seed: true, UploadLimit: 16 << 20}, nil)
	qbittorrent(t, fs.block+"33", filepath.Join(fs.dir, "qbspread"), fs.torrentFile())
	waitFile(t, filepath.Join(fs.dir, "qbspread", "file.bin"), fs.data, 60*time.Second, "qBittorrent from a spreading seed")

	f2 := newFixture(t, 1<<20+99, 32<<10)
	os.MkdirAll(filepath.Join(f2.dir, "qbseed"), 0o755)
	os.WriteFile(filepath.Join(f2.dir, "qbseed", "file.bin"), f2.data, 0o644)
	qbittorrent(t, f2.block+"32", filepath.Join(f2.dir, "qbseed"), f2.torrentFile())
	m := *f2.m
	m.Announce = f2.tracker.AnnounceURLs()[1] // ours over UDP, qBittorrent's over HTTP
	l := f2.client("leech", 3, Config{Torrent: &m}, nil)
	waitDone(t, l, 60*time.Second)
	f2.checkFile("leech")
}

// TestInteropAria2DHT: aria2c joins the DHT through our bootstrap node and
// finds our seed there from a magnet link without trackers.
func TestInteropAria2DHT(t *testing.T) {
	f := newFixture(t, 600<<10, 16<<10)
	boot, err := dht.New(dht.Config{Addr: f.block + "40:0"}, service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, boot)
	seedNode, err := dht.New(dht.Config{Addr: f.block + "2:0", Bootstrap: []string{boot.AddrPort().String()}}, service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, seedNode)
	m := *f.m
	m.Announce = ""
	f.client("seed", 2, Config{Torrent: &m, Dir: filepath.Join(f.dir, "seed"), Seed: true, DHT: seedNode}, nil)
	addr := f.block + "50"
	dir := filepath.Join(f.dir, "aria")
	cmd, _ := aria2(t, addr, dir, "--enable-dht=true", "--dht-listen-port="+strconv.Itoa(testkit.FreePort(t, "udp", addr)),
		"--dht-entry-point="+boot.AddrPort().String(), "--seed-time=0", "magnet:?xt=urn:btih:"+f.m.InfoHash.String())
	waitExit(t, cmd, 90*time.Second)
	f.checkFile("aria")
}
