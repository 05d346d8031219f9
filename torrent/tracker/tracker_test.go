package tracker

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/torrent/bencode"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func ih(n byte) InfoHash { var h InfoHash; h[0] = n; h[19] = 0xaa; return h }
func pid(n byte) PeerID  { var p PeerID; copy(p[:], fmt.Sprintf("-AL0001-%012d", n)); return p }
func ap(s string) netip.AddrPort {
	return netip.MustParseAddrPort(s)
}

func newTestState(clock *testkit.Clock, allow map[InfoHash]bool) *state {
	cfg := &Config{Interval: config.Duration(time.Minute)}
	cfg.defaults()
	return newState(cfg, allow, clock.Now, 1)
}

func TestStateAnnounce(t *testing.T) {
	clock := testkit.NewClock(t0)
	s := newTestState(clock, nil)
	h := ih(1)
	r, err := s.announce(AnnounceRequest{InfoHash: h, PeerID: pid(1), Addr: ap("127.0.0.1:6881"), Left: 0, Event: EventStarted, NumWant: -1})
	if err != nil || len(r.Peers) != 0 || r.Seeders != 1 || r.Leechers != 0 {
		t.Fatalf("first seed: %+v %v", r, err)
	}
	if r.Interval != time.Minute || r.MinInterval != 30*time.Second {
		t.Errorf("intervals %v %v", r.Interval, r.MinInterval)
	}
	for i := byte(2); i <= 5; i++ {
		if _, err := s.announce(AnnounceRequest{InfoHash: h, PeerID: pid(i), Addr: ap(fmt.Sprintf("127.0.0.%d:6881", i)), Left: 100, Event: EventStarted, NumWant: -1}); err != nil {
			t.Fatal(err)
		}
	}
	// A leecher sees everyone but itself.
	r, _ = s.announce(AnnounceRequest{InfoHash: h, PeerID: pid(2), Addr: ap("127.0.0.2:6881"), Left: 50, NumWant: -1})
	if len(r.Peers) != 4 || r.Seeders != 1 || r.Leechers != 4 {
		t.Fatalf("leecher view: %d peers, %d/%d", len(r.Peers), r.Seeders, r.Leechers)
	}
	for _, p := range r.Peers {
		if p.ID == pid(2) {
			t.Error("peer given itself")
		}
	}
	// numwant caps the list.
	r, _ = s.announce(AnnounceRequest{InfoHash: h, PeerID: pid(3), Addr: ap("127.0.0.3:6881"), Left: 50, NumWant: 2})
	if len(r.Peers) != 2 {
		t.Errorf("numwant 2 gave %d peers", len(r.Peers))
	}
	// A seed gets everyone too (a magnet client announces left=0).
	s.announce(AnnounceRequest{InfoHash: h, PeerID: pid(6), Addr: ap("127.0.0.6:6881"), Left: 0, NumWant: -1})
	r, _ = s.announce(AnnounceRequest{InfoHash: h, PeerID: pid(1), Addr: ap("127.0.0.1:6881"), Left: 0, NumWant: -1})
	if len(r.Peers) != 5 {
		t.Errorf("seed got %d peers, want all 5 others", len(r.Peers))
	}
	s.announce(AnnounceRequest{InfoHash: h, PeerID: pid(6), Addr: ap("127.0.0.6:6881"), Event: EventStopped})
	// completed turns a leecher into a seeder and is counted.
	s.announce(AnnounceRequest{InfoHash: h, PeerID: pid(4), Addr: ap("127.0.0.4:6881"), Left: 0, Event: EventCompleted, NumWant: 0})
	// stopped removes the peer.
	s.announce(AnnounceRequest{InfoHash: h, PeerID: pid(5), Addr: ap("127.0.0.5:6881"), Left: 10, Event: EventStopped})
	got := s.scrape([]InfoHash{h})[h]
	if got != (ScrapeResult{Complete: 2, Incomplete: 2, Downloaded: 1}) {
		t.Errorf("scrape = %+v", got)
	}
	st := s.stats()
	if len(st) != 1 || st[0].Started != 5 || st[0].Stopped != 2 {
		t.Errorf("stats = %+v", st)
	}
}

func TestStateExpiry(t *testing.T) {
	clock := testkit.NewClock(t0)
	s := newTestState(clock, nil) // interval 1m, min 30s: timeout 2m30s
	h := ih(2)
	s.announce(AnnounceRequest{InfoHash: h, PeerID: pid(1), Addr: ap("127.0.0.1:1"), Left: 1, NumWant: -1})
	s.announce(AnnounceRequest{InfoHash: h, PeerID: pid(2), Addr: ap("127.0.0.2:1"), Left: 0, NumWant: -1})
	clock.Advance(2 * time.Minute)
	s.announce(AnnounceRequest{InfoHash: h, PeerID: pid(2), Addr: ap("127.0.0.2:1"), Left: 0, NumWant: -1})
	if n := s.expire(); n != 0 {
		t.Fatalf("expired %d peers before the timeout", n)
	}
	clock.Advance(31 * time.Second) // peer 1 silent for 2m31s
	if n := s.expire(); n != 1 {
		t.Fatalf("expired %d, want 1", n)
	}
	if r := s.scrape([]InfoHash{h})[h]; r.Complete != 1 || r.Incomplete != 0 {
		t.Errorf("after expiry: %+v", r)
	}
	clock.Advance(3 * time.Minute)
	s.expire()
	if len(s.stats()) != 0 {
		t.Error("empty swarm kept")
	}
}

func TestStateAllowList(t *testing.T) {
	s := newTestState(testkit.NewClock(t0), map[InfoHash]bool{ih(1): true})
	if _, err := s.announce(AnnounceRequest{InfoHash: ih(2), PeerID: pid(1), Addr: ap("127.0.0.1:1"), NumWant: -1}); err != errNotAllowed {
		t.Errorf("unlisted torrent: %v", err)
	}
	if _, err := s.announce(AnnounceRequest{InfoHash: ih(1), PeerID: pid(1), Addr: ap("127.0.0.1:1"), NumWant: -1}); err != nil {
		t.Errorf("listed torrent: %v", err)
	}
	if res := s.scrape([]InfoHash{ih(2)}); len(res) != 0 {
		t.Errorf("scrape of an unlisted torrent: %v", res)
	}
}

func startTracker(t *testing.T, cfg Config, deps service.Deps) *Tracker {
	t.Helper()
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	if cfg.UDPAddr == "" {
		cfg.UDPAddr = "127.0.0.1:0"
	}
	deps.Logger = testkit.Logger(t)
	tr, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	return testkit.Start(t, tr)
}

// TestAnnounceOverHTTPAndUDP has peers on their own loopback addresses
// announce over both protocols and find each other.
func TestAnnounceOverHTTPAndUDP(t *testing.T) {
	reg := prometheus.NewRegistry()
	tr := startTracker(t, Config{}, service.Deps{Metrics: reg})
	urls := tr.AnnounceURLs()
	h := ih(7)
	ctx := testkit.Context(t, 10*time.Second)
	for i, u := range []string{urls[0], urls[1], urls[0]} {
		local := netip.AddrFrom4([4]byte{127, 0, 0, byte(10 + i)})
		c := &Client{LocalAddr: local, Timeout: 3 * time.Second}
		defer c.Close()
		left := int64(1000)
		if i == 0 {
			left = 0
		}
		r, err := c.Announce(ctx, u, AnnounceRequest{InfoHash: h, PeerID: pid(byte(i)), Addr: netip.AddrPortFrom(netip.Addr{}, uint16(7000+i)), Left: left, Event: EventStarted, NumWant: -1})
		if err != nil {
			t.Fatalf("announce %d via %s: %v", i, u, err)
		}
		if len(r.Peers) != i {
			t.Fatalf("announce %d via %s got %d peers: %v", i, u, len(r.Peers), r.Peers)
		}
		for _, p := range r.Peers {
			if p.Addr.Port() < 7000 || p.Addr.Port() > 7002 || p.Addr.Addr().As4()[3] != byte(10+int(p.Addr.Port()-7000)) {
				t.Errorf("peer %v: the tracker should see each peer at its own source address", p.Addr)
			}
		}
		if r.Interval != 2*time.Minute {
			t.Errorf("interval %v", r.Interval)
		}
	}
	c := &Client{}
	defer c.Close()
	for _, u := range urls {
		res, err := c.Scrape(ctx, u, []InfoHash{h, ih(99)})
		if err != nil {
			t.Fatalf("scrape %s: %v", u, err)
		}
		if res[h] != (ScrapeResult{Complete: 1, Incomplete: 2}) || res[ih(99)] != (ScrapeResult{}) {
			t.Errorf("scrape %s = %v", u, res)
		}
	}
	if got := testutil.ToFloat64(tr.m.announces.WithLabelValues("udp", "started")); got != 1 {
		t.Errorf("udp started announces = %v", got)
	}
	if got := testutil.ToFloat64(tr.m.announces.WithLabelValues("http", "started")); got != 2 {
		t.Errorf("http started announces = %v", got)
	}
}

func rawQuery(h InfoHash, id PeerID, extra string) string {
	return "info_hash=" + url.QueryEscape(string(h[:])) + "&peer_id=" + url.QueryEscape(string(id[:])) + extra
}

// TestHTTPFormats checks compact (BEP 23), non-compact, IPv6 (peers6, BEP
// 7) answers and failure reasons, by raw HTTP.
func TestHTTPFormats(t *testing.T) {
	tr := startTracker(t, Config{TrustIP: true}, service.Deps{})
	srv := httptest.NewServer(tr.HTTPHandler())
	defer srv.Close()
	h := ih(3)
	get := func(q string) bencode.Value {
		t.Helper()
		resp, err := http.Get(srv.URL + "/announce?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		v, err := bencode.Decode(b, bencode.Limits{})
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		return v
	}
	// Transmission fetching a magnet link's metadata sends left=2^63-1.
	if v := get(rawQuery(ih(33), pid(9), "&port=1111&left=9223372036854775807")); v.Kind != bencode.KindDict {
		t.Fatal("no answer")
	} else if r, ok := v.GetString("failure reason"); ok {
		t.Errorf("left=2^63-1 refused: %s", r)
	}
	get(rawQuery(h, pid(1), "&port=1111&left=0&ip=127.0.0.9"))
	get(rawQuery(h, pid(2), "&port=2222&left=0&ip=::1"))
	v := get(rawQuery(h, pid(3), "&port=3333&left=5&compact=1"))
	peers, _ := v.GetString("peers")
	peers6, _ := v.GetString("peers6")
	if peers != "\x7f\x00\x00\x09\x04\x57" {
		t.Errorf("compact peers = %x", peers)
	}
	if len(peers6) != 18 || peers6[15] != 1 || peers6[16:] != "\x08\xae" {
		t.Errorf("peers6 = %x", peers6)
	}
	v = get(rawQuery(h, pid(3), "&port=3333&left=5&compact=0"))
	list, _ := v.Get("peers")
	if list.Kind != bencode.KindList || len(list.List) != 2 {
		t.Fatalf("non-compact peers: %+v", list)
	}
	for _, p := range list.List {
		if id, _ := p.GetString("peer id"); len(id) != 20 {
			t.Errorf("non-compact entry without peer id: %+v", p)
		}
	}
	for _, bad := range []string{
		"port=1&left=0",
		rawQuery(h, pid(1), "&left=0"),
		rawQuery(h, pid(1), "&port=0&left=0"),
		rawQuery(h, pid(1), "&port=1&left=-1"),
		rawQuery(h, pid(1), "&port=1"),
		rawQuery(h, pid(1), "&port=1&left=0&event=bogus"),
		"info_hash=short&peer_id=x&port=1&left=0",
	} {
		v := get(bad)
		if r, ok := v.GetString("failure reason"); !ok || r == "" {
			t.Errorf("%s: no failure reason: %+v", bad, v)
		}
	}
}

func udpPacket(cid uint64, action, tid uint32, body []byte) []byte {
	b := make([]byte, 16, 16+len(body))
	binary.BigEndian.PutUint64(b, cid)
	binary.BigEndian.PutUint32(b[8:], action)
	binary.BigEndian.PutUint32(b[12:], tid)
	return append(b, body...)
}

// TestUDPConnectionIDExpiry moves a settable clock: an id works for at
// least a minute and is refused after two.
func TestUDPConnectionIDExpiry(t *testing.T) {
	clock := testkit.NewClock(t0.Add(10 * time.Second))
	tr, err := New(Config{UDPAddr: "127.0.0.1:0"}, service.Deps{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	from := ap("127.0.0.5:40000")
	reply := tr.HandleUDP(udpPacket(udpProtocolID, actionConnect, 77, nil), from)
	if len(reply) != 16 || binary.BigEndian.Uint32(reply) != actionConnect || binary.BigEndian.Uint32(reply[4:]) != 77 {
		t.Fatalf("connect reply %x", reply)
	}
	cid := binary.BigEndian.Uint64(reply[8:])
	ann := make([]byte, 82)
	h := ih(4)
	copy(ann, h[:])
	id := pid(1)
	copy(ann[20:], id[:])
	binary.BigEndian.PutUint64(ann[48:], 500) // left
	binary.BigEndian.PutUint32(ann[64:], uint32(EventStarted))
	binary.BigEndian.PutUint32(ann[76:], 0xffffffff) // numwant -1
	binary.BigEndian.PutUint16(ann[80:], 6881)
	announce := func() []byte { return tr.HandleUDP(udpPacket(cid, actionAnnounce, 78, ann), from) }
	clock.Advance(59 * time.Second)
	if r := announce(); binary.BigEndian.Uint32(r) != actionAnnounce || binary.BigEndian.Uint32(r[12:]) != 1 {
		t.Fatalf("announce with a fresh id: %x", r)
	}
	// From another address the same id is refused.
	if r := tr.HandleUDP(udpPacket(cid, actionAnnounce, 79, ann), ap("127.0.0.6:40000")); binary.BigEndian.Uint32(r) != actionError {
		t.Errorf("id reused from another address: %x", r)
	}
	clock.Advance(61 * time.Second) // 2 minutes after the connect
	r := announce()
	if binary.BigEndian.Uint32(r) != actionError || !strings.Contains(string(r[8:]), "expired") {
		t.Errorf("announce with an expired id: %x", r)
	}
	// Garbage is ignored; a short announce gets an error naming the size.
	if r := tr.HandleUDP([]byte("hello"), from); r != nil {
		t.Errorf("garbage answered: %x", r)
	}
	if r := tr.HandleUDP(udpPacket(cid, actionAnnounce, 80, ann[:10]), from); binary.BigEndian.Uint32(r) != actionError {
		t.Errorf("short announce: %x", r)
	}
}

func TestSnapshotRestore(t *testing.T) {
	snap := filepath.Join(t.TempDir(), "tracker.json")
	tr := startTracker(t, Config{Snapshot: snap}, service.Deps{})
	c := &Client{}
	defer c.Close()
	ctx := testkit.Context(t, 5*time.Second)
	h := ih(5)
	for i := byte(1); i <= 3; i++ {
		ev := EventStarted
		if i == 3 {
			ev = EventCompleted
		}
		if _, err := c.Announce(ctx, tr.AnnounceURLs()[0], AnnounceRequest{InfoHash: h, PeerID: pid(i), Addr: netip.AddrPortFrom(netip.Addr{}, 6000+uint16(i)), Left: int64(3 - i), Event: ev, NumWant: -1}); err != nil {
			t.Fatal(err)
		}
	}
	before := tr.Stats()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	c.Close()
	tr2 := startTracker(t, Config{Snapshot: snap}, service.Deps{})
	after := tr2.Stats()
	if len(after) != 1 || after[0] != before[0] || after[0].Complete != 1 || after[0].Downloaded != 1 {
		t.Fatalf("restored %+v, had %+v", after, before)
	}
	peers, _ := tr2.st.peers(h)
	if len(peers) != 3 {
		t.Errorf("restored %d peers", len(peers))
	}
}

func TestAdminHandler(t *testing.T) {
	tr := startTracker(t, Config{}, service.Deps{})
	h := ih(6)
	tr.st.announce(AnnounceRequest{InfoHash: h, PeerID: pid(1), Addr: ap("127.0.0.1:6881"), Left: 0, NumWant: -1})
	tr.st.announce(AnnounceRequest{InfoHash: h, PeerID: pid(2), Addr: ap("127.0.0.2:6881"), Left: 9, NumWant: -1})
	srv := httptest.NewServer(tr.AdminHandler())
	defer srv.Close()
	var stats struct {
		Torrents, Peers int
		List            []TorrentStats
	}
	getJSON(t, srv.URL+"/torrent/tracker/stats", &stats)
	if stats.Torrents != 1 || stats.Peers != 2 || stats.List[0].Complete != 1 {
		t.Errorf("stats %+v", stats)
	}
	var peers []PeerInfo
	getJSON(t, srv.URL+"/torrent/tracker/peers?info_hash="+hex.EncodeToString(h[:]), &peers)
	if len(peers) != 2 || peers[0].Addr != "127.0.0.1:6881" || !peers[0].Seeder || peers[1].Left != 9 || !strings.HasPrefix(peers[0].PeerID, "-AL0001-") {
		t.Errorf("peers %+v", peers)
	}
	resp, err := http.Get(srv.URL + "/torrent/tracker/peers?info_hash=" + strings.Repeat("0", 40))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown torrent: %d", resp.StatusCode)
	}
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseAnnounceQuery(f *testing.F) {
	f.Add(rawQuery(ih(1), pid(1), "&port=6881&uploaded=0&downloaded=0&left=10&event=started&compact=1&numwant=30"))
	f.Add(rawQuery(ih(1), pid(1), "&port=6881&left=0&ip=::1&no_peer_id=1&compact=0"))
	f.Add("info_hash=%zz")
	f.Fuzz(func(t *testing.T, q string) {
		req, _, _, err := ParseAnnounceQuery(q, netip.MustParseAddr("127.0.0.1"), true)
		if err != nil {
			return
		}
		if req.Addr.Port() == 0 || req.Left < 0 || req.Uploaded < 0 || req.Downloaded < 0 || !req.Addr.Addr().IsValid() || req.Event > EventStopped {
			t.Fatalf("accepted an invalid request: %+v", req)
		}
		ParseScrapeQuery(q, 10)
	})
}

func FuzzParseUDPRequest(f *testing.F) {
	f.Add(udpPacket(udpProtocolID, actionConnect, 1, nil))
	f.Add(udpPacket(5, actionAnnounce, 1, make([]byte, 82)))
	f.Add(udpPacket(5, actionScrape, 1, make([]byte, 40)))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := New(Config{UDPAddr: "127.0.0.1:0"}, service.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		// Whatever comes in, the answer is a well-formed BEP 15 message
		// carrying the request's transaction id, or nothing.
		r := tr.HandleUDP(b, ap("127.0.0.1:1000"))
		if r == nil {
			return
		}
		if len(r) < 8 || binary.BigEndian.Uint32(r[4:]) != binary.BigEndian.Uint32(b[12:]) {
			t.Fatalf("reply %x to %x", r, b)
		}
	})
}

func FuzzParseAnnounceResponse(f *testing.F) {
	f.Add(encodeAnnounce(AnnounceResult{Interval: time.Minute, Peers: []Peer{{Addr: ap("127.0.0.1:1")}, {Addr: ap("[::1]:2")}}}, true, false))
	f.Add(encodeAnnounce(AnnounceResult{Interval: time.Minute, Peers: []Peer{{Addr: ap("127.0.0.1:1")}}}, false, false))
	f.Add(encodeFailure("no"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseAnnounceResponse(b)
		if err != nil {
			return
		}
		for _, p := range r.Peers {
			if !p.Addr.IsValid() || p.Addr.Port() == 0 {
				t.Fatalf("invalid peer %v accepted", p.Addr)
			}
		}
		ParseScrapeResponse(b)
	})
}

func testutilValue(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

// TestHTTPConnectionCaps: the HTTP side is accepted through the shared
// transport, so one client address cannot hold more than MaxConnsPerIP
// connections (the next gets 503) while another address is served.
func TestHTTPConnectionCaps(t *testing.T) {
	tr := startTracker(t, Config{MaxConnsPerIP: 2}, service.Deps{})
	addr := tr.Addrs()[0].String()
	dialFrom := func(ip string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 3 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	status := func(c net.Conn) string {
		t.Helper()
		io.WriteString(c, "GET /scrape HTTP/1.1\r\nHost: t\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("reading the status line: %v", err)
		}
		return strings.TrimSpace(line)
	}
	held := []net.Conn{dialFrom("127.0.0.21"), dialFrom("127.0.0.21")}
	for _, c := range held {
		if got := status(c); !strings.HasPrefix(got, "HTTP/1.1 200") {
			t.Fatalf("a connection within the cap: %q", got)
		}
	}
	if got := status(dialFrom("127.0.0.21")); got != "HTTP/1.1 503 Service Unavailable" {
		t.Fatalf("a third connection from one address: %q, want 503", got)
	}
	if got := status(dialFrom("127.0.0.22")); !strings.HasPrefix(got, "HTTP/1.1 200") {
		t.Fatalf("another address: %q, want 200", got)
	}
}
