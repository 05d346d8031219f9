// Package tracker is a BitTorrent tracker: the rendezvous where the peers of
// a torrent find each other. A peer announces itself (info-hash, peer id,
// port, bytes left, event) and gets back a random sample of the swarm.
//
// It speaks HTTP announce and scrape (BEP 3, BEP 48) with compact peer
// lists (BEP 23) and IPv6 peers (BEP 7), and the UDP tracker protocol (BEP
// 15) with stateless connection ids that expire. Peers that stop
// announcing are dropped after PeerTimeout; started, completed and stopped
// events are counted; an optional allow-list limits the torrents served.
// The state lives in memory and is written to Snapshot on shutdown and
// read back on start.
package tracker

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/internal/transport"
)

// Config configures a Tracker. Zero fields take the documented defaults.
type Config struct {
	// HTTPAddr is where the HTTP tracker listens (announce at /announce,
	// scrape at /scrape); empty for none.
	HTTPAddr string `json:"http_addr,omitempty"`
	// UDPAddr is where the UDP tracker (BEP 15) listens; empty for none.
	UDPAddr string `json:"udp_addr,omitempty"`
	// Interval is the announce interval handed to peers. Default 2m.
	Interval config.Duration `json:"interval,omitempty"`
	// MinInterval is the shortest interval peers should announce at.
	// Default 30s.
	MinInterval config.Duration `json:"min_interval,omitempty"`
	// PeerTimeout drops a peer that has not announced for this long.
	// Default twice Interval plus MinInterval.
	PeerTimeout config.Duration `json:"peer_timeout,omitempty"`
	// DefaultNumWant is how many peers an announce gets when it does not
	// say. Default 50.
	DefaultNumWant int `json:"default_numwant,omitempty"`
	// MaxNumWant caps numwant. Default 200.
	MaxNumWant int `json:"max_numwant,omitempty"`
	// AllowList, when not empty, is the only info-hashes (hex) served.
	AllowList []string `json:"allow_list,omitempty"`
	// TrustIP honours the ip parameter of announces (for a lab where
	// clients announce an address other than their source); off by default.
	TrustIP bool `json:"trust_ip,omitempty"`
	// Snapshot is a file the state is written to on shutdown and read from
	// on start; empty for none.
	Snapshot string `json:"snapshot,omitempty"`
	// MaxTorrents caps the torrents tracked. Default 100000.
	MaxTorrents int `json:"max_torrents,omitempty"`
	// MaxPeersPerTorrent caps one swarm. Default 10000.
	MaxPeersPerTorrent int `json:"max_peers_per_torrent,omitempty"`
	// MaxScrape caps the info-hashes of one HTTP scrape and the torrents of
	// a full scrape. Default 256.
	MaxScrape int `json:"max_scrape,omitempty"`
	// RequestTimeout bounds reading an HTTP request and writing its answer.
	// Default 10s.
	RequestTimeout config.Duration `json:"request_timeout,omitempty"`
	// MaxConns caps the HTTP connections open at once (a client over it
	// gets 503). Default 1024.
	MaxConns int `json:"max_conns,omitempty"`
	// MaxConnsPerIP caps one client address's HTTP connections. Default 16.
	MaxConnsPerIP int `json:"max_conns_per_ip,omitempty"`
}

func (c *Config) defaults() {
	if c.Interval <= 0 {
		c.Interval = config.Duration(2 * time.Minute)
	}
	if c.MinInterval <= 0 {
		c.MinInterval = config.Duration(min(30*time.Second, c.Interval.D()))
	}
	if c.PeerTimeout <= 0 {
		c.PeerTimeout = 2*c.Interval + c.MinInterval
	}
	if c.DefaultNumWant <= 0 {
		c.DefaultNumWant = 50
	}
	if c.MaxNumWant <= 0 {
		c.MaxNumWant = 200
	}
	if c.MaxTorrents <= 0 {
		c.MaxTorrents = 100000
	}
	if c.MaxPeersPerTorrent <= 0 {
		c.MaxPeersPerTorrent = 10000
	}
	if c.MaxScrape <= 0 {
		c.MaxScrape = 256
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = config.Duration(10 * time.Second)
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 1024
	}
	if c.MaxConnsPerIP <= 0 {
		c.MaxConnsPerIP = 16
	}
}

// Tracker is the tracker service.
type Tracker struct {
	cfg   Config
	deps  service.Deps
	log   *slog.Logger
	st    *state
	ids   connIDs
	m     *metrics
	trace *trace.Bus

	mu      sync.Mutex
	httpSrv *http.Server
	httpLn  net.Listener
	front   *transport.Front // accepts for httpSrv: caps, back-off
	udp     *net.UDPConn
	pkt     *transport.PacketServer
	wg      sync.WaitGroup
	stop    chan struct{}
	once    service.Once
	started bool
}

// New returns a tracker for cfg; Start binds it.
func New(cfg Config, deps service.Deps) (*Tracker, error) {
	if cfg.HTTPAddr == "" && cfg.UDPAddr == "" {
		return nil, errors.New("tracker: needs an HTTP or a UDP address")
	}
	cfg.defaults()
	deps = deps.Defaults()
	var allow map[InfoHash]bool
	if len(cfg.AllowList) > 0 {
		allow = map[InfoHash]bool{}
		for _, s := range cfg.AllowList {
			b, err := hex.DecodeString(strings.TrimSpace(s))
			if err != nil || len(b) != 20 {
				return nil, config.Errorf("allow_list", "%q is not a 40-hex-digit info-hash", s)
			}
			allow[InfoHash(b)] = true
		}
	}
	key := make([]byte, 32)
	rand.Read(key)
	var seed [8]byte
	rand.Read(seed[:])
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	t := &Tracker{
		cfg: cfg, deps: deps, log: deps.Logger, m: m, trace: deps.Trace,
		ids:  connIDs{key: key},
		stop: make(chan struct{}),
	}
	t.st = newState(&t.cfg, allow, deps.Now, binary.LittleEndian.Uint64(seed[:]))
	return t, nil
}

// Name implements service.Service.
func (t *Tracker) Name() string { return "torrent-tracker" }

// Start restores the snapshot, binds the listeners and starts serving.
func (t *Tracker) Start(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.started {
		return errors.New("tracker: already started")
	}
	if t.cfg.Snapshot != "" {
		n, err := t.st.load(t.cfg.Snapshot)
		if err != nil {
			return err
		}
		if n > 0 {
			t.log.Info("tracker state restored", "peers", n, "file", t.cfg.Snapshot)
		}
	}
	var lc transport.ListenConfig
	if t.cfg.HTTPAddr != "" {
		ln, err := lc.Listen(ctx, "tcp", t.cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("tracker: %w", err)
		}
		t.httpLn = ln
		to := t.cfg.RequestTimeout.D()
		t.httpSrv = &http.Server{
			Handler:           t.HTTPHandler(),
			ReadHeaderTimeout: to, ReadTimeout: to, WriteTimeout: to, IdleTimeout: 2 * to,
			MaxHeaderBytes: 8 << 10,
			ErrorLog:       slog.NewLogLogger(t.log.Handler(), slog.LevelDebug),
		}
		t.front = transport.NewFront(transport.StreamConfig{
			MaxConns:      t.cfg.MaxConns,
			MaxConnsPerIP: t.cfg.MaxConnsPerIP,
			Logger:        t.log,
			OnReject: func(c net.Conn, _ transport.RejectReason) {
				io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n")
			},
		}, ln.Addr())
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			if err := t.httpSrv.Serve(t.front.Listener()); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				t.log.Error("tracker: http serve", "err", err)
			}
		}()
		if err := t.front.Start(ln); err != nil {
			t.closeHTTP(context.Background())
			return fmt.Errorf("tracker: %w", err)
		}
	}
	if t.cfg.UDPAddr != "" {
		conn, err := lc.ListenUDP(ctx, "udp", t.cfg.UDPAddr)
		if err != nil {
			t.closeHTTP(context.Background())
			return fmt.Errorf("tracker: %w", err)
		}
		t.udp = conn
		// Requests are at most 98 + 74*20 bytes (a full scrape).
		t.pkt = transport.NewPacketServer(transport.PacketConfig{MaxDatagram: 2048, Logger: t.log}, func() transport.PacketHandler {
			return transport.PacketHandlerFunc(t.serveBatch)
		})
		if err := t.pkt.Start(conn); err != nil {
			conn.Close()
			t.closeHTTP(context.Background())
			return fmt.Errorf("tracker: %w", err)
		}
	}
	t.wg.Add(1)
	go func() { defer t.wg.Done(); t.sweep() }()
	t.started = true
	return nil
}

// sweep drops silent peers every MinInterval.
func (t *Tracker) sweep() {
	tick := time.NewTicker(t.cfg.MinInterval.D())
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			t.Expire()
		}
	}
}

// Expire drops the peers that have not announced within PeerTimeout and
// returns how many went. It runs every MinInterval on its own.
func (t *Tracker) Expire() int {
	n := t.st.expire()
	if n > 0 {
		t.m.expired.Add(float64(n))
		t.log.Debug("tracker: peers expired", "n", n)
	}
	t.updateGauges()
	return n
}

func (t *Tracker) updateGauges() {
	stats := t.st.stats()
	peers := 0
	for _, s := range stats {
		peers += s.Complete + s.Incomplete
	}
	t.m.torrents.Set(float64(len(stats)))
	t.m.peers.Set(float64(peers))
}

// localAddr is the tracker's own address for network proto ("http" or
// "udp"), for its trace events.
func (t *Tracker) localAddr(proto string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case proto == "http" && t.httpLn != nil:
		return t.httpLn.Addr().String()
	case proto == "udp" && t.udp != nil:
		return t.udp.LocalAddr().String()
	}
	return "tracker:0"
}

// Addrs returns the bound HTTP (TCP) and UDP addresses.
func (t *Tracker) Addrs() []net.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []net.Addr
	if t.httpLn != nil {
		out = append(out, t.httpLn.Addr())
	}
	if t.udp != nil {
		out = append(out, t.udp.LocalAddr())
	}
	return out
}

// AnnounceURLs returns the tracker's announce URLs (HTTP first).
func (t *Tracker) AnnounceURLs() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	if t.httpLn != nil {
		out = append(out, "http://"+t.httpLn.Addr().String()+"/announce")
	}
	if t.udp != nil {
		out = append(out, "udp://"+t.udp.LocalAddr().String())
	}
	return out
}

func (t *Tracker) closeHTTP(ctx context.Context) error {
	if t.httpSrv == nil {
		return nil
	}
	err := t.front.Shutdown(ctx)
	if err2 := t.httpSrv.Shutdown(ctx); err == nil {
		err = err2
	}
	return err
}

// Shutdown stops the listeners and writes the snapshot.
func (t *Tracker) Shutdown(ctx context.Context) error {
	return t.once.Do(ctx, func(ctx context.Context) error {
		t.mu.Lock()
		started := t.started
		t.mu.Unlock()
		if !started {
			return nil
		}
		close(t.stop)
		var errs []error
		if err := t.closeHTTP(ctx); err != nil {
			errs = append(errs, fmt.Errorf("tracker: %w", err))
			t.httpSrv.Close()
		}
		if t.pkt != nil {
			if err := t.pkt.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("tracker: %w", err))
			}
		}
		t.wg.Wait()
		if t.cfg.Snapshot != "" {
			if err := t.st.save(t.cfg.Snapshot); err != nil {
				errs = append(errs, err)
			} else {
				t.log.Info("tracker state saved", "file", t.cfg.Snapshot)
			}
		}
		return errors.Join(errs...)
	})
}

// HTTPHandler serves /announce and /scrape.
func (t *Tracker) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /announce", t.serveAnnounce)
	mux.HandleFunc("GET /scrape", t.serveScrape)
	return mux
}

func (t *Tracker) serveAnnounce(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	remote := remoteAddr(r)
	a, err := parseAnnounce(r.URL.RawQuery, remote, t.cfg.TrustIP)
	if err != nil {
		t.m.errors.WithLabelValues("http").Inc()
		w.Write(encodeFailure(err.Error()))
		return
	}
	res, err := t.announce(a.AnnounceRequest, "http", r.RemoteAddr)
	if err != nil {
		w.Write(encodeFailure(err.Error()))
		return
	}
	w.Write(encodeAnnounce(res, a.Compact, a.NoPeerID))
}

func (t *Tracker) serveScrape(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	hashes, err := ParseScrapeQuery(r.URL.RawQuery, t.cfg.MaxScrape)
	if err != nil {
		t.m.errors.WithLabelValues("http").Inc()
		w.Write(encodeFailure(err.Error()))
		return
	}
	t.m.scrapes.WithLabelValues("http").Inc()
	w.Write(encodeScrape(t.st.scrape(hashes)))
}

// announce records an announce from either protocol.
func (t *Tracker) announce(req AnnounceRequest, proto, from string) (AnnounceResult, error) {
	res, err := t.st.announce(req)
	if err != nil {
		t.m.errors.WithLabelValues(proto).Inc()
		return res, err
	}
	ev := req.Event.String()
	if ev == "" {
		ev = "none"
	}
	t.m.announces.WithLabelValues(proto, ev).Inc()
	if t.trace.Enabled() {
		t.trace.Publish(trace.Event{From: from, To: t.localAddr(proto), Proto: "bittorrent/tracker-" + proto,
			Summary: fmt.Sprintf("announce %s %s left=%d event=%s -> %d peers (%d seeders, %d leechers)",
				hex.EncodeToString(req.InfoHash[:]), req.Addr, req.Left, ev, len(res.Peers), res.Seeders, res.Leechers)})
	}
	return res, nil
}

// serveBatch answers a batch of UDP tracker datagrams.
func (t *Tracker) serveBatch(b *transport.Batch) {
	for i := range b.Len() {
		from := b.From(i)
		if !from.IsValid() || b.Truncated(i) {
			t.m.errors.WithLabelValues("udp").Inc()
			continue
		}
		if reply := t.HandleUDP(b.Data(i), from); reply != nil {
			b.Reply(i, reply)
		}
	}
}

// HandleUDP answers one BEP 15 datagram from the client at from; nil means
// no answer.
func (t *Tracker) HandleUDP(b []byte, from netip.AddrPort) []byte {
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	req, err := ParseUDPRequest(b, from, t.cfg.TrustIP)
	if errors.Is(err, errUDPIgnore) {
		t.m.errors.WithLabelValues("udp").Inc()
		return nil
	}
	if err != nil {
		t.m.errors.WithLabelValues("udp").Inc()
		return udpErrorReply(req.TransactionID, err.Error())
	}
	now := t.deps.Now()
	if req.Action == actionConnect {
		t.m.connects.Inc()
		return udpConnectReply(req.TransactionID, t.ids.mint(from, now))
	}
	if !t.ids.valid(req.ConnectionID, from, now) {
		t.m.errors.WithLabelValues("udp").Inc()
		return udpErrorReply(req.TransactionID, "connection id expired or unknown")
	}
	switch req.Action {
	case actionAnnounce:
		res, err := t.announce(req.Announce, "udp", from.String())
		if err != nil {
			return udpErrorReply(req.TransactionID, err.Error())
		}
		return udpAnnounceReply(req.TransactionID, res, from.Addr().Is6())
	case actionScrape:
		t.m.scrapes.WithLabelValues("udp").Inc()
		return udpScrapeReply(req.TransactionID, req.Hashes, t.st.scrape(req.Hashes))
	}
	return nil
}

// AdminHandler serves, for the admin listener:
//
//	/torrent/tracker/stats                  every torrent's counts (JSON)
//	/torrent/tracker/peers?info_hash=HEX    one torrent's peer table (JSON)
func (t *Tracker) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /torrent/tracker/stats", func(w http.ResponseWriter, r *http.Request) {
		stats := t.st.stats()
		type total struct {
			Torrents int            `json:"torrents"`
			Peers    int            `json:"peers"`
			List     []TorrentStats `json:"list"`
		}
		tot := total{Torrents: len(stats), List: stats}
		for _, s := range stats {
			tot.Peers += s.Complete + s.Incomplete
		}
		writeJSON(w, tot)
	})
	mux.HandleFunc("GET /torrent/tracker/peers", func(w http.ResponseWriter, r *http.Request) {
		b, err := hex.DecodeString(r.URL.Query().Get("info_hash"))
		if err != nil || len(b) != 20 {
			http.Error(w, "info_hash must be 40 hex digits", http.StatusBadRequest)
			return
		}
		peers, ok := t.st.peers(InfoHash(b))
		if !ok {
			http.Error(w, "no such torrent", http.StatusNotFound)
			return
		}
		writeJSON(w, peers)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// Stats returns every torrent's counts, sorted by info-hash.
func (t *Tracker) Stats() []TorrentStats { return t.st.stats() }

type metrics struct {
	announces *prometheus.CounterVec
	scrapes   *prometheus.CounterVec
	errors    *prometheus.CounterVec
	connects  prometheus.Counter
	expired   prometheus.Counter
	torrents  prometheus.Gauge
	peers     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "applayer", "torrent"
	m := &metrics{
		announces: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "tracker_announces_total",
			Help: "Announces served, by protocol (http, udp) and event (none, started, completed, stopped)."}, []string{"proto", "event"}),
		scrapes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "tracker_scrapes_total",
			Help: "Scrapes served, by protocol."}, []string{"proto"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "tracker_errors_total",
			Help: "Requests refused (malformed, expired connection id, not allowed), by protocol."}, []string{"proto"}),
		connects: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "tracker_udp_connects_total",
			Help: "UDP connect requests answered with a connection id."}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "tracker_peers_expired_total",
			Help: "Peers dropped for not announcing within the peer timeout."}),
		torrents: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "tracker_torrents",
			Help: "Torrents tracked (as of the last expiry sweep)."}),
		peers: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "tracker_peers",
			Help: "Peers tracked (as of the last expiry sweep)."}),
	}
	for _, c := range []prometheus.Collector{m.announces, m.scrapes, m.errors, m.connects, m.expired, m.torrents, m.peers} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("tracker: metrics: %w", err)
		}
	}
	return m, nil
}
