package swarm

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/torrent/dht"
	"github.com/applayer/applayer/torrent/metainfo"
	"github.com/applayer/applayer/torrent/peerwire"
	"github.com/applayer/applayer/torrent/tracker"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// block returns a random 127.x.y. prefix so parallel test runs do not
// collide; each peer takes its own address in it.
func block() string { return fmt.Sprintf("127.%d.%d.", 100+rand.IntN(100), rand.IntN(250)) }

func randomData(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

type fixture struct {
	t       *testing.T
	dir     string
	data    []byte
	m       *metainfo.MetaInfo
	tracker *tracker.Tracker
	block   string
}

func newFixture(t *testing.T, size int, pieceLen int64) *fixture {
	f := &fixture{t: t, dir: t.TempDir(), data: randomData(size), block: block()}
	tr, err := tracker.New(tracker.Config{HTTPAddr: f.block + "1:0", UDPAddr: f.block + "1:0", Interval: 2e9, MinInterval: 1e9}, service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Shutdown(context.Background()) })
	f.tracker = tr
	seedDir := filepath.Join(f.dir, "seed")
	os.MkdirAll(seedDir, 0o755)
	if err := os.WriteFile(filepath.Join(seedDir, "file.bin"), f.data, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := metainfo.Create(filepath.Join(seedDir, "file.bin"), metainfo.CreateOptions{PieceLength: pieceLen, Trackers: [][]string{{tr.AnnounceURLs()[0]}}})
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
	return f
}

func (f *fixture) client(name string, host int, cfg Config, bus *trace.Bus) *Client {
	f.t.Helper()
	if cfg.Torrent == nil && cfg.Magnet == nil {
		cfg.Torrent = f.m
	}
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(f.dir, name)
	}
	cfg.Listen = fmt.Sprintf("%s%d:0", f.block, host)
	cfg.AnnounceInterval = 1e9
	c, err := New(cfg, service.Deps{Logger: testkit.Logger(f.t).With("peer", name), Trace: bus})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Shutdown(context.Background()) })
	return c
}

func waitDone(t *testing.T, c *Client, d time.Duration) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(d):
		t.Fatalf("download not complete after %v: %+v", d, c.Stats())
	}
}

func (f *fixture) checkFile(name string) {
	f.t.Helper()
	got, err := os.ReadFile(filepath.Join(f.dir, name, "file.bin"))
	if err != nil || !bytes.Equal(got, f.data) {
		f.t.Fatalf("%s's copy differs (%v)", name, err)
	}
}

// TestSwarmDownload: one seed, three leechers, through the tracker; the
// trace shows choke decisions and piece picks in every mode.
func TestSwarmDownload(t *testing.T) {
	f := newFixture(t, 3<<20+777, 64<<10)
	bus := trace.NewBus(nil)
	var mu sync.Mutex
	modes := map[string]int{}
	chokes := 0
	cancel := bus.Subscribe(trace.SinkFunc(func(e trace.Event) {
		mu.Lock()
		defer mu.Unlock()
		switch e.Proto {
		case "bittorrent/pick":
			for _, m := range []string{"random", "rarest", "partial", "end-game"} {
				if strings.Contains(e.Summary, "("+m+",") {
					modes[m]++
				}
			}
		case "bittorrent/choke":
			chokes++
		}
	}))
	defer cancel()
	seed := f.client("seed", 2, Config{Dir: filepath.Join(f.dir, "seed"), Seed: true}, bus)
	select {
	case <-seed.Done():
	default:
		t.Fatal("seed does not have its data")
	}
	var leechers []*Client
	for i := range 3 {
		leechers = append(leechers, f.client(fmt.Sprintf("leech%d", i), 3+i, Config{Seed: true, UploadLimit: 4 << 20}, bus))
	}
	for i, l := range leechers {
		waitDone(t, l, 60*time.Second)
		f.checkFile(fmt.Sprintf("leech%d", i))
	}
	mu.Lock()
	defer mu.Unlock()
	if modes["random"] == 0 || modes["rarest"] == 0 || chokes == 0 {
		t.Errorf("trace: pick modes %v, %d choke events", modes, chokes)
	}
	// Each leecher announces completed (within its announce tick).
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := f.tracker.Stats()
		if len(st) == 1 && st[0].Downloaded == 3 && st[0].Complete == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tracker saw %+v, want 3 completed and 4 seeders", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestResume: a leecher stopped half-way keeps its verified pieces and a
// new one on the same directory fetches only the rest.
func TestResume(t *testing.T) {
	f := newFixture(t, 1<<20, 16<<10)
	dir := filepath.Join(f.dir, "leech")
	os.MkdirAll(dir, 0o755)
	// Put the first 40 pieces in place, and a corrupt 41st.
	part := append([]byte(nil), f.data[:41*16384]...)
	part[40*16384+5] ^= 0xff
	os.WriteFile(filepath.Join(dir, "file.bin"), part, 0o644)
	f.client("seed", 2, Config{Dir: filepath.Join(f.dir, "seed"), Seed: true}, nil)
	l := f.client("leech", 3, Config{}, nil)
	if st := l.Stats(); st.Have != 40 {
		t.Fatalf("resume found %d pieces, want 40", st.Have)
	}
	waitDone(t, l, 30*time.Second)
	f.checkFile("leech")
	if d := l.Stats().Downloaded; d != int64(len(f.data)-40*16384) {
		t.Errorf("downloaded %d bytes, want only the %d missing", d, len(f.data)-40*16384)
	}
	// A clean stop ends with a stopped announce: the tracker forgets it.
	before := f.tracker.Stats()[0].Stopped
	if err := l.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := f.tracker.Stats()[0]; st.Stopped != before+1 || st.Complete != 1 {
		t.Errorf("after shutdown the tracker has %+v: want one more stopped and only the seed left", st)
	}
}

// TestMagnet: a leecher with only the magnet link gets the metadata from
// the seed (BEP 9), then the data.
func TestMagnet(t *testing.T) {
	f := newFixture(t, 600<<10, 16<<10)
	seed := f.client("seed", 2, Config{Dir: filepath.Join(f.dir, "seed"), Seed: true}, nil)
	mag := f.m.Magnet()
	mag.Trackers = nil
	mag.Peers = []string{seed.Addrs()[0].String()}
	l := f.client("leech", 3, Config{Magnet: mag}, nil)
	waitDone(t, l, 30*time.Second)
	f.checkFile("leech")
}

// TestCorruptPeerBanned: a peer that answers requests with garbage is
// banned and the download still completes from the honest seed.
func TestCorruptPeerBanned(t *testing.T) {
	f := newFixture(t, 512<<10, 16<<10)
	f.client("seed", 2, Config{Dir: filepath.Join(f.dir, "seed"), Seed: true, UploadLimit: 256 << 10}, nil)
	bad := startCorruptPeer(t, f.block+"9", f.m)
	l := f.client("leech", 3, Config{Peers: []string{bad.String()}}, nil)
	waitDone(t, l, 30*time.Second)
	f.checkFile("leech")
	if !l.Banned(bad.Addr()) {
		t.Errorf("corrupt peer %s not banned; stats %+v", bad, l.Stats())
	}
}

// startCorruptPeer runs a peer that has every piece and sends zeros for
// each block asked.
func startCorruptPeer(t *testing.T, addr string, m *metainfo.MetaInfo) netip.AddrPort {
	ln, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				h, err := peerwire.ReadHandshake(c)
				if err != nil {
					return
				}
				var me peerwire.Handshake
				me.InfoHash = h.InfoHash
				copy(me.PeerID[:], "-XX0001-corruptpeer!")
				c.Write(me.Bytes())
				c.Write(peerwire.Message{ID: peerwire.Bitfield, Bitfield: allPieces(m.Info.NumPieces())}.Bytes())
				c.Write(peerwire.Message{ID: peerwire.Unchoke}.Bytes())
				for {
					msg, _, err := peerwire.ReadMessage(c, 1<<20, nil)
					if err != nil {
						return
					}
					if msg.ID == peerwire.Request && !msg.KeepAlive {
						c.Write(peerwire.Message{ID: peerwire.Piece, Index: msg.Index, Begin: msg.Begin, Block: make([]byte, msg.Length)}.Bytes())
					}
				}
			}()
		}
	}()
	ap, _ := netip.ParseAddrPort(ln.Addr().String())
	return ap
}

// TestPEX: B knows only A; A is connected to the seed S and tells B about
// it (BEP 11), so B connects to S. With the private flag, nobody tells.
func TestPEX(t *testing.T) {
	for _, private := range []bool{false, true} {
		t.Run(fmt.Sprintf("private=%v", private), func(t *testing.T) {
			f := newFixture(t, 256<<10, 16<<10)
			m := *f.m
			if private {
				m.Info.Private = true // the info-hash is not checked between our own peers here
			}
			s := f.client("seed", 2, Config{Torrent: &m, Dir: filepath.Join(f.dir, "seed"), Seed: true, UploadLimit: 64 << 10}, nil)
			a := f.client("a", 3, Config{Torrent: &m, Peers: []string{s.Addrs()[0].String()}, Seed: true, UploadLimit: 64 << 10}, nil)
			time.Sleep(300 * time.Millisecond)
			m2 := m
			m2.Announce = "" // B does not use the tracker
			b := f.client("b", 4, Config{Torrent: &m2, Peers: []string{a.Addrs()[0].String()}, Seed: true}, nil)
			seedAddr, _ := netip.ParseAddrPort(s.Addrs()[0].String())
			learned := func() bool {
				b.mu.Lock()
				defer b.mu.Unlock()
				_, ok := b.known[seedAddr]
				return ok
			}
			deadline := time.Now().Add(5 * time.Second)
			if private {
				deadline = time.Now().Add(2 * time.Second)
			}
			for !learned() && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if learned() == private {
				t.Fatalf("private %v: B learned the seed %s by PEX: %v", private, seedAddr, learned())
			}
		})
	}
}

// TestDHTSwarm: no tracker at all: the seed announces to the DHT and a
// leecher starting from a bare magnet link finds it there (BEP 5), then
// fetches the metadata (BEP 9) and the data.
func TestDHTSwarm(t *testing.T) {
	f := newFixture(t, 300<<10, 16<<10)
	node := func(host int, boot []string) *dht.Node {
		n, err := dht.New(dht.Config{Addr: fmt.Sprintf("%s%d:0", f.block, host), Bootstrap: boot, QueryTimeout: time.Second}, service.Deps{Logger: testkit.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return testkit.Start(t, n)
	}
	boot := node(40, nil)
	bootAddr := []string{boot.AddrPort().String()}
	m := *f.m
	m.Announce = ""
	f.client("seed", 2, Config{Torrent: &m, Dir: filepath.Join(f.dir, "seed"), Seed: true, DHT: node(2, bootAddr)}, nil)
	l := f.client("leech", 3, Config{Magnet: &metainfo.Magnet{InfoHash: f.m.InfoHash}, DHT: node(3, bootAddr)}, nil)
	waitDone(t, l, 30*time.Second)
	f.checkFile("leech")
}

// TestSuperSeed: a seed with an upload limit spreads its pieces: until
// every piece has been uploaded once it uploads none twice; the leechers,
// told of a few pieces each, trade them among themselves (bytes from each
// other, not only from the seed); once every piece is in the swarm the
// seed announces the rest and stops spreading; everyone completes. A seed
// without a limit, or with no_super_seed, announces everything at once.
func TestSuperSeed(t *testing.T) {
	f := newFixture(t, 1<<20, 16<<10)
	seed := f.client("seed", 2, Config{Dir: filepath.Join(f.dir, "seed"), Seed: true, UploadLimit: 1 << 20}, nil)
	var leechers []*Client
	for i := range 3 {
		leechers = append(leechers, f.client(fmt.Sprintf("leech%d", i), 3+i, Config{Seed: true, UploadLimit: 512 << 10}, nil))
	}
	var fromPeers int64
	for i, l := range leechers {
		waitDone(t, l, 60*time.Second)
		f.checkFile(fmt.Sprintf("leech%d", i))
		for ip, n := range l.DownloadedFrom() {
			if ip != seed.local {
				fromPeers += n
			}
		}
	}
	seed.mu.Lock()
	s := *seed.super
	seed.mu.Unlock()
	if s.outOnce != 64 || s.dupEarly != 0 || !s.done {
		t.Errorf("seed: %d of 64 pieces out once, %d uploaded twice before that, spreading done %v; want 64, 0, true", s.outOnce, s.dupEarly, s.done)
	}
	if fromPeers == 0 {
		t.Error("the leechers got nothing from each other")
	}
	for _, cfg := range []Config{{Seed: true}, {Seed: true, UploadLimit: 1 << 20, NoSuperSeed: true}} {
		cfg.Dir = filepath.Join(f.dir, "seed")
		c := f.client("plain", 9, cfg, nil)
		c.mu.Lock()
		if c.super != nil {
			t.Errorf("%+v: spreading", cfg)
		}
		c.mu.Unlock()
	}
}

// TestChokeRoundsOnTime: the choker runs every ChokeInterval, not in whole
// ticks of the client's one-second housekeeping (a 1 s interval counted in
// ticks came every 1-2 s, which stretched the lab's scaled rounds).
func TestChokeRoundsOnTime(t *testing.T) {
	f := newFixture(t, 64<<10, 16<<10)
	bus := trace.NewBus(nil)
	var mu sync.Mutex
	var rounds []time.Time
	cancel := bus.Subscribe(trace.SinkFunc(func(e trace.Event) {
		if e.Proto == "bittorrent/choke" && strings.HasPrefix(e.Summary, "unchoke [") {
			mu.Lock()
			rounds = append(rounds, time.Now())
			mu.Unlock()
		}
	}))
	defer cancel()
	f.client("seed", 2, Config{Dir: filepath.Join(f.dir, "seed"), Seed: true, ChokeInterval: config.Duration(200 * time.Millisecond)}, bus)
	time.Sleep(2100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	// Ten rounds in 2 s; a loaded machine may drop a few ticks.
	if len(rounds) < 7 || len(rounds) > 12 {
		t.Errorf("%d choke rounds in 2.1 s at a 200 ms interval, want about 10", len(rounds))
	}
}

// TestSimultaneousOpen: two peers dial each other at once, and each has
// registered its own outgoing connection when the other's arrives. Both
// must keep the same one, the connection the lower peer id dialled;
// before, each dropped the other's, and they stayed apart until the next
// dial, 10 s on.
func TestSimultaneousOpen(t *testing.T) {
	f := newFixture(t, 64<<10, 16<<10)
	m, err := metainfo.Create(filepath.Join(f.dir, "seed", "file.bin"), metainfo.CreateOptions{PieceLength: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	// No trackers: the two dial nobody themselves.
	a := f.client("a", 2, Config{Torrent: m}, nil)
	b := f.client("b", 3, Config{Torrent: m}, nil)
	aAddr, bAddr := netip.MustParseAddrPort(a.Addrs()[0].String()), netip.MustParseAddrPort(b.Addrs()[0].String())
	a1, b1 := net.Pipe() // a dialled b
	b2, a2 := net.Pipe() // b dialled a
	var wg sync.WaitGroup
	defer func() {
		for _, c := range []net.Conn{a1, b1, a2, b2} {
			c.Close()
		}
		wg.Wait()
	}()
	goRun := func(c *Client, nc net.Conn, addr netip.AddrPort, h peerwire.Handshake, outgoing bool) {
		wg.Add(1)
		go func() { defer wg.Done(); c.run(nc, addr, h, outgoing) }()
	}
	peers := func(c *Client) (n int, outgoing bool) {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, p := range c.peers {
			n, outgoing = n+1, p.outgoing
		}
		return n, outgoing
	}
	waitPeers := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				na, _ := peers(a)
				nb, _ := peers(b)
				t.Fatalf("%s: a has %d peers, b %d", what, na, nb)
			}
		}
	}
	goRun(a, a1, bAddr, b.handshake(), true)
	goRun(b, b2, aAddr, a.handshake(), true)
	waitPeers("each its own outgoing", func() bool {
		na, _ := peers(a)
		nb, _ := peers(b)
		return na == 1 && nb == 1
	})
	goRun(b, b1, aAddr, a.handshake(), false)
	goRun(a, a2, bAddr, b.handshake(), false)
	aLower := bytes.Compare(a.peerID[:], b.peerID[:]) < 0
	want := func() bool {
		na, ao := peers(a)
		nb, bo := peers(b)
		return na == 1 && nb == 1 && ao == aLower && bo == !aLower
	}
	waitPeers("after the crossing connections", want)
	time.Sleep(300 * time.Millisecond)
	if !want() {
		na, ao := peers(a)
		nb, bo := peers(b)
		t.Fatalf("a: %d peers (outgoing %v), b: %d (outgoing %v); want one each, dialled by %s", na, ao, nb, bo, map[bool]string{true: "a", false: "b"}[aLower])
	}
}
