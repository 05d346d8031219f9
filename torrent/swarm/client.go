// Package swarm is a BitTorrent peer: it joins a torrent's swarm through
// its trackers, connects to neighbours and accepts their connections,
// downloads pieces with the Picker (rarest first) and uploads with the
// Choker (tit-for-tat), verifies every piece's SHA-1, bans peers that send
// bad data, limits rates with token buckets and resumes from the data
// already on disk. It speaks BEP 3, the fast extension (BEP 6), the
// extension protocol (BEP 10) and metadata exchange (BEP 9), so it can
// start from a magnet link.
//
// Every choke decision ("bittorrent/choke") and piece pick
// ("bittorrent/pick") is published on the trace bus.
package swarm

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/internal/transport"
	"github.com/applayer/applayer/torrent/dht"
	"github.com/applayer/applayer/torrent/metainfo"
	"github.com/applayer/applayer/torrent/peerwire"
	"github.com/applayer/applayer/torrent/storage"
	"github.com/applayer/applayer/torrent/tracker"
)

// Config configures a Client: one torrent, one listening address.
type Config struct {
	// Torrent is the torrent to fetch or seed; nil when starting from Magnet.
	Torrent *metainfo.MetaInfo `json:"-"`
	// Magnet starts a download from a magnet link: the metadata comes from
	// peers (BEP 9).
	Magnet *metainfo.Magnet `json:"-"`
	// Dir is where the data lives (DIR/NAME).
	Dir string `json:"dir"`
	// Listen is the address to accept peers on and to dial and announce
	// from, e.g. "127.0.0.2:6881" (port 0 picks one).
	Listen string `json:"listen"`
	// Trackers are added to the torrent's own.
	Trackers []string `json:"trackers,omitempty"`
	// Peers are dialled at start (host:port), besides the trackers' peers.
	Peers []string `json:"peers,omitempty"`
	// Seed keeps the client serving after the download completes.
	Seed bool `json:"seed,omitempty"`
	// UploadLimit and DownloadLimit cap this torrent, in bytes/s (0: none).
	UploadLimit   int `json:"upload_limit,omitempty"`
	DownloadLimit int `json:"download_limit,omitempty"`
	// GlobalUpload and GlobalDownload, when set, are shared by every
	// client of the process.
	GlobalUpload   *Bucket `json:"-"`
	GlobalDownload *Bucket `json:"-"`
	// MaxPeers caps connections. Default 50.
	MaxPeers int `json:"max_peers,omitempty"`
	// MaxQueue caps our outstanding requests to one peer; the queue depth
	// adapts to the peer's rate up to this. Default 128.
	MaxQueue int `json:"max_queue,omitempty"`
	// MaxPeerRequests caps the requests a peer may queue with us (reqq).
	// Default 250.
	MaxPeerRequests int `json:"max_peer_requests,omitempty"`
	// HandshakeTimeout bounds connecting and the handshake. Default 10s.
	HandshakeTimeout config.Duration `json:"handshake_timeout,omitempty"`
	// IdleTimeout drops a peer that sends nothing, not even a keep-alive,
	// for this long. Default 3m.
	IdleTimeout config.Duration `json:"idle_timeout,omitempty"`
	// RequestTimeout gives up on a block not delivered in this long and
	// asks someone else. Default 30s.
	RequestTimeout config.Duration `json:"request_timeout,omitempty"`
	// AnnounceInterval overrides the trackers' interval when shorter (for
	// tests and the lab). Default: the tracker's.
	AnnounceInterval config.Duration `json:"announce_interval,omitempty"`
	// RandomFirst is the picker's number of random first pieces. Default 4.
	RandomFirst int `json:"random_first,omitempty"`
	// Slots is the choker's number of regular unchokes. Default 4.
	Slots int `json:"slots,omitempty"`
	// ChokeInterval is how often the choker re-evaluates (default 10s)
	// and OptimisticEvery how often the optimistic unchoke rotates
	// (default 30s); the lab's experiments scale both down together.
	ChokeInterval   config.Duration `json:"choke_interval,omitempty"`
	OptimisticEvery config.Duration `json:"optimistic_every,omitempty"`
	// NoTitForTat gives the regular unchokes to interested peers at random
	// rather than to those uploading to us fastest (a lesson, not a
	// setting for real swarms).
	NoTitForTat bool `json:"no_tit_for_tat,omitempty"`
	// FreeRider never uploads: every peer stays choked. It exists for the
	// lab's free-rider lesson.
	FreeRider bool `json:"free_rider,omitempty"`
	// SeedChoking is how a seed gives its regular slots: "fastest_upload"
	// (the default: to the peers it uploads to fastest) or "round_robin"
	// (in turn, each for a quota of 20 pieces and 6 choke intervals:
	// libtorrent's default seed choker).
	SeedChoking string `json:"seed_choking,omitempty"`
	// NoSuperSeed turns off the initial seed's piece spreading (see
	// superseed.go), which is on for a seed that starts complete with an
	// UploadLimit.
	NoSuperSeed bool `json:"no_super_seed,omitempty"`
	// Seed for the random choices (picker, choker); 0 picks one.
	RandSeed uint64 `json:"-"`
	// DHT, when set, is a started DHT node the client announces to and
	// finds peers through (BEP 5), for torrents that are not private.
	DHT *dht.Node `json:"-"`
	// DHTInterval is how often the DHT is asked again. Default 1 minute.
	DHTInterval config.Duration `json:"dht_interval,omitempty"`
}

func (c *Config) defaults() {
	if c.MaxPeers <= 0 {
		c.MaxPeers = 50
	}
	if c.MaxQueue <= 0 {
		c.MaxQueue = 128
	}
	if c.MaxPeerRequests <= 0 {
		c.MaxPeerRequests = 250
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = config.Duration(10 * time.Second)
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = config.Duration(3 * time.Minute)
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = config.Duration(30 * time.Second)
	}
	if c.RandomFirst <= 0 {
		c.RandomFirst = 4
	}
	if c.Slots <= 0 {
		c.Slots = 4
	}
	if c.DHTInterval <= 0 {
		c.DHTInterval = config.Duration(time.Minute)
	}
}

// The seed chokers (Config.SeedChoking).
const (
	SeedFastestUpload = "fastest_upload"
	SeedRoundRobin    = "round_robin"
)

// ClientName is what the client calls itself (extension handshake v, and
// the peer id prefix, Azureus style).
const ClientName = "applayer 0.1"

const peerIDPrefix = "-AL0001-"

// Client is a BitTorrent peer for one torrent. It is a service.Service.
type Client struct {
	cfg    Config
	deps   service.Deps
	log    *slog.Logger
	trace  *trace.Bus
	m      *metrics
	peerID [20]byte
	ih     metainfo.Hash
	local  netip.Addr
	upB    *Bucket
	downB  *Bucket
	tc     *tracker.Client

	mu                   sync.Mutex
	info                 *metainfo.Info
	infoRaw              []byte
	store                *storage.Storage
	picker               *Picker
	choker               *Choker
	rnd                  *mrand.Rand
	peers                map[int]*peerConn
	nextID               int
	known                map[netip.AddrPort]time.Time // candidates, and when last tried
	downGone             map[netip.Addr]int64         // bytes from peers since disconnected
	banned               map[netip.Addr]bool
	strikes              map[netip.Addr]int
	buffers              map[int]*pieceBuf
	meta                 *metaFetch
	super                *superSeed // nil unless spreading pieces as an initial seed
	lastRnd              time.Time
	complete             bool
	doneCh               chan struct{}
	uploaded, downloaded int64
	startLeft            int64
	listenPort           uint16

	ln      net.Listener
	srv     *transport.StreamServer
	wg      sync.WaitGroup
	stop    chan struct{}
	wake    chan struct{}
	once    service.Once
	started bool
}

type pieceBuf struct {
	data []byte
	from map[int]bool // peers that sent blocks of it
}

// New returns a client for cfg; Start opens the data and joins the swarm.
func New(cfg Config, deps service.Deps) (*Client, error) {
	if cfg.Torrent == nil && cfg.Magnet == nil {
		return nil, errors.New("swarm: needs a torrent or a magnet link")
	}
	if cfg.Dir == "" {
		return nil, errors.New("swarm: needs a data directory")
	}
	if cfg.Listen == "" {
		return nil, errors.New("swarm: needs a listen address")
	}
	ap, err := netip.ParseAddrPort(cfg.Listen)
	if err != nil {
		return nil, config.Errorf("listen", "%v", err)
	}
	switch cfg.SeedChoking {
	case "", SeedFastestUpload, SeedRoundRobin:
	default:
		return nil, config.Errorf("seed_choking", "%q is neither %q nor %q", cfg.SeedChoking, SeedFastestUpload, SeedRoundRobin)
	}
	cfg.defaults()
	deps = deps.Defaults()
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg: cfg, deps: deps, log: deps.Logger, trace: deps.Trace, m: m,
		local:  ap.Addr(),
		peers:  map[int]*peerConn{},
		known:  map[netip.AddrPort]time.Time{},
		banned: map[netip.Addr]bool{}, strikes: map[netip.Addr]int{}, downGone: map[netip.Addr]int64{},
		buffers: map[int]*pieceBuf{},
		doneCh:  make(chan struct{}),
		stop:    make(chan struct{}),
		wake:    make(chan struct{}, 1),
		upB:     NewBucket(cfg.UploadLimit, 0),
		downB:   NewBucket(cfg.DownloadLimit, 0),
	}
	copy(c.peerID[:], peerIDPrefix)
	rand.Read(c.peerID[len(peerIDPrefix):])
	seed := cfg.RandSeed
	if seed == 0 {
		var b [8]byte
		rand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:])
	}
	c.rnd = mrand.New(mrand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	c.choker = NewChoker(mrand.New(mrand.NewPCG(seed+1, seed)))
	c.choker.Slots = cfg.Slots
	c.choker.Random = cfg.NoTitForTat
	c.choker.RoundRobin = cfg.SeedChoking == SeedRoundRobin
	if cfg.ChokeInterval > 0 {
		c.choker.Interval = cfg.ChokeInterval.D()
	}
	if cfg.OptimisticEvery > 0 {
		c.choker.OptimisticEvery = cfg.OptimisticEvery.D()
	}
	if cfg.Torrent != nil {
		c.ih = cfg.Torrent.InfoHash
	} else {
		c.ih = cfg.Magnet.InfoHash
	}
	c.tc = &tracker.Client{LocalAddr: c.local, Timeout: 10 * time.Second, Now: deps.Now}
	return c, nil
}

// Name implements service.Service.
func (c *Client) Name() string { return "torrent-peer" }

// InfoHash is the torrent's info-hash.
func (c *Client) InfoHash() metainfo.Hash { return c.ih }

// Done is closed when every piece is verified.
func (c *Client) Done() <-chan struct{} { return c.doneCh }

// Addrs returns the peer listener's address.
func (c *Client) Addrs() []net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln == nil {
		return nil
	}
	return []net.Addr{c.ln.Addr()}
}

// Start opens the data (hashing what is on disk), binds the listener and
// starts announcing, dialling and choking.
func (c *Client) Start(ctx context.Context) error {
	c.mu.Lock()
	if c.started {
		c.mu.Unlock()
		return errors.New("swarm: already started")
	}
	c.mu.Unlock()
	if c.cfg.Torrent != nil {
		if err := c.setInfo(&c.cfg.Torrent.Info, c.cfg.Torrent.InfoBytes); err != nil {
			return err
		}
	}
	ln, err := transport.ListenConfig{}.Listen(ctx, "tcp", c.cfg.Listen)
	if err != nil {
		return fmt.Errorf("swarm: %w", err)
	}
	// Incoming peers: the shared stream server accepts; banned addresses
	// are refused at accept; a few slots beyond MaxPeers let handshakes
	// in progress (and duplicates about to be dropped) through.
	c.srv = transport.NewStreamServer(transport.StreamConfig{
		MaxConns: c.cfg.MaxPeers + 8, MaxConnsPerIP: 8, Logger: c.log,
		Refuse: func(remote netip.AddrPort) bool { return c.Banned(remote.Addr().Unmap()) },
	}, transport.HandlerFunc(func(_ context.Context, tc *transport.Conn) { c.ServeConn(tc) }))
	c.mu.Lock()
	c.ln = ln
	c.listenPort = uint16(ln.Addr().(*net.TCPAddr).Port)
	c.started = true
	for _, p := range c.cfg.Peers {
		if ap, err := netip.ParseAddrPort(p); err == nil {
			c.known[ap] = time.Time{}
		} else {
			c.log.Warn("swarm: ignoring peer", "peer", p, "err", err)
		}
	}
	if c.cfg.Magnet != nil {
		for _, p := range c.cfg.Magnet.Peers {
			if ap, err := netip.ParseAddrPort(p); err == nil {
				c.known[ap] = time.Time{}
			}
		}
	}
	c.mu.Unlock()
	if err := c.srv.Start(ln); err != nil {
		return fmt.Errorf("swarm: %w", err)
	}
	c.wg.Add(2)
	if c.cfg.DHT != nil {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.dhtLoop() }()
	}
	go func() { defer c.wg.Done(); c.announceLoop() }()
	go func() { defer c.wg.Done(); c.tickLoop() }()
	return nil
}

// setInfo installs the info dictionary (from the .torrent or from peers),
// opens the storage and scans it to resume.
func (c *Client) setInfo(info *metainfo.Info, raw []byte) error {
	st, err := storage.Open(info, c.cfg.Dir)
	if err != nil {
		return err
	}
	have, err := st.Scan(nil)
	if err != nil {
		st.Close()
		return err
	}
	bf := NewBitfield(info.NumPieces())
	left := info.TotalLength()
	for i, h := range have {
		if h {
			bf.Set(i)
			left -= info.PieceSize(i)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.info, c.infoRaw, c.store = info, raw, st
	c.picker = NewPicker(info.TotalLength(), int(info.PieceLength), peerwire.BlockSize, bf, c.rnd)
	c.picker.RandomFirst = c.cfg.RandomFirst
	c.choker.Quota = 20 * info.PieceLength // libtorrent's seeding_piece_quota
	c.startLeft = left
	c.log.Info("swarm: data checked", "name", info.Name, "have", bf.Count(), "pieces", info.NumPieces())
	if c.picker.Done() {
		c.markCompleteLocked()
		if c.cfg.UploadLimit > 0 && !c.cfg.NoSuperSeed {
			c.super = newSuperSeed(info.NumPieces(), int(info.PieceLength))
		}
	}
	for _, p := range c.peers {
		p.infoArrivedLocked()
	}
	return nil
}

func (c *Client) markCompleteLocked() {
	if c.complete {
		return
	}
	c.complete = true
	if c.store != nil {
		if err := c.store.Complete(); err != nil {
			c.log.Error("swarm: finishing files", "err", err)
		}
	}
	close(c.doneCh)
}

func (c *Client) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// ServeConn runs an incoming peer connection to its end.
func (c *Client) ServeConn(nc net.Conn) {
	remote, _ := netip.ParseAddrPort(nc.RemoteAddr().String())
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	c.mu.Lock()
	full := len(c.peers) >= c.cfg.MaxPeers
	banned := c.banned[remote.Addr()]
	c.mu.Unlock()
	if full || banned {
		nc.Close()
		return
	}
	nc.SetDeadline(c.deps.Now().Add(c.cfg.HandshakeTimeout.D()))
	h, err := peerwire.ReadHandshake(nc)
	if err != nil || h.InfoHash != c.ih || h.PeerID == c.peerID {
		nc.Close()
		return
	}
	if _, err := nc.Write(c.handshake().Bytes()); err != nil {
		nc.Close()
		return
	}
	c.run(nc, remote, h, false)
}

func (c *Client) handshake() peerwire.Handshake {
	h := peerwire.Handshake{InfoHash: c.ih, PeerID: c.peerID}
	h.SetExtensions(true, true, c.cfg.DHT != nil)
	return h
}

// dial connects to a peer and runs the connection.
func (c *Client) dial(ap netip.AddrPort) {
	d := net.Dialer{Timeout: c.cfg.HandshakeTimeout.D(), LocalAddr: &net.TCPAddr{IP: c.local.AsSlice()}}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.HandshakeTimeout.D())
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	nc, err := d.DialContext(ctx, "tcp", ap.String())
	if err != nil {
		c.log.Debug("swarm: dial", "peer", ap, "err", err)
		return
	}
	nc.SetDeadline(c.deps.Now().Add(c.cfg.HandshakeTimeout.D()))
	if _, err := nc.Write(c.handshake().Bytes()); err != nil {
		nc.Close()
		return
	}
	h, err := peerwire.ReadHandshake(nc)
	if err != nil || h.InfoHash != c.ih || h.PeerID == c.peerID {
		nc.Close()
		return
	}
	c.run(nc, ap, h, true)
}

// Shutdown announces stopped, closes every connection and the files.
func (c *Client) Shutdown(ctx context.Context) error {
	return c.once.Do(ctx, func(ctx context.Context) error {
		c.mu.Lock()
		started := c.started
		c.mu.Unlock()
		if !started {
			return nil
		}
		close(c.stop)
		c.mu.Lock()
		for _, p := range c.peers {
			p.nc.Close()
		}
		c.mu.Unlock()
		// Peer connections are long-lived: close them rather than wait.
		srvErr := c.srv.Close()
		done := make(chan struct{})
		go func() { c.wg.Wait(); close(done) }()
		err := srvErr
		select {
		case <-done:
		case <-ctx.Done():
			err = fmt.Errorf("swarm: shutdown: %w", ctx.Err())
		}
		c.tc.Close()
		c.mu.Lock()
		if c.store != nil {
			err = errors.Join(err, c.store.Close())
		}
		c.mu.Unlock()
		return err
	})
}

func (c *Client) trackers() []string {
	var out []string
	seen := map[string]bool{}
	add := func(u string) {
		if u != "" && !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	if c.cfg.Torrent != nil {
		for _, u := range c.cfg.Torrent.Trackers() {
			add(u)
		}
	}
	if c.cfg.Magnet != nil {
		for _, u := range c.cfg.Magnet.Trackers {
			add(u)
		}
	}
	for _, u := range c.cfg.Trackers {
		add(u)
	}
	return out
}

// announceLoop announces to every tracker: started at first, then every
// interval (sooner while we have few peers), completed once, stopped at
// the end.
func (c *Client) announceLoop() {
	urls := c.trackers()
	if len(urls) == 0 {
		return
	}
	next := make([]time.Time, len(urls))
	startedSent := make([]bool, len(urls))
	completedSent := make([]bool, len(urls))
	c.mu.Lock()
	wasComplete := c.complete
	c.mu.Unlock()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		now := c.deps.Now()
		c.mu.Lock()
		complete := c.complete
		npeers := len(c.peers)
		c.mu.Unlock()
		for i, u := range urls {
			ev := tracker.EventNone
			switch {
			case !startedSent[i]:
				ev = tracker.EventStarted
			case complete && !wasComplete && !completedSent[i]:
				ev = tracker.EventCompleted
			case now.Before(next[i]):
				continue
			}
			res, err := c.announce(u, ev)
			if err != nil {
				c.log.Debug("swarm: announce", "tracker", u, "err", err)
				next[i] = now.Add(15 * time.Second)
				continue
			}
			startedSent[i] = true
			if ev == tracker.EventCompleted {
				completedSent[i] = true
			}
			iv := res.Interval
			if ai := c.cfg.AnnounceInterval.D(); ai > 0 && (iv <= 0 || ai < iv) {
				iv = ai
			}
			if npeers < 5 && !complete && res.MinInterval > 0 && res.MinInterval < iv {
				iv = res.MinInterval
			}
			if iv <= 0 {
				iv = 2 * time.Minute
			}
			next[i] = now.Add(iv)
		}
		select {
		case <-c.stop:
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			for i, u := range urls {
				if startedSent[i] {
					c.tc.Announce(ctx, u, c.announceReq(tracker.EventStopped))
				}
			}
			cancel()
			return
		case <-tick.C:
		}
	}
}

// dhtLoop announces the torrent to the DHT and adds the peers it finds:
// at once, again after 2, 4, 8... s until a lookup finds peers (a seed:
// until its announce is stored), then every DHTInterval.
func (c *Client) dhtLoop() {
	wait := 2 * time.Second
	for {
		c.mu.Lock()
		allowed := c.pexAllowedLocked() // the same rule: not for private torrents
		port := c.listenPort
		c.mu.Unlock()
		if !allowed {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		go func() {
			select {
			case <-c.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		peers, stored := c.cfg.DHT.Announce(ctx, dht.ID(c.ih), int(port))
		cancel()
		c.addCandidates(peers)
		c.log.Debug("swarm: dht", "peers", len(peers), "stored_at", stored)
		c.mu.Lock()
		complete := c.complete
		c.mu.Unlock()
		// A seed is done once its announce is stored; a leecher keeps
		// looking (backing off from 2 s) until the lookup finds peers.
		if len(peers) > 0 || (complete && stored > 0) {
			wait = c.cfg.DHTInterval.D()
		} else {
			wait = min(2*wait, c.cfg.DHTInterval.D())
		}
		t := time.NewTimer(wait)
		select {
		case <-c.stop:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// addCandidates adds peer addresses to dial.
func (c *Client) addCandidates(peers []netip.AddrPort) {
	self := netip.AddrPortFrom(c.local, c.listenPort)
	c.mu.Lock()
	for _, ap := range peers {
		if ap == self || len(c.known) >= maxKnown {
			continue
		}
		if _, ok := c.known[ap]; !ok {
			c.known[ap] = time.Time{}
		}
	}
	c.mu.Unlock()
	c.kick()
}

func (c *Client) announceReq(ev tracker.Event) tracker.AnnounceRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	left := int64(1) // unknown size (magnet): not a seed
	if c.info != nil {
		left = 0
		for i := range c.info.NumPieces() {
			if !c.picker.Have().Has(i) {
				left += c.info.PieceSize(i)
			}
		}
	}
	nw := 50
	if c.complete {
		nw = 20
	}
	return tracker.AnnounceRequest{
		InfoHash: tracker.InfoHash(c.ih), PeerID: tracker.PeerID(c.peerID),
		Addr:     netip.AddrPortFrom(c.local, c.listenPort),
		Uploaded: c.uploaded, Downloaded: c.downloaded, Left: left, Event: ev, NumWant: nw,
	}
}

func (c *Client) announce(u string, ev tracker.Event) (tracker.AnnounceResult, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	res, err := c.tc.Announce(ctx, u, c.announceReq(ev))
	if err != nil {
		return res, err
	}
	c.m.announces.Inc()
	self := netip.AddrPortFrom(c.local, c.listenPort)
	c.mu.Lock()
	for _, p := range res.Peers {
		if p.Addr == self || p.Addr.Addr().IsUnspecified() {
			continue
		}
		if _, ok := c.known[p.Addr]; !ok {
			c.known[p.Addr] = time.Time{}
		}
	}
	c.mu.Unlock()
	c.kick()
	c.log.Debug("swarm: announced", "tracker", u, "event", ev, "peers", len(res.Peers))
	return res, nil
}

// tickLoop runs once a second (and when kicked): dial new peers, expire
// stalled requests, send keep-alives; and it re-runs the choker on its own
// ticker, every choke interval (10 s), the first round at the first tick
// or kick. (Counting the interval in whole ticks would make a round late
// by up to a tick: 1 s rounds every 1-2 s.)
func (c *Client) tickLoop() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	choke := time.NewTicker(c.choker.Interval)
	defer choke.Stop()
	first := true
	for {
		due := first
		select {
		case <-c.stop:
			return
		case <-tick.C:
		case <-c.wake:
		case <-choke.C:
			due = true
		}
		now := c.deps.Now()
		if due {
			c.rechoke(now)
			first = false
		}
		c.maintain(now)
	}
}

// redialAfter is how long a candidate address rests after a dial before
// the next one.
const redialAfter = 10 * time.Second

// maintain dials candidates and times out requests.
func (c *Client) maintain(now time.Time) {
	c.mu.Lock()
	var toDial []netip.AddrPort
	connected := map[netip.AddrPort]bool{}
	for _, p := range c.peers {
		connected[p.addr] = true
		p.expireRequestsLocked(now)
		p.keepAliveLocked(now)
		p.pexLocked(now)
		p.fillRequestsLocked()
	}
	wantMore := !c.complete || c.cfg.Seed
	if wantMore {
		slots := c.cfg.MaxPeers - len(c.peers)
		cands := make([]netip.AddrPort, 0, len(c.known))
		for ap := range c.known {
			cands = append(cands, ap)
		}
		sort.Slice(cands, func(i, j int) bool { return cands[i].String() < cands[j].String() })
		for _, ap := range cands {
			if slots <= 0 {
				break
			}
			last := c.known[ap]
			if connected[ap] || c.banned[ap.Addr()] || (!last.IsZero() && now.Sub(last) < redialAfter) {
				continue
			}
			if c.complete && !c.cfg.Seed {
				continue
			}
			c.known[ap] = now
			toDial = append(toDial, ap)
			slots--
		}
	}
	c.mu.Unlock()
	for _, ap := range toDial {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.dial(ap) }()
	}
}

// rechoke runs one choker round and applies it.
func (c *Client) rechoke(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ps []ChokePeer
	for id, p := range c.peers {
		down, up := p.chokeRates(now)
		p.markRoundLocked(now)
		ps = append(ps, ChokePeer{ID: id, Interested: p.peerInterested, AmInterested: p.amInterested,
			DownRate: down, UpRate: up, Sent: p.down.Total(), LastBlock: p.lastBlock, Connected: p.connected,
			Unchoked: !p.amChoking, UnchokedAt: p.unchokedAt, SinceUnchoke: p.up.Total() - p.upAtUnchoke})
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].ID < ps[j].ID })
	d := c.choker.Decide(now, ps, c.complete)
	if c.cfg.FreeRider {
		d = ChokeDecision{Unchoked: map[int]bool{}, Optimistic: -1, Reason: "free rider: uploads to nobody"}
	}
	for id, p := range c.peers {
		p.setChokedLocked(!d.Unchoked[id])
	}
	if c.trace.Enabled() {
		c.trace.Publish(trace.Event{Type: trace.State, Proto: "bittorrent/choke", From: c.selfAddr(), Summary: c.describeChoke(d)})
	}
}

func (c *Client) selfAddr() string { return netip.AddrPortFrom(c.local, c.listenPort).String() }

func (c *Client) describeChoke(d ChokeDecision) string {
	name := func(id int) string {
		if p := c.peers[id]; p != nil {
			return p.addr.String()
		}
		return fmt.Sprint(id)
	}
	var reg []string
	for _, id := range d.Regular {
		reg = append(reg, name(id))
	}
	opt := "none"
	if d.Optimistic >= 0 {
		opt = name(d.Optimistic)
	}
	var sn []string
	for _, id := range d.Snubbed {
		sn = append(sn, name(id))
	}
	mode := "leeching: by their upload to us"
	switch {
	case c.cfg.FreeRider:
		mode = "free rider: uploads to nobody"
	case c.complete && c.cfg.NoTitForTat:
		mode = "seeding, tit-for-tat off: regular slots at random"
	case c.complete && c.choker.RoundRobin:
		mode = "seeding: round robin"
	case c.complete:
		mode = "seeding: by our upload to them"
	case c.cfg.NoTitForTat:
		mode = "leeching, tit-for-tat off: regular slots at random"
	}
	return fmt.Sprintf("unchoke [%s] optimistic %s (rotated %v) snubbed [%s]; %s",
		strings.Join(reg, " "), opt, d.Rotated, strings.Join(sn, " "), mode)
}

// pexAllowedLocked reports whether peer exchange may be used: not for a
// private torrent (BEP 27: peers only from the trackers).
func (c *Client) pexAllowedLocked() bool {
	if c.info != nil {
		return !c.info.Private
	}
	return c.cfg.Torrent == nil || !c.cfg.Torrent.Info.Private
}

// ban drops every connection from ip and refuses it from now on.
func (c *Client) banLocked(ip netip.Addr, why string) {
	if c.banned[ip] {
		return
	}
	c.banned[ip] = true
	c.m.banned.Inc()
	c.log.Warn("swarm: peer banned", "ip", ip, "why", why)
	for _, p := range c.peers {
		if p.addr.Addr() == ip {
			p.nc.Close()
		}
	}
}

// Banned reports whether ip is banned.
func (c *Client) Banned(ip netip.Addr) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.banned[ip]
}

// Stats is a snapshot for progress lines.
type Stats struct {
	Name         string
	Pieces, Have int
	Total, Left  int64
	Downloaded   int64 // payload bytes received this session
	Uploaded     int64
	DownRate     float64
	UpRate       float64
	Peers        int
	Unchoked     []string
	// UploadQueue is the blocks unchoked peers have asked us for and we
	// have not sent yet (0 while uploading: nobody wants what we have).
	UploadQueue  int
	EndGame      bool
	Complete     bool
	HaveMetadata bool
	Banned       int
	PieceMap     string // one character a piece: '#' have, '-' partial, '.' missing
}

// Stats returns the client's progress.
func (c *Client) Stats() Stats {
	now := c.deps.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Stats{Downloaded: c.downloaded, Uploaded: c.uploaded, Peers: len(c.peers), Complete: c.complete, Banned: len(c.banned)}
	for _, p := range c.peers {
		s.DownRate += p.down.Rate(now)
		s.UpRate += p.up.Rate(now)
		if !p.amChoking {
			s.Unchoked = append(s.Unchoked, p.addr.String())
			s.UploadQueue += len(p.uploads)
		}
	}
	sort.Strings(s.Unchoked)
	if c.info != nil {
		s.HaveMetadata = true
		s.Name = c.info.Name
		s.Pieces, s.Have = c.info.NumPieces(), c.picker.Completed()
		s.Total = c.info.TotalLength()
		s.Left = s.Total
		var pm strings.Builder
		for i := range c.info.NumPieces() {
			switch {
			case c.picker.Have().Has(i):
				s.Left -= c.info.PieceSize(i)
				pm.WriteByte('#')
			case c.picker.pieces[i].started:
				pm.WriteByte('-')
			default:
				pm.WriteByte('.')
			}
		}
		s.PieceMap = pm.String()
		s.EndGame = c.picker.InEndGame()
	}
	return s
}

// DownloadedFrom is the piece payload received from each peer address
// this session.
func (c *Client) DownloadedFrom() map[netip.Addr]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := maps.Clone(c.downGone)
	for _, p := range c.peers {
		out[p.addr.Addr()] += p.down.Total()
	}
	return out
}

type metrics struct {
	down, up         prometheus.Counter
	verified, failed prometheus.Counter
	banned           prometheus.Counter
	announces        prometheus.Counter
	conns            prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "applayer", "torrent"
	pieces := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "peer_pieces_checked_total",
		Help: "Pieces checked against their SHA-1, by result: verified (matched) or failed (did not)."}, []string{"result"})
	m := &metrics{
		down: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "peer_downloaded_bytes_total",
			Help: "Piece payload bytes received from peers."}),
		up: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "peer_uploaded_bytes_total",
			Help: "Piece payload bytes sent to peers."}),
		verified: pieces.WithLabelValues("verified"),
		failed:   pieces.WithLabelValues("failed"),
		banned: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "peer_bans_total",
			Help: "Peers banned for sending bad data or breaking the protocol."}),
		announces: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "peer_announces_total",
			Help: "Successful tracker announces."}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "peer_connections",
			Help: "Peer connections open."}),
	}
	for _, x := range []prometheus.Collector{m.down, m.up, pieces, m.banned, m.announces, m.conns} {
		if err := reg.Register(x); err != nil {
			return nil, fmt.Errorf("swarm: metrics: %w", err)
		}
	}
	return m, nil
}
