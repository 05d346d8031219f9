package swarm

import (
	"fmt"

	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/torrent/peerwire"
)

// superSeed spreads an initial seed's pieces (BEP 16's super-seeding,
// made for a rate-limited seed): every upload of a seed whose rate is the
// swarm's bottleneck should be a piece the swarm does not have yet, so
// that the leechers have something to trade with each other. The seed
// does not announce that it has everything: each peer is told (have
// messages) of a few pieces at a time, chosen among those no peer has and
// fewest peers were offered; when the peer announces one of them, it is
// offered another. Leechers need nothing special: they see a peer with a
// few pieces and fetch those, rarest first. Once every piece is somewhere
// in the swarm, the seed tells every peer it has the rest and seeds as
// usual. A peer may still request a piece it was not offered: it gets it.
type superSeed struct {
	offered []int // per piece: peers it was offered to
	// perPeer is how many offered pieces a peer may hold at a time: about
	// 1 MiB of pieces (2 to 16), so its request pipeline does not drain.
	perPeer int
	done    bool
	// sent counts the uploads of each piece (its first block), outOnce
	// the pieces uploaded at least once, and dupEarly the uploads of a
	// piece already sent while another had never been: what spreading
	// is there to avoid.
	sent              []int
	outOnce, dupEarly int
}

func newSuperSeed(pieces, pieceLen int) *superSeed {
	return &superSeed{offered: make([]int, pieces), sent: make([]int, pieces),
		perPeer: min(16, max(2, (1<<20)/max(pieceLen, 1)))}
}

// active reports whether the seed is still spreading.
func (s *superSeed) active() bool { return s != nil && !s.done }

// uploadedLocked counts an upload of block b.
func (s *superSeed) uploadedLocked(b Block) {
	if s == nil || b.Begin != 0 {
		return
	}
	if s.sent[b.Piece] == 0 {
		s.outOnce++
	} else if s.outOnce < len(s.sent) {
		s.dupEarly++
	}
	s.sent[b.Piece]++
}

// offerLocked tops up p's offered pieces: while some piece has never been
// uploaded, only such pieces not offered to another peer; then those fewest
// peers have, fewest offers first, ties at random.
func (s *superSeed) offerLocked(c *Client, p *peerConn) {
	if !s.active() || p.has == nil {
		return
	}
	if p.offers == nil {
		p.offers = map[int]bool{}
		p.told = NewBitfield(len(s.offered))
	}
	var picked []int
	for len(p.offers) < s.perPeer {
		best, ties := -1, 0
		spreading := s.outOnce < len(s.sent)
		for i := range s.offered {
			if p.has.Has(i) || p.told.Has(i) {
				continue
			}
			// While some piece has never been uploaded, offer only
			// those: not one already uploaded (the peer's have may
			// still be on its way) nor one offered to another peer
			// (both could fetch it before either announced it; on a
			// loaded machine they did). The peer trades with the others
			// meanwhile and is offered more when it announces a piece.
			if spreading && (s.sent[i] > 0 || s.offered[i] > 0) {
				continue
			}
			switch {
			case best < 0 || s.less(c, i, best):
				best, ties = i, 1
			case !s.less(c, best, i):
				ties++
				if c.rnd.IntN(ties) == 0 {
					best = i
				}
			}
		}
		if best < 0 {
			break
		}
		s.offered[best]++
		p.offers[best] = true
		p.told.Set(best)
		p.sendLocked(peerwire.Message{ID: peerwire.Have, Index: uint32(best)})
		picked = append(picked, best)
	}
	if len(picked) > 0 && c.trace.Enabled() {
		c.trace.Publish(trace.Event{Type: trace.State, Proto: "bittorrent/pick", From: c.selfAddr(), To: p.addr.String(),
			Summary: fmt.Sprintf("offer pieces %v to %s (initial seed spreading: pieces no peer has first)", picked, p.addr)})
	}
}

// less orders pieces to offer: fewer peers have it, then fewer offers.
func (s *superSeed) less(c *Client, i, j int) bool {
	ai, aj := c.picker.Availability(i), c.picker.Availability(j)
	if ai != aj {
		return ai < aj
	}
	return s.offered[i] < s.offered[j]
}

// peerHasLocked notes that p has piece i: it is offered another, and once
// every piece is in the swarm, the spreading ends.
func (s *superSeed) peerHasLocked(c *Client, p *peerConn, i int) {
	if !s.active() {
		return
	}
	delete(p.offers, i)
	if c.picker.Availability(i) == 1 && s.everywhereLocked(c) {
		s.endLocked(c)
		return
	}
	s.offerLocked(c, p)
}

// bitfieldLocked drops offers of pieces the peer turns out to have.
func (s *superSeed) bitfieldLocked(c *Client, p *peerConn) {
	if !s.active() {
		return
	}
	for i := range p.offers {
		if p.has.Has(i) {
			delete(p.offers, i)
		}
	}
	if s.everywhereLocked(c) {
		s.endLocked(c)
		return
	}
	s.offerLocked(c, p)
}

func (s *superSeed) peerGoneLocked(p *peerConn) {
	if s == nil {
		return
	}
	for i := range p.offers {
		s.offered[i]--
	}
	p.offers = nil
}

func (s *superSeed) everywhereLocked(c *Client) bool {
	for i := range s.offered {
		if c.picker.Availability(i) == 0 {
			return false
		}
	}
	return true
}

// endLocked tells every peer of the pieces it was not told of: from now
// on the seed seeds as usual.
func (s *superSeed) endLocked(c *Client) {
	s.done = true
	for _, p := range c.peers {
		if p.has == nil {
			continue
		}
		if p.told == nil {
			p.told = NewBitfield(len(s.offered))
		}
		for i := range s.offered {
			if !p.told.Has(i) && !p.has.Has(i) {
				p.sendLocked(peerwire.Message{ID: peerwire.Have, Index: uint32(i)})
			}
		}
		p.offers = nil
	}
	if c.trace.Enabled() {
		c.trace.Publish(trace.Event{Type: trace.State, Proto: "bittorrent/pick", From: c.selfAddr(),
			Summary: "every piece is in the swarm: the initial seed tells its peers it has them all"})
	}
}
