package swarm

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/torrent/peerwire"
)

// Our extended message ids (what peers send us with).
const (
	extIDPex      = 1
	extIDMetadata = 2
)

// pexEvery is how often peers are told about our other peers (BEP 11:
// at most once a minute).
const pexEvery = time.Minute

// maxKnown caps the candidate addresses kept from trackers and PEX.
const maxKnown = 2000

// peerConn is one neighbour. Its fields are guarded by Client.mu, except
// the meters (their own locks) and nc.
type peerConn struct {
	c        *Client
	id       int
	nc       net.Conn
	addr     netip.AddrPort
	outgoing bool
	hs       peerwire.Handshake
	fast     bool

	amChoking, amInterested     bool
	peerChoking, peerInterested bool
	has                         Bitfield
	rawBitfield                 []byte // before the metadata arrives
	haveAll                     bool
	pending                     map[Block]time.Time // our requests to it
	queue                       int                 // current pipeline depth
	uploads                     []Block             // its requests to us
	extMetadata                 uint8               // its id for ut_metadata
	extPex                      uint8               // its id for ut_pex
	metadataSize                int
	listenPort                  uint16 // from its extension handshake
	pexSent                     map[netip.AddrPort]bool
	offers                      map[int]bool // super-seeding: pieces offered, not yet had
	told                        Bitfield     // super-seeding: pieces we sent a have for
	lastPex                     time.Time

	down, up  Meter
	lastBlock time.Time
	connected time.Time
	lastSend  time.Time
	// unchokedAt is when we last unchoked the peer and upAtUnchoke our
	// upload to it then (the round-robin seed choker's quota).
	unchokedAt  time.Time
	upAtUnchoke int64
	// marks are the byte counts at the last chokeWindow choke rounds,
	// oldest first: the choker ranks by the rates since the oldest.
	marks []rateMark

	out    []peerwire.Message
	notify chan struct{}
	closed chan struct{}
}

// run registers a handshaken connection, sends our state and serves it
// until it ends.
func (c *Client) run(nc net.Conn, addr netip.AddrPort, h peerwire.Handshake, outgoing bool) {
	defer nc.Close()
	nc.SetDeadline(time.Time{})
	now := c.deps.Now()
	c.mu.Lock()
	if len(c.peers) >= c.cfg.MaxPeers || c.banned[addr.Addr()] {
		c.mu.Unlock()
		return
	}
	for _, p := range c.peers {
		if p.hs.PeerID != h.PeerID {
			continue
		}
		// Already connected to this peer. When both sides dialled at
		// once, each would keep the connection it registered first and
		// drop the other's, and both would go (until the next dial,
		// 10 s on): keep the one the lower peer id dialled, which both
		// sides pick alike.
		if p.outgoing == outgoing || outgoing != (bytes.Compare(c.peerID[:], h.PeerID[:]) < 0) {
			c.mu.Unlock()
			return
		}
		p.nc.Close() // its run ends and cleans up
	}
	select {
	case <-c.stop:
		c.mu.Unlock()
		return
	default:
	}
	c.nextID++
	p := &peerConn{c: c, id: c.nextID, nc: nc, addr: addr, outgoing: outgoing, hs: h,
		fast:      h.Fast(),
		amChoking: true, peerChoking: true,
		pending: map[Block]time.Time{}, queue: 16,
		connected: now, lastSend: now,
		notify: make(chan struct{}, 1), closed: make(chan struct{}),
	}
	c.peers[p.id] = p
	c.m.conns.Inc()
	if h.Extended() {
		exts := map[string]uint8{peerwire.ExtMetadata: extIDMetadata}
		if c.pexAllowedLocked() {
			exts[peerwire.ExtPEX] = extIDPex
		}
		eh := peerwire.ExtHandshake{M: exts, Port: c.listenPort,
			Client: ClientName, ReqQ: c.cfg.MaxPeerRequests, YourIP: addr.Addr()}
		if c.infoRaw != nil {
			eh.MetadataSize = len(c.infoRaw)
		}
		p.sendLocked(peerwire.Message{ID: peerwire.Extended, ExtID: 0, ExtPayload: eh.Bytes()})
	}
	if c.cfg.DHT != nil && h.DHT() {
		// BEP 5: tell a DHT-capable peer our node's port.
		p.sendLocked(peerwire.Message{ID: peerwire.Port, Port: c.cfg.DHT.AddrPort().Port()})
	}
	if c.info != nil {
		p.has = NewBitfield(c.info.NumPieces())
		have := c.picker.Have()
		switch {
		case c.super.active():
			// Spreading: the peer learns our pieces a few at a time.
			if p.fast {
				p.sendLocked(peerwire.Message{ID: peerwire.HaveNone})
			}
			c.super.offerLocked(c, p)
		case p.fast && c.picker.Done():
			p.sendLocked(peerwire.Message{ID: peerwire.HaveAll})
		case p.fast && have.Count() == 0:
			p.sendLocked(peerwire.Message{ID: peerwire.HaveNone})
		case have.Count() > 0:
			p.sendLocked(peerwire.Message{ID: peerwire.Bitfield, Bitfield: have.Clone()})
		}
	} else if p.fast {
		p.sendLocked(peerwire.Message{ID: peerwire.HaveNone})
	}
	c.mu.Unlock()
	c.log.Debug("swarm: peer connected", "peer", addr, "outgoing", outgoing, "client", string(h.PeerID[:8]))
	c.publish(p, "connected")
	c.kick()

	done := make(chan struct{})
	go func() { defer close(done); p.writeLoop() }()
	err := p.readLoop()
	close(p.closed)
	nc.Close()
	<-done
	c.mu.Lock()
	delete(c.peers, p.id)
	c.downGone[addr.Addr()] += p.down.Total()
	c.m.conns.Dec()
	if !p.amChoking {
		c.fillSlotLocked(addr.String() + " left")
	}
	for b := range p.pending {
		if c.picker != nil {
			c.picker.Unrequest(p.id, b)
		}
	}
	if c.picker != nil && p.has != nil {
		c.picker.PeerBitfield(p.has, -1)
	}
	if c.meta != nil {
		c.meta.peerGone(p.id)
	}
	c.super.peerGoneLocked(p)
	c.mu.Unlock()
	c.log.Debug("swarm: peer gone", "peer", addr, "err", err)
	c.kick()
}

func (c *Client) publish(p *peerConn, what string) {
	if c.trace.Enabled() {
		c.trace.Publish(trace.Event{Proto: "bittorrent", From: p.addr.String(), To: c.selfAddr(), Summary: what})
	}
}

// sendLocked queues a message for the writer.
func (p *peerConn) sendLocked(m peerwire.Message) {
	p.out = append(p.out, m)
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

func (p *peerConn) wakeWriter() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// writeLoop sends queued messages and serves the peer's requests, rate
// limited, until the connection closes.
func (p *peerConn) writeLoop() {
	c := p.c
	w := bufio.NewWriterSize(p.nc, 64<<10)
	var buf []byte
	for {
		c.mu.Lock()
		msgs := p.out
		p.out = nil
		var up *Block
		if len(p.uploads) > 0 && !p.amChoking {
			b := p.uploads[0]
			p.uploads = p.uploads[1:]
			up = &b
		}
		store := c.store
		c.mu.Unlock()
		// A peer that stops reading stalls our writes: give each batch
		// IdleTimeout from now.
		p.nc.SetWriteDeadline(time.Now().Add(c.cfg.IdleTimeout.D()))
		for _, m := range msgs {
			buf = m.AppendTo(buf[:0])
			if _, err := w.Write(buf); err != nil {
				p.nc.Close()
				return
			}
		}
		if up != nil {
			data, err := store.ReadBlock(up.Piece, up.Begin, up.Length)
			if err != nil {
				c.log.Error("swarm: reading a block to upload", "err", err)
				p.nc.Close()
				return
			}
			now := c.deps.Now()
			wait := max(c.upB.Take(now, len(data)), c.cfg.GlobalUpload.Take(now, len(data)))
			if wait > 0 {
				if err := w.Flush(); err != nil {
					p.nc.Close()
					return
				}
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-p.closed:
					t.Stop()
					return
				}
				p.nc.SetWriteDeadline(time.Now().Add(c.cfg.IdleTimeout.D()))
			}
			buf = peerwire.Message{ID: peerwire.Piece, Index: uint32(up.Piece), Begin: uint32(up.Begin), Block: data}.AppendTo(buf[:0])
			if _, err := w.Write(buf); err != nil {
				p.nc.Close()
				return
			}
			p.up.Add(c.deps.Now(), len(data))
			c.m.up.Add(float64(len(data)))
			c.mu.Lock()
			c.uploaded += int64(len(data))
			c.super.uploadedLocked(*up)
			c.mu.Unlock()
		}
		if len(msgs) > 0 || up != nil {
			c.mu.Lock()
			more := len(p.out) > 0 || (len(p.uploads) > 0 && !p.amChoking)
			p.lastSend = c.deps.Now()
			c.mu.Unlock()
			if more {
				continue
			}
		}
		if err := w.Flush(); err != nil {
			p.nc.Close()
			return
		}
		select {
		case <-p.notify:
		case <-p.closed:
			return
		}
	}
}

// readLoop reads and handles messages until an error.
func (p *peerConn) readLoop() error {
	c := p.c
	r := bufio.NewReaderSize(p.nc, 64<<10)
	var buf []byte
	for {
		p.nc.SetReadDeadline(time.Now().Add(c.cfg.IdleTimeout.D()))
		m, b, err := peerwire.ReadMessage(r, peerwire.DefaultMaxMessage, buf)
		buf = b
		if err != nil {
			return err
		}
		if m.ID == peerwire.Piece && !m.KeepAlive {
			// Download rate limit: hold the reader (TCP pushes back).
			now := c.deps.Now()
			if wait := max(c.downB.Take(now, len(m.Block)), c.cfg.GlobalDownload.Take(now, len(m.Block))); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-c.stop:
					t.Stop()
					return fmt.Errorf("swarm: stopping")
				}
			}
		}
		c.mu.Lock()
		err = p.handleLocked(m)
		c.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// handleLocked acts on one message.
func (p *peerConn) handleLocked(m peerwire.Message) error {
	c := p.c
	if m.KeepAlive {
		return nil
	}
	switch m.ID {
	case peerwire.Choke:
		p.peerChoking = true
		if !p.fast {
			p.dropPendingLocked()
		}
	case peerwire.Unchoke:
		p.peerChoking = false
		p.fillRequestsLocked()
	case peerwire.Interested:
		p.peerInterested = true
		p.maybeUnchokeNowLocked()
	case peerwire.NotInterested:
		p.peerInterested = false
		if !p.amChoking {
			// Its slot would idle until the next round: give it to an
			// interested peer now.
			p.setChokedLocked(true)
			c.fillSlotLocked(p.addr.String() + " lost interest")
		}
	case peerwire.Have:
		if c.info == nil {
			return nil
		}
		i := int(m.Index)
		if i >= c.info.NumPieces() {
			return fmt.Errorf("swarm: have %d of %d pieces", i, c.info.NumPieces())
		}
		if !p.has.Has(i) {
			p.has.Set(i)
			c.picker.PeerHas(i)
			c.super.peerHasLocked(c, p, i)
		}
		p.updateInterestLocked()
		p.fillRequestsLocked()
	case peerwire.Bitfield:
		if c.info == nil {
			p.rawBitfield = append([]byte(nil), m.Bitfield...)
			return nil
		}
		return p.applyBitfieldLocked(m.Bitfield)
	case peerwire.HaveAll, peerwire.HaveNone:
		if !p.fast {
			return fmt.Errorf("swarm: %s without the fast extension", m.ID)
		}
		p.haveAll = m.ID == peerwire.HaveAll
		if c.info != nil && p.haveAll {
			return p.applyBitfieldLocked(allPieces(c.info.NumPieces()))
		}
	case peerwire.Request:
		return p.onRequestLocked(m)
	case peerwire.Cancel:
		b := Block{int(m.Index), int(m.Begin), int(m.Length)}
		for i, u := range p.uploads {
			if u == b {
				p.uploads = append(p.uploads[:i], p.uploads[i+1:]...)
				break
			}
		}
	case peerwire.Piece:
		return p.onPieceLocked(m)
	case peerwire.Reject:
		if !p.fast {
			return fmt.Errorf("swarm: reject without the fast extension")
		}
		b := Block{int(m.Index), int(m.Begin), int(m.Length)}
		if _, ok := p.pending[b]; ok {
			delete(p.pending, b)
			c.picker.Unrequest(p.id, b)
		}
	case peerwire.Extended:
		return p.onExtendedLocked(m)
	case peerwire.Port:
		// A DHT node at the peer's address: add it to our routing table.
		if c.cfg.DHT != nil && m.Port != 0 {
			c.cfg.DHT.AddNode(netip.AddrPortFrom(p.addr.Addr(), m.Port))
		}
	}
	// Port, Suggest, AllowedFast and unknown messages are ignored.
	return nil
}

func (p *peerConn) applyBitfieldLocked(b []byte) error {
	c := p.c
	n := c.info.NumPieces()
	if err := peerwire.CheckBitfield(b, n); err != nil {
		return err
	}
	if p.has != nil {
		c.picker.PeerBitfield(p.has, -1)
	}
	p.has = Bitfield(append([]byte(nil), b...))
	c.picker.PeerBitfield(p.has, +1)
	c.super.bitfieldLocked(c, p)
	p.updateInterestLocked()
	p.fillRequestsLocked()
	return nil
}

// infoArrivedLocked applies what arrived before the metadata.
func (p *peerConn) infoArrivedLocked() {
	c := p.c
	n := c.info.NumPieces()
	p.has = NewBitfield(n)
	switch {
	case p.haveAll:
		p.applyBitfieldLocked(allPieces(n))
	case p.rawBitfield != nil:
		if err := p.applyBitfieldLocked(p.rawBitfield); err != nil {
			p.nc.Close()
		}
	}
}

func (p *peerConn) updateInterestLocked() {
	c := p.c
	want := c.picker != nil && !c.picker.Done() && c.picker.Interesting(p.has)
	if want != p.amInterested {
		p.amInterested = want
		if want {
			p.sendLocked(peerwire.Message{ID: peerwire.Interested})
		} else {
			p.sendLocked(peerwire.Message{ID: peerwire.NotInterested})
		}
	}
}

// maybeUnchokeNowLocked unchokes a newly interested peer at once when the
// choker has a free slot (fewer than Slots+1 interested peers unchoked),
// instead of making it wait for the next round.
func (p *peerConn) maybeUnchokeNowLocked() {
	c := p.c
	if !p.amChoking || c.cfg.FreeRider || !c.slotEligibleLocked(p, c.deps.Now()) {
		return
	}
	if n := c.unchokedInterestedLocked(); n < c.choker.Slots+1 {
		p.setChokedLocked(false)
		if c.trace.Enabled() {
			c.trace.Publish(trace.Event{Type: trace.State, Proto: "bittorrent/choke", From: c.selfAddr(),
				Summary: fmt.Sprintf("unchoke %s: interested and a slot is free (%d of %d in use)", p.addr, n, c.choker.Slots+1)})
		}
	}
}

// slotEligibleLocked reports whether p may have a slot that fell free
// between rounds. While leeching with tit-for-tat, a peer that has sent us
// nothing in the choke interval since it connected may not: between
// rounds a free slot is for peers that reciprocate (and newcomers, who
// have had no chance yet); one that only takes waits for the optimistic
// unchoke, as the chapter says.
func (c *Client) slotEligibleLocked(p *peerConn, now time.Time) bool {
	if c.complete || c.cfg.NoTitForTat {
		return true
	}
	return p.down.Total() > 0 || now.Sub(p.connected) < c.choker.Interval
}

func (c *Client) unchokedInterestedLocked() int {
	n := 0
	for _, q := range c.peers {
		if !q.amChoking && q.peerInterested {
			n++
		}
	}
	return n
}

// fillSlotLocked unchokes the best choked interested peer (by the rate the
// choker ranks with; for a round-robin seed, the one that has waited
// longest) when a slot is free.
func (c *Client) fillSlotLocked(why string) {
	if c.cfg.FreeRider || c.unchokedInterestedLocked() >= c.choker.Slots+1 {
		return
	}
	now := c.deps.Now()
	roundRobin := c.complete && c.choker.RoundRobin && !c.choker.Random
	var best *peerConn
	var bestRate float64
	var bestSent int64
	for _, q := range c.peers {
		if !q.amChoking || !q.peerInterested || !c.slotEligibleLocked(q, now) {
			continue
		}
		if roundRobin {
			// A round-robin seed: the peer that has waited longest.
			if best == nil || q.unchokedAt.Before(best.unchokedAt) || (q.unchokedAt.Equal(best.unchokedAt) && q.id < best.id) {
				best = q
			}
			continue
		}
		r, up := q.chokeRates(now)
		sent := q.down.Total() // the choker's tie-break
		if c.complete {
			r, sent = up, 0
		}
		if best == nil || r > bestRate || (r == bestRate && (sent > bestSent || (sent == bestSent && q.id < best.id))) {
			best, bestRate, bestSent = q, r, sent
		}
	}
	if best == nil {
		return
	}
	best.setChokedLocked(false)
	if c.trace.Enabled() {
		c.trace.Publish(trace.Event{Type: trace.State, Proto: "bittorrent/choke", From: c.selfAddr(),
			Summary: fmt.Sprintf("unchoke %s in the slot freed when %s", best.addr, why)})
	}
}

func (p *peerConn) setChokedLocked(choke bool) {
	if choke == p.amChoking {
		return
	}
	p.amChoking = choke
	if choke {
		p.sendLocked(peerwire.Message{ID: peerwire.Choke})
		if p.fast {
			for _, u := range p.uploads {
				p.sendLocked(peerwire.Message{ID: peerwire.Reject, Index: uint32(u.Piece), Begin: uint32(u.Begin), Length: uint32(u.Length)})
			}
		}
		p.uploads = nil
	} else {
		p.unchokedAt, p.upAtUnchoke = p.c.deps.Now(), p.up.Total()
		p.sendLocked(peerwire.Message{ID: peerwire.Unchoke})
	}
}

// chokeWindow is how many choke rounds the choker's rates span: two,
// BitTorrent's 20-second rolling average at its 10 s rounds. It scales
// with the choke interval (the lab's scaled rounds; a fixed 20 s would
// remember 20 of its 1 s rounds, and a peer that fell behind early would
// stay behind), and the one-second Meter is for display.
const chokeWindow = 2

// rateMark is a peer's byte counts at one choke round.
type rateMark struct {
	at       time.Time
	down, up int64
}

// chokeRates are the rates the peer sent us and we sent it over the last
// chokeWindow choke rounds (since it connected, if sooner).
func (p *peerConn) chokeRates(now time.Time) (down, up float64) {
	from := rateMark{at: p.connected}
	if len(p.marks) > 0 {
		from = p.marks[0]
	}
	if span := now.Sub(from.at).Seconds(); span > 0 {
		down, up = float64(p.down.Total()-from.down)/span, float64(p.up.Total()-from.up)/span
	}
	return down, up
}

// markRoundLocked records the peer's byte counts at a choke round.
func (p *peerConn) markRoundLocked(now time.Time) {
	p.marks = append(p.marks, rateMark{at: now, down: p.down.Total(), up: p.up.Total()})
	if len(p.marks) > chokeWindow {
		p.marks = p.marks[1:]
	}
}

func (p *peerConn) onRequestLocked(m peerwire.Message) error {
	c := p.c
	b := Block{int(m.Index), int(m.Begin), int(m.Length)}
	reject := func() {
		if p.fast {
			p.sendLocked(peerwire.Message{ID: peerwire.Reject, Index: m.Index, Begin: m.Begin, Length: m.Length})
		}
	}
	if c.info == nil || b.Piece >= c.info.NumPieces() || b.Length <= 0 || b.Length > peerwire.MaxBlock ||
		int64(b.Begin)+int64(b.Length) > c.info.PieceSize(b.Piece) {
		return fmt.Errorf("swarm: bad request %d+%d:%d", b.Piece, b.Begin, b.Length)
	}
	if p.amChoking || !c.picker.Have().Has(b.Piece) || len(p.uploads) >= c.cfg.MaxPeerRequests {
		reject()
		return nil
	}
	p.uploads = append(p.uploads, b)
	p.wakeWriter()
	return nil
}

func (p *peerConn) onPieceLocked(m peerwire.Message) error {
	c := p.c
	if c.info == nil {
		return fmt.Errorf("swarm: piece before metadata")
	}
	b := Block{int(m.Index), int(m.Begin), len(m.Block)}
	if _, ok := p.pending[b]; !ok {
		// Unrequested (or already cancelled): count it, do not use it.
		return nil
	}
	delete(p.pending, b)
	now := c.deps.Now()
	p.down.Add(now, len(m.Block))
	p.lastBlock = now
	c.downloaded += int64(len(m.Block))
	c.m.down.Add(float64(len(m.Block)))
	// Pipeline depth follows the rate: about two seconds of blocks.
	p.queue = max(4, min(c.cfg.MaxQueue, int(p.down.Rate(now)*2/peerwire.BlockSize)+4))
	first, full, cancel := c.picker.Received(p.id, b)
	if first {
		pb := c.buffers[b.Piece]
		if pb == nil {
			pb = &pieceBuf{data: make([]byte, c.info.PieceSize(b.Piece)), from: map[int]bool{}}
			c.buffers[b.Piece] = pb
		}
		copy(pb.data[b.Begin:], m.Block)
		pb.from[p.id] = true
		for _, o := range cancel {
			if q := c.peers[o]; q != nil {
				if _, ok := q.pending[b]; ok {
					delete(q.pending, b)
					q.sendLocked(peerwire.Message{ID: peerwire.Cancel, Index: m.Index, Begin: m.Begin, Length: uint32(b.Length)})
				}
			}
		}
	}
	if full {
		c.pieceCompleteLocked(b.Piece)
	}
	p.fillRequestsLocked()
	return nil
}

// pieceCompleteLocked checks a piece's hash: a good piece is written and
// announced with have; a bad one is fetched again and its senders are
// banned (the only sender at once; one of several after three strikes).
func (c *Client) pieceCompleteLocked(i int) {
	pb := c.buffers[i]
	delete(c.buffers, i)
	if pb == nil {
		return
	}
	if !c.store.CheckPiece(i, pb.data) {
		c.m.failed.Inc()
		c.picker.PieceFailed(i)
		c.log.Warn("swarm: piece failed its hash check", "piece", i, "senders", len(pb.from))
		for id := range pb.from {
			q := c.peers[id]
			if q == nil {
				continue
			}
			ip := q.addr.Addr()
			c.strikes[ip]++
			if len(pb.from) == 1 || c.strikes[ip] >= 3 {
				c.banLocked(ip, fmt.Sprintf("sent piece %d that failed its SHA-1 check", i))
			}
		}
		return
	}
	if err := c.store.WritePiece(i, pb.data); err != nil {
		c.log.Error("swarm: writing a piece", "piece", i, "err", err)
		c.picker.PieceFailed(i)
		return
	}
	c.picker.PieceVerified(i)
	c.m.verified.Inc()
	for _, q := range c.peers {
		q.sendLocked(peerwire.Message{ID: peerwire.Have, Index: uint32(i)})
		q.updateInterestLocked()
	}
	if c.picker.Done() {
		c.log.Info("swarm: download complete", "name", c.info.Name)
		c.markCompleteLocked()
		c.kick()
	}
}

// fillRequestsLocked tops up the pipeline of requests to the peer.
func (p *peerConn) fillRequestsLocked() {
	c := p.c
	if c.picker == nil || p.peerChoking || !p.amInterested || p.has == nil || c.picker.Done() {
		return
	}
	want := p.queue - len(p.pending)
	if want <= 0 {
		return
	}
	picks := c.picker.Pick(p.id, p.has, want)
	now := c.deps.Now()
	for _, pk := range picks {
		p.pending[pk.Block] = now
		p.sendLocked(peerwire.Message{ID: peerwire.Request, Index: uint32(pk.Piece), Begin: uint32(pk.Begin), Length: uint32(pk.Length)})
	}
	if len(picks) > 0 && c.trace.Enabled() {
		// One event per piece started or re-requested, not per block.
		last := -1
		for _, pk := range picks {
			if pk.Piece == last {
				continue
			}
			last = pk.Piece
			c.trace.Publish(trace.Event{Type: trace.State, Proto: "bittorrent/pick", From: c.selfAddr(), To: p.addr.String(),
				Summary: fmt.Sprintf("piece %d from %s (%s, %d neighbours have it, %d/%d complete)", pk.Piece, p.addr, pk.Mode, pk.Availability, c.picker.Completed(), c.info.NumPieces())})
		}
	}
}

func (p *peerConn) dropPendingLocked() {
	for b := range p.pending {
		p.c.picker.Unrequest(p.id, b)
	}
	clear(p.pending)
}

// expireRequestsLocked gives up on blocks the peer has sat on too long.
func (p *peerConn) expireRequestsLocked(now time.Time) {
	for b, at := range p.pending {
		if now.Sub(at) > p.c.cfg.RequestTimeout.D() {
			delete(p.pending, b)
			p.c.picker.Unrequest(p.id, b)
			p.sendLocked(peerwire.Message{ID: peerwire.Cancel, Index: uint32(b.Piece), Begin: uint32(b.Begin), Length: uint32(b.Length)})
			p.queue = 4
		}
	}
}

func (p *peerConn) keepAliveLocked(now time.Time) {
	if now.Sub(p.lastSend) > time.Minute && len(p.out) == 0 {
		p.sendLocked(peerwire.Message{KeepAlive: true})
	}
}

func (p *peerConn) onExtendedLocked(m peerwire.Message) error {
	c := p.c
	switch m.ExtID {
	case 0:
		eh, err := peerwire.ParseExtHandshake(m.ExtPayload)
		if err != nil {
			return err
		}
		p.extMetadata = eh.M[peerwire.ExtMetadata]
		p.extPex = eh.M[peerwire.ExtPEX]
		p.metadataSize = eh.MetadataSize
		p.listenPort = eh.Port
		if c.info == nil && p.extMetadata != 0 && p.metadataSize > 0 {
			c.metaFetchLocked().addPeer(p)
		}
	case extIDPex:
		if !c.pexAllowedLocked() {
			return nil
		}
		pm, err := peerwire.ParsePexMsg(m.ExtPayload)
		if err != nil {
			return err
		}
		self := netip.AddrPortFrom(c.local, c.listenPort)
		for _, ap := range pm.Added {
			if len(c.known) >= maxKnown {
				break
			}
			if _, ok := c.known[ap]; !ok && ap != self && ap.Addr().Is4() == c.local.Is4() {
				c.known[ap] = time.Time{}
			}
		}
		if len(pm.Added) > 0 {
			c.kick()
		}
	case extIDMetadata:
		mm, err := peerwire.ParseMetadataMsg(m.ExtPayload)
		if err != nil {
			return err
		}
		return c.onMetadataLocked(p, mm)
	}
	return nil
}

// listenAddr is where the peer accepts connections: the address we dialled,
// or its IP with the port of its extension handshake; invalid if unknown.
func (p *peerConn) listenAddr() netip.AddrPort {
	if p.outgoing {
		return p.addr
	}
	if p.listenPort != 0 {
		return netip.AddrPortFrom(p.addr.Addr(), p.listenPort)
	}
	return netip.AddrPort{}
}

// pexLocked tells the peer, at most once a minute, which peers we gained
// and lost since we last told it (BEP 11).
func (p *peerConn) pexLocked(now time.Time) {
	c := p.c
	if p.extPex == 0 || !c.pexAllowedLocked() || (!p.lastPex.IsZero() && now.Sub(p.lastPex) < pexEvery) {
		return
	}
	cur := map[netip.AddrPort]bool{}
	for _, q := range c.peers {
		if q == p {
			continue
		}
		if ap := q.listenAddr(); ap.IsValid() {
			cur[ap] = true
		}
	}
	var msg peerwire.PexMsg
	for ap := range cur {
		if !p.pexSent[ap] && len(msg.Added) < 50 {
			msg.Added = append(msg.Added, ap)
		}
	}
	for ap := range p.pexSent {
		if !cur[ap] && len(msg.Dropped) < 50 {
			msg.Dropped = append(msg.Dropped, ap)
		}
	}
	if len(msg.Added) == 0 && len(msg.Dropped) == 0 {
		return
	}
	if p.pexSent == nil {
		p.pexSent = map[netip.AddrPort]bool{}
	}
	for _, ap := range msg.Added {
		p.pexSent[ap] = true
	}
	for _, ap := range msg.Dropped {
		delete(p.pexSent, ap)
	}
	p.lastPex = now
	p.sendLocked(peerwire.Message{ID: peerwire.Extended, ExtID: p.extPex, ExtPayload: msg.Bytes()})
}
