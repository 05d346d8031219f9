package tracker

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/applayer/applayer/internal/atomicfile"
)

// InfoHash is a torrent's 20-byte SHA-1 info-hash.
type InfoHash [20]byte

// PeerID is the 20-byte id a peer announces with.
type PeerID [20]byte

// Event is the event of an announce.
type Event uint8

// Announce events (BEP 3; the numbers are BEP 15's).
const (
	EventNone Event = iota
	EventCompleted
	EventStarted
	EventStopped
)

func (e Event) String() string {
	switch e {
	case EventCompleted:
		return "completed"
	case EventStarted:
		return "started"
	case EventStopped:
		return "stopped"
	}
	return ""
}

// AnnounceRequest is one announce, from HTTP or UDP.
type AnnounceRequest struct {
	InfoHash   InfoHash
	PeerID     PeerID
	Addr       netip.AddrPort // where other peers reach this one
	Uploaded   int64
	Downloaded int64
	Left       int64
	Event      Event
	// NumWant is how many peers the client asks for; -1 means the default.
	NumWant int
}

// Peer is a peer handed out in an announce response.
type Peer struct {
	ID   PeerID
	Addr netip.AddrPort
}

// AnnounceResult is what the tracker answers an announce with.
type AnnounceResult struct {
	Interval    time.Duration
	MinInterval time.Duration
	Seeders     int // complete
	Leechers    int // incomplete
	Peers       []Peer
}

// ScrapeResult is one torrent's counts (BEP 48's field names).
type ScrapeResult struct {
	Complete   int `json:"complete"`
	Incomplete int `json:"incomplete"`
	Downloaded int `json:"downloaded"`
}

// peerKey identifies one registration: a peer id from one address family
// (a dual-stack client announces once per family).
type peerKey struct {
	id PeerID
	v6 bool
}

type peerEntry struct {
	Addr       netip.AddrPort
	Uploaded   int64
	Downloaded int64
	Left       int64
	LastSeen   time.Time
	FirstSeen  time.Time
}

type swarm struct {
	peers      map[peerKey]*peerEntry
	seeders    int
	downloaded int // completed events
	started    int
	stopped    int
}

// errNotAllowed is returned for info-hashes outside the allow-list.
var errNotAllowed = errors.New("torrent not allowed on this tracker")

// errTooManyTorrents is returned when the table of torrents is full.
var errTooManyTorrents = errors.New("tracker is full")

// state is the tracker's table of swarms, safe for concurrent use.
type state struct {
	mu     sync.Mutex
	swarms map[InfoHash]*swarm
	allow  map[InfoHash]bool // nil: any torrent
	cfg    *Config
	now    func() time.Time
	rand   *rand.Rand
}

func newState(cfg *Config, allow map[InfoHash]bool, now func() time.Time, seed uint64) *state {
	return &state{swarms: map[InfoHash]*swarm{}, allow: allow, cfg: cfg, now: now, rand: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// announce records req and picks peers for the answer.
func (s *state) announce(req AnnounceRequest) (AnnounceResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.allow != nil && !s.allow[req.InfoHash] {
		return AnnounceResult{}, errNotAllowed
	}
	now := s.now()
	sw := s.swarms[req.InfoHash]
	if sw == nil {
		if req.Event == EventStopped {
			return s.resultLocked(nil, req), nil
		}
		if len(s.swarms) >= s.cfg.MaxTorrents {
			return AnnounceResult{}, errTooManyTorrents
		}
		sw = &swarm{peers: map[peerKey]*peerEntry{}}
		s.swarms[req.InfoHash] = sw
	}
	s.expireSwarmLocked(sw, now)
	key := peerKey{id: req.PeerID, v6: req.Addr.Addr().Is6()}
	p := sw.peers[key]
	switch req.Event {
	case EventStarted:
		sw.started++
	case EventCompleted:
		sw.downloaded++
	case EventStopped:
		sw.stopped++
		if p != nil {
			if p.Left == 0 {
				sw.seeders--
			}
			delete(sw.peers, key)
		}
		return s.resultLocked(sw, req), nil
	}
	if p == nil {
		if len(sw.peers) >= s.cfg.MaxPeersPerTorrent {
			return AnnounceResult{}, errTooManyTorrents
		}
		p = &peerEntry{FirstSeen: now, Left: -1}
		sw.peers[key] = p
	}
	if p.Left == 0 {
		sw.seeders--
	}
	p.Addr, p.Uploaded, p.Downloaded, p.Left, p.LastSeen = req.Addr, req.Uploaded, req.Downloaded, req.Left, now
	if p.Left == 0 {
		sw.seeders++
	}
	return s.resultLocked(sw, req), nil
}

// resultLocked picks up to numwant peers other than the requester, at
// random. Seeds are not withheld from seeds: a client starting from a
// magnet link announces left=0 before it knows the size (aria2 does) and
// needs the seeds for the metadata.
func (s *state) resultLocked(sw *swarm, req AnnounceRequest) AnnounceResult {
	r := AnnounceResult{Interval: s.cfg.Interval.D(), MinInterval: s.cfg.MinInterval.D()}
	if sw == nil || req.Event == EventStopped {
		if sw != nil {
			r.Seeders, r.Leechers = sw.seeders, len(sw.peers)-sw.seeders
		}
		return r
	}
	r.Seeders, r.Leechers = sw.seeders, len(sw.peers)-sw.seeders
	want := req.NumWant
	if want < 0 {
		want = s.cfg.DefaultNumWant
	}
	want = min(want, s.cfg.MaxNumWant)
	if want == 0 {
		return r
	}
	cand := make([]Peer, 0, len(sw.peers))
	for k, p := range sw.peers {
		if k.id == req.PeerID {
			continue
		}
		cand = append(cand, Peer{ID: k.id, Addr: p.Addr})
	}
	// Map order is random but not uniformly so; sort, then shuffle with the
	// tracker's own generator.
	sort.Slice(cand, func(i, j int) bool {
		if cand[i].ID != cand[j].ID {
			return string(cand[i].ID[:]) < string(cand[j].ID[:])
		}
		return cand[i].Addr.Addr().Less(cand[j].Addr.Addr())
	})
	s.rand.Shuffle(len(cand), func(i, j int) { cand[i], cand[j] = cand[j], cand[i] })
	if len(cand) > want {
		cand = cand[:want]
	}
	r.Peers = cand
	return r
}

// expireSwarmLocked drops peers not heard from within PeerTimeout.
func (s *state) expireSwarmLocked(sw *swarm, now time.Time) int {
	n := 0
	for k, p := range sw.peers {
		if now.Sub(p.LastSeen) > s.cfg.PeerTimeout.D() {
			if p.Left == 0 {
				sw.seeders--
			}
			delete(sw.peers, k)
			n++
		}
	}
	return n
}

// expire drops silent peers from every swarm, and swarms left empty with
// no history worth keeping; it returns how many peers went.
func (s *state) expire() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	n := 0
	for h, sw := range s.swarms {
		n += s.expireSwarmLocked(sw, now)
		if len(sw.peers) == 0 && sw.downloaded == 0 {
			delete(s.swarms, h)
		}
	}
	return n
}

func (s *state) scrape(hashes []InfoHash) map[InfoHash]ScrapeResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[InfoHash]ScrapeResult{}
	if len(hashes) == 0 {
		for h := range s.swarms {
			hashes = append(hashes, h)
			if len(hashes) >= s.cfg.MaxScrape {
				break
			}
		}
	}
	for _, h := range hashes {
		if s.allow != nil && !s.allow[h] {
			continue
		}
		sw := s.swarms[h]
		if sw == nil {
			out[h] = ScrapeResult{}
			continue
		}
		out[h] = ScrapeResult{Complete: sw.seeders, Incomplete: len(sw.peers) - sw.seeders, Downloaded: sw.downloaded}
	}
	return out
}

// TorrentStats is one torrent's line in Stats.
type TorrentStats struct {
	InfoHash string `json:"info_hash"`
	ScrapeResult
	Started int `json:"started"`
	Stopped int `json:"stopped"`
}

// PeerInfo is one row of a torrent's peer table.
type PeerInfo struct {
	PeerID     string    `json:"peer_id"`
	Addr       string    `json:"addr"`
	Uploaded   int64     `json:"uploaded"`
	Downloaded int64     `json:"downloaded"`
	Left       int64     `json:"left"`
	Seeder     bool      `json:"seeder"`
	FirstSeen  time.Time `json:"first_seen"`
	LastSeen   time.Time `json:"last_seen"`
}

func (s *state) stats() []TorrentStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]TorrentStats, 0, len(s.swarms))
	for h, sw := range s.swarms {
		out = append(out, TorrentStats{
			InfoHash:     hex.EncodeToString(h[:]),
			ScrapeResult: ScrapeResult{Complete: sw.seeders, Incomplete: len(sw.peers) - sw.seeders, Downloaded: sw.downloaded},
			Started:      sw.started, Stopped: sw.stopped,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].InfoHash < out[j].InfoHash })
	return out
}

func (s *state) peers(h InfoHash) ([]PeerInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sw := s.swarms[h]
	if sw == nil {
		return nil, false
	}
	out := make([]PeerInfo, 0, len(sw.peers))
	for k, p := range sw.peers {
		out = append(out, PeerInfo{PeerID: printableID(k.id), Addr: p.Addr.String(), Uploaded: p.Uploaded, Downloaded: p.Downloaded,
			Left: p.Left, Seeder: p.Left == 0, FirstSeen: p.FirstSeen, LastSeen: p.LastSeen})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out, true
}

// printableID shows a peer id as text when it is printable (the usual
// "-AR1234-" style prefixes) and hex otherwise.
func printableID(id PeerID) string {
	for _, c := range id {
		if c < 0x20 || c > 0x7e {
			return hex.EncodeToString(id[:])
		}
	}
	return string(id[:])
}

// snapshot is the on-disk form of the state.
type snapshot struct {
	Version  int                      `json:"version"`
	Saved    time.Time                `json:"saved"`
	Torrents map[string]snapshotSwarm `json:"torrents"`
}

type snapshotSwarm struct {
	Downloaded int            `json:"downloaded"`
	Started    int            `json:"started"`
	Stopped    int            `json:"stopped"`
	Peers      []snapshotPeer `json:"peers"`
}

type snapshotPeer struct {
	ID         string    `json:"id"` // hex
	Addr       string    `json:"addr"`
	Uploaded   int64     `json:"uploaded"`
	Downloaded int64     `json:"downloaded"`
	Left       int64     `json:"left"`
	FirstSeen  time.Time `json:"first_seen"`
	LastSeen   time.Time `json:"last_seen"`
}

// save writes the state to path atomically (temporary file, then rename).
func (s *state) save(path string) error {
	s.mu.Lock()
	snap := snapshot{Version: 1, Saved: s.now(), Torrents: map[string]snapshotSwarm{}}
	for h, sw := range s.swarms {
		ss := snapshotSwarm{Downloaded: sw.downloaded, Started: sw.started, Stopped: sw.stopped}
		for k, p := range sw.peers {
			ss.Peers = append(ss.Peers, snapshotPeer{ID: hex.EncodeToString(k.id[:]), Addr: p.Addr.String(), Uploaded: p.Uploaded,
				Downloaded: p.Downloaded, Left: p.Left, FirstSeen: p.FirstSeen, LastSeen: p.LastSeen})
		}
		sort.Slice(ss.Peers, func(i, j int) bool { return ss.Peers[i].ID+ss.Peers[i].Addr < ss.Peers[j].ID+ss.Peers[j].Addr })
		snap.Torrents[hex.EncodeToString(h[:])] = ss
	}
	s.mu.Unlock()
	data, err := json.MarshalIndent(snap, "", " ")
	if err != nil {
		return fmt.Errorf("tracker: snapshot: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("tracker: snapshot: %w", err)
	}
	if err := atomicfile.Write(path, data, 0o644); err != nil {
		return fmt.Errorf("tracker: snapshot: %w", err)
	}
	return nil
}

// load restores a snapshot written by save. A missing file is not an
// error (first start); peers already past PeerTimeout are dropped by the
// next expiry.
func (s *state) load(path string) (int, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("tracker: restore: %w", err)
	}
	var snap snapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return 0, fmt.Errorf("tracker: restore %s: %w", path, err)
	}
	if snap.Version != 1 {
		return 0, fmt.Errorf("tracker: restore %s: unknown version %d", path, snap.Version)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for hs, ss := range snap.Torrents {
		var h InfoHash
		if b, err := hex.DecodeString(hs); err != nil || len(b) != 20 {
			return 0, fmt.Errorf("tracker: restore %s: bad info-hash %q", path, hs)
		} else {
			copy(h[:], b)
		}
		sw := &swarm{peers: map[peerKey]*peerEntry{}, downloaded: ss.Downloaded, started: ss.Started, stopped: ss.Stopped}
		for _, sp := range ss.Peers {
			var id PeerID
			if b, err := hex.DecodeString(sp.ID); err != nil || len(b) != 20 {
				return 0, fmt.Errorf("tracker: restore %s: bad peer id %q", path, sp.ID)
			} else {
				copy(id[:], b)
			}
			ap, err := netip.ParseAddrPort(sp.Addr)
			if err != nil {
				return 0, fmt.Errorf("tracker: restore %s: %w", path, err)
			}
			sw.peers[peerKey{id: id, v6: ap.Addr().Is6()}] = &peerEntry{Addr: ap, Uploaded: sp.Uploaded, Downloaded: sp.Downloaded,
				Left: sp.Left, FirstSeen: sp.FirstSeen, LastSeen: sp.LastSeen}
			if sp.Left == 0 {
				sw.seeders++
			}
			n++
		}
		s.swarms[h] = sw
	}
	return n, nil
}
