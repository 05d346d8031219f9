package dht

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/internal/transport"
)

// Config configures a Node.
type Config struct {
	// Addr is the UDP address to listen on (port 0 picks one).
	Addr string `json:"addr"`
	// Bootstrap are the nodes (host:port) joined at start; nothing else
	// is contacted until they answer.
	Bootstrap []string `json:"bootstrap,omitempty"`
	// QueryTimeout bounds one query. Default 2s.
	QueryTimeout time.Duration `json:"-"`
}

// Node is a DHT node: a service.Service.
type Node struct {
	cfg   Config
	deps  service.Deps
	log   *slog.Logger
	trace *trace.Bus
	id    ID
	key   []byte
	m     *metrics

	mu      sync.Mutex
	tab     table
	peers   peerStore
	pending map[string]chan Msg
	nextT   uint32
	closed  bool

	conn *net.UDPConn
	pkt  *transport.PacketServer
	once service.Once
	stop chan struct{}
	wg   sync.WaitGroup
}

// New returns a node with a random id.
func New(cfg Config, deps service.Deps) (*Node, error) {
	if cfg.Addr == "" {
		return nil, errors.New("dht: needs an address")
	}
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = 2 * time.Second
	}
	deps = deps.Defaults()
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, deps: deps, log: deps.Logger, trace: deps.Trace, m: m, pending: map[string]chan Msg{}, stop: make(chan struct{})}
	rand.Read(n.id[:])
	n.key = make([]byte, 32)
	rand.Read(n.key)
	n.tab.self = n.id
	return n, nil
}

// Name implements service.Service.
func (n *Node) Name() string { return "torrent-dht" }

// ID is the node's id.
func (n *Node) ID() ID { return n.id }

// Addrs returns the bound UDP address.
func (n *Node) Addrs() []net.Addr {
	if n.conn == nil {
		return nil
	}
	return []net.Addr{n.conn.LocalAddr()}
}

// AddrPort is the bound address.
func (n *Node) AddrPort() netip.AddrPort {
	ap, _ := netip.ParseAddrPort(n.conn.LocalAddr().String())
	return ap
}

// Start binds the socket and joins through the bootstrap nodes (in the
// background: a bootstrap node that is not up yet is retried).
func (n *Node) Start(ctx context.Context) error {
	conn, err := transport.ListenConfig{}.ListenUDP(ctx, "udp4", n.cfg.Addr)
	if err != nil {
		return fmt.Errorf("dht: %w", err)
	}
	n.conn = conn
	n.pkt = transport.NewPacketServer(transport.PacketConfig{MaxDatagram: MaxMsg, Logger: n.log}, func() transport.PacketHandler {
		return transport.PacketHandlerFunc(n.serveBatch)
	})
	if err := n.pkt.Start(conn); err != nil {
		conn.Close()
		return fmt.Errorf("dht: %w", err)
	}
	if len(n.cfg.Bootstrap) > 0 {
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.bootstrapLoop() }()
	}
	return nil
}

// Shutdown stops the node.
func (n *Node) Shutdown(ctx context.Context) error {
	return n.once.Do(ctx, func(ctx context.Context) error {
		close(n.stop)
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		var err error
		if n.pkt != nil {
			err = n.pkt.Shutdown(ctx)
		}
		n.wg.Wait()
		return err
	})
}

func (n *Node) bootstrapLoop() {
	wait := 500 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		go func() {
			select {
			case <-n.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		n.Bootstrap(ctx)
		cancel()
		n.mu.Lock()
		size := n.tab.size()
		n.mu.Unlock()
		if size > 0 {
			wait = 5 * time.Minute // refresh now and then
		}
		t := time.NewTimer(wait)
		select {
		case <-n.stop:
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Minute)
	}
}

// Bootstrap pings the bootstrap nodes and looks up our own id, filling the
// routing table.
func (n *Node) Bootstrap(ctx context.Context) {
	for _, s := range n.cfg.Bootstrap {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			n.log.Warn("dht: bad bootstrap node", "node", s, "err", err)
			continue
		}
		n.query(ctx, ap, Msg{Y: "q", Q: "find_node", Target: n.id})
	}
	n.lookup(ctx, n.id, false)
}

// bootstrapNodes are the configured bootstrap nodes, their ids unknown.
func (n *Node) bootstrapNodes() []NodeInfo {
	var out []NodeInfo
	for _, s := range n.cfg.Bootstrap {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			out = append(out, NodeInfo{Addr: ap})
		}
	}
	return out
}

// token is what a get_peers answer hands out and announce_peer must bring
// back: an HMAC of the asker's IP and the 5-minute window.
func (n *Node) token(ip netip.Addr, window int64) string {
	h := hmac.New(sha256.New, n.key)
	b, _ := ip.MarshalBinary()
	h.Write(b)
	var w [8]byte
	binary.BigEndian.PutUint64(w[:], uint64(window))
	h.Write(w[:])
	return string(h.Sum(nil)[:8])
}

func (n *Node) tokenOK(ip netip.Addr, tok string) bool {
	w := n.deps.Now().Unix() / 300
	return hmac.Equal([]byte(tok), []byte(n.token(ip, w))) || hmac.Equal([]byte(tok), []byte(n.token(ip, w-1)))
}

func (n *Node) serveBatch(b *transport.Batch) {
	for i := range b.Len() {
		from := b.From(i)
		if !from.IsValid() || b.Truncated(i) {
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if reply := n.Handle(b.Data(i), from); reply != nil {
			b.Reply(i, reply)
		}
	}
}

// Handle answers one datagram from from (nil: no answer): queries get
// responses; responses wake the query waiting for them.
func (n *Node) Handle(b []byte, from netip.AddrPort) []byte {
	m, err := Parse(b)
	if err != nil {
		n.m.errors.Inc()
		if m.T != "" && m.Y == "q" {
			return Msg{T: m.T, Y: "e", ErrCode: 203, ErrMsg: "protocol error"}.Bytes()
		}
		return nil
	}
	now := n.deps.Now()
	switch m.Y {
	case "r", "e":
		n.mu.Lock()
		ch := n.pending[m.T]
		delete(n.pending, m.T)
		if ch != nil && m.Y == "r" {
			n.tab.seen(NodeInfo{ID: m.ID, Addr: from}, now)
		}
		n.mu.Unlock()
		if ch != nil {
			select {
			case ch <- m:
			default:
			}
		}
		return nil
	}
	n.m.queries.WithLabelValues(m.Q).Inc()
	if n.trace.Enabled() {
		n.trace.Publish(trace.Event{From: from.String(), To: n.conn.LocalAddr().String(), Proto: "dht", Summary: "query " + m.Q})
	}
	r := Msg{T: m.T, Y: "r", ID: n.id}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.tab.seen(NodeInfo{ID: m.ID, Addr: from}, now)
	switch m.Q {
	case "ping":
	case "find_node":
		r.Nodes = n.tab.closest(m.Target, K)
	case "get_peers":
		r.Token = n.token(from.Addr(), now.Unix()/300)
		if v := n.peers.get(m.InfoHash, now); len(v) > 0 {
			r.Values = v
		} else {
			r.Nodes = n.tab.closest(m.InfoHash, K)
		}
	case "announce_peer":
		if !n.tokenOK(from.Addr(), m.Token) {
			return Msg{T: m.T, Y: "e", ErrCode: 203, ErrMsg: "bad token"}.Bytes()
		}
		port := uint16(m.Port)
		if m.ImpliedPort || port == 0 {
			port = from.Port()
		}
		n.peers.add(m.InfoHash, netip.AddrPortFrom(from.Addr(), port), now)
	default:
		return Msg{T: m.T, Y: "e", ErrCode: 204, ErrMsg: "method unknown"}.Bytes()
	}
	return r.Bytes()
}

// query sends q to addr and waits for the answer or the timeout.
func (n *Node) query(ctx context.Context, addr netip.AddrPort, q Msg) (Msg, error) {
	ch := make(chan Msg, 1)
	n.mu.Lock()
	n.nextT++
	var tb [4]byte
	binary.BigEndian.PutUint32(tb[:], n.nextT)
	q.T = string(tb[:])
	q.ID = n.id
	n.pending[q.T] = ch
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.pending, q.T)
		n.mu.Unlock()
	}()
	if _, err := n.conn.WriteToUDPAddrPort(q.Bytes(), addr); err != nil {
		return Msg{}, fmt.Errorf("dht: %w", err)
	}
	t := time.NewTimer(n.cfg.QueryTimeout)
	defer t.Stop()
	select {
	case m := <-ch:
		if m.Y == "e" {
			return m, fmt.Errorf("dht: %s: error %d %s", addr, m.ErrCode, m.ErrMsg)
		}
		return m, nil
	case <-t.C:
		return Msg{}, fmt.Errorf("dht: %s: no answer", addr)
	case <-ctx.Done():
		return Msg{}, ctx.Err()
	}
}

type candidate struct {
	NodeInfo
	token string
}

// lookup walks towards target, asking the alpha=3 closest nodes not yet
// asked each round (find_node, or get_peers when peers is set), until no
// closer node turns up. It returns the peers found and the K closest nodes
// that answered, with their tokens.
func (n *Node) lookup(ctx context.Context, target ID, peers bool) ([]netip.AddrPort, []candidate) {
	n.mu.Lock()
	start := n.tab.closest(target, K)
	n.mu.Unlock()
	if len(start) == 0 {
		// An empty table (every node timed out once, or the join has
		// not finished): start from the bootstrap nodes again rather
		// than return nothing until the next periodic re-join.
		start = n.bootstrapNodes()
	}
	asked := map[netip.AddrPort]bool{}
	var shortlist []NodeInfo
	shortlist = append(shortlist, start...)
	answered := map[ID]candidate{}
	var found []netip.AddrPort
	seenPeer := map[netip.AddrPort]bool{}
	for ctx.Err() == nil {
		sortByDistance(shortlist, target)
		var round []NodeInfo
		for _, c := range shortlist {
			if !asked[c.Addr] && len(round) < 3 {
				round = append(round, c)
			}
		}
		if len(round) == 0 {
			break
		}
		type res struct {
			n NodeInfo
			m Msg
			e error
		}
		out := make(chan res, len(round))
		for _, c := range round {
			asked[c.Addr] = true
			go func() {
				q := Msg{Y: "q", Q: "find_node", Target: target}
				if peers {
					q = Msg{Y: "q", Q: "get_peers", InfoHash: target}
				}
				m, err := n.query(ctx, c.Addr, q)
				out <- res{c, m, err}
			}()
		}
		for range round {
			r := <-out
			if r.e != nil {
				n.mu.Lock()
				n.tab.remove(r.n.ID)
				n.mu.Unlock()
				continue
			}
			answered[r.m.ID] = candidate{NodeInfo: NodeInfo{ID: r.m.ID, Addr: r.n.Addr}, token: r.m.Token}
			for _, v := range r.m.Values {
				if !seenPeer[v] {
					seenPeer[v] = true
					found = append(found, v)
				}
			}
			for _, nn := range r.m.Nodes {
				if nn.ID != n.id {
					shortlist = append(shortlist, nn)
				}
			}
		}
	}
	var closest []candidate
	for _, c := range answered {
		closest = append(closest, c)
	}
	infos := make([]NodeInfo, len(closest))
	for i := range closest {
		infos[i] = closest[i].NodeInfo
	}
	sortByDistance(infos, target)
	byID := map[ID]candidate{}
	for _, c := range closest {
		byID[c.ID] = c
	}
	closest = closest[:0]
	for i, in := range infos {
		if i == K {
			break
		}
		closest = append(closest, byID[in.ID])
	}
	return found, closest
}

// GetPeers looks up the peers of an info-hash.
func (n *Node) GetPeers(ctx context.Context, ih ID) []netip.AddrPort {
	peers, _ := n.lookup(ctx, ih, true)
	n.m.lookups.Inc()
	return peers
}

// Announce looks up an info-hash and announces that we serve it on port
// to the K closest nodes that answered; it returns the peers found on the
// way and how many nodes took the announce.
func (n *Node) Announce(ctx context.Context, ih ID, port int) ([]netip.AddrPort, int) {
	peers, closest := n.lookup(ctx, ih, true)
	n.m.lookups.Inc()
	ok := 0
	for _, c := range closest {
		if c.token == "" {
			continue
		}
		if _, err := n.query(ctx, c.Addr, Msg{Y: "q", Q: "announce_peer", InfoHash: ih, Port: port, Token: c.token}); err == nil {
			ok++
		}
	}
	return peers, ok
}

// AddNode pings addr in the background; if it answers it joins the
// routing table (a peer's port message, BEP 5).
func (n *Node) AddNode(addr netip.AddrPort) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.wg.Add(1)
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.QueryTimeout)
		defer cancel()
		n.query(ctx, addr, Msg{Y: "q", Q: "ping"})
	}()
}

// TableSize is how many nodes the routing table holds.
func (n *Node) TableSize() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.tab.size()
}

// InfoHashID converts a 20-byte hash.
func InfoHashID(h [20]byte) ID { return ID(h) }

// RandomID is a fresh random id (tests).
func RandomID() ID {
	var id ID
	rand.Read(id[:])
	return ID(sha1.Sum(id[:]))
}

type metrics struct {
	queries *prometheus.CounterVec
	errors  prometheus.Counter
	lookups prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "applayer", "torrent"
	m := &metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "dht_queries_total",
			Help: "DHT queries answered, by query name."}, []string{"query"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "dht_errors_total",
			Help: "Malformed DHT datagrams."}),
		lookups: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "dht_lookups_total",
			Help: "Iterative get_peers lookups made."}),
	}
	for _, c := range []prometheus.Collector{m.queries, m.errors, m.lookups} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("dht: metrics: %w", err)
		}
	}
	return m, nil
}
