package swarm

import (
	"math/bits"
	"math/rand/v2"
)

// Bitfield is a set of piece indexes, high bit of byte 0 first (the wire
// format of the bitfield message).
type Bitfield []byte

// NewBitfield returns an empty bitfield for n pieces.
func NewBitfield(n int) Bitfield { return make(Bitfield, (n+7)/8) }

// Has reports whether piece i is set.
func (b Bitfield) Has(i int) bool {
	return i >= 0 && i/8 < len(b) && b[i/8]&(0x80>>(i%8)) != 0
}

// Set sets piece i.
func (b Bitfield) Set(i int) { b[i/8] |= 0x80 >> (i % 8) }

// Clear clears piece i.
func (b Bitfield) Clear(i int) { b[i/8] &^= 0x80 >> (i % 8) }

// Count is the number of pieces set.
func (b Bitfield) Count() int {
	n := 0
	for _, x := range b {
		n += bits.OnesCount8(x)
	}
	return n
}

// Clone copies b.
func (b Bitfield) Clone() Bitfield { return append(Bitfield(nil), b...) }

// Block is one request: a piece, an offset and a length.
type Block struct {
	Piece, Begin, Length int
}

// PickMode says why a block was picked, for the trace.
type PickMode string

// The picker's modes, in the order it tries them.
const (
	ModePartial PickMode = "partial"  // strict priority: finish started pieces
	ModeRandom  PickMode = "random"   // the first pieces, at random
	ModeRarest  PickMode = "rarest"   // rarest first among the neighbours
	ModeEndGame PickMode = "end-game" // every block requested: ask again
)

// Pick is one block the picker chose, and why.
type Pick struct {
	Block
	Mode PickMode
	// Availability is how many neighbours have the piece.
	Availability int
}

type blockState struct {
	received bool
	owners   []int // peers this block is requested from
}

type pieceState struct {
	blocks   []blockState
	received int
	started  bool
}

// Picker chooses which blocks to request from whom: the chapter's
// requesting rule, rarest first, made exact as BitTorrent does it:
//
//   - strict priority: blocks of pieces already started come first, so
//     pieces complete (and can be shared) as soon as possible;
//   - random first piece: until RandomFirst pieces are complete, new pieces
//     are chosen at random, because a new peer needs something to trade
//     quickly and the rarest pieces are slow to get;
//   - rarest first: then the piece fewest neighbours have, ties broken at
//     random, so rare pieces spread before their holders leave;
//   - end game: once every missing block has been requested, the remaining
//     ones are requested from every peer that has them, and the duplicates
//     cancelled when a copy arrives.
//
// Peers are small integers chosen by the caller. A Picker is not safe for
// concurrent use.
type Picker struct {
	// RandomFirst is how many pieces are picked at random before rarest
	// first takes over. Default 4 (set by NewPicker).
	RandomFirst int

	n         int
	pieceLen  int
	totalLen  int64
	blockSize int
	have      Bitfield
	completed int
	avail     []int
	pieces    []pieceState
	rnd       *rand.Rand
}

// NewPicker returns a picker for n pieces of pieceLen bytes (the last one
// shorter, total bytes in all), requesting blocks of blockSize bytes.
func NewPicker(total int64, pieceLen, blockSize int, have Bitfield, rnd *rand.Rand) *Picker {
	n := int((total + int64(pieceLen) - 1) / int64(pieceLen))
	p := &Picker{RandomFirst: 4, n: n, pieceLen: pieceLen, totalLen: total, blockSize: blockSize,
		have: NewBitfield(n), avail: make([]int, n), pieces: make([]pieceState, n), rnd: rnd}
	for i := range n {
		if have.Has(i) {
			p.have.Set(i)
			p.completed++
		}
	}
	return p
}

// PieceSize is the length of piece i.
func (p *Picker) PieceSize(i int) int {
	if i == p.n-1 {
		return int(p.totalLen - int64(i)*int64(p.pieceLen))
	}
	return p.pieceLen
}

func (p *Picker) numBlocks(i int) int { return (p.PieceSize(i) + p.blockSize - 1) / p.blockSize }

func (p *Picker) block(i, b int) Block {
	begin := b * p.blockSize
	return Block{Piece: i, Begin: begin, Length: min(p.blockSize, p.PieceSize(i)-begin)}
}

// Have returns our bitfield (not a copy).
func (p *Picker) Have() Bitfield { return p.have }

// Completed is the number of pieces we have.
func (p *Picker) Completed() int { return p.completed }

// Done reports whether we have every piece.
func (p *Picker) Done() bool { return p.completed == p.n }

// Availability is how many neighbours have piece i.
func (p *Picker) Availability(i int) int { return p.avail[i] }

// PeerHas counts a neighbour's have message.
func (p *Picker) PeerHas(i int) { p.avail[i]++ }

// PeerBitfield counts a neighbour's bitfield (sign +1) or its departure
// (sign -1).
func (p *Picker) PeerBitfield(b Bitfield, sign int) {
	for i := range p.n {
		if b.Has(i) {
			p.avail[i] += sign
		}
	}
}

// Interesting reports whether a peer with bitfield b has a piece we lack.
func (p *Picker) Interesting(b Bitfield) bool {
	for i := range len(b) {
		if i < len(p.have) && b[i]&^p.have[i] != 0 {
			return true
		}
	}
	return false
}

// Pick chooses up to max blocks to request from peer, which has the pieces
// in has and already has `pending` of our requests outstanding (those
// are not picked again). The blocks are marked requested by peer.
func (p *Picker) Pick(peer int, has Bitfield, max int) []Pick {
	var out []Pick
	// 1. Strict priority: blocks of started pieces.
	for i := range p.n {
		if len(out) >= max {
			return out
		}
		ps := &p.pieces[i]
		if !ps.started || p.have.Has(i) || !has.Has(i) {
			continue
		}
		out = p.takeBlocks(peer, i, ModePartial, out, max)
	}
	// 2 and 3: new pieces, at random for the first few, then rarest.
	for len(out) < max {
		i, mode := p.choosePiece(has)
		if i < 0 {
			break
		}
		p.pieces[i].started = true
		p.pieces[i].blocks = make([]blockState, p.numBlocks(i))
		out = p.takeBlocks(peer, i, mode, out, max)
	}
	if len(out) > 0 || !p.endGame() {
		return out
	}
	// 4. End game: blocks requested from others, not yet from this peer.
	for i := range p.n {
		ps := &p.pieces[i]
		if !ps.started || p.have.Has(i) || !has.Has(i) {
			continue
		}
		for b := range ps.blocks {
			if len(out) >= max {
				return out
			}
			bs := &ps.blocks[b]
			if bs.received || owns(bs.owners, peer) {
				continue
			}
			bs.owners = append(bs.owners, peer)
			out = append(out, Pick{Block: p.block(i, b), Mode: ModeEndGame, Availability: p.avail[i]})
		}
	}
	return out
}

func owns(owners []int, peer int) bool {
	for _, o := range owners {
		if o == peer {
			return true
		}
	}
	return false
}

func (p *Picker) takeBlocks(peer, i int, mode PickMode, out []Pick, max int) []Pick {
	ps := &p.pieces[i]
	for b := range ps.blocks {
		if len(out) >= max {
			break
		}
		bs := &ps.blocks[b]
		if bs.received || len(bs.owners) > 0 {
			continue
		}
		bs.owners = append(bs.owners, peer)
		out = append(out, Pick{Block: p.block(i, b), Mode: mode, Availability: p.avail[i]})
	}
	return out
}

// choosePiece picks a piece not started that has and we lack: at random
// while fewer than RandomFirst are complete, else the rarest (ties at
// random). It returns -1 when there is none.
func (p *Picker) choosePiece(has Bitfield) (int, PickMode) {
	if p.completed < p.RandomFirst {
		var cand []int
		for i := range p.n {
			if !p.pieces[i].started && !p.have.Has(i) && has.Has(i) {
				cand = append(cand, i)
			}
		}
		if len(cand) == 0 {
			return -1, ""
		}
		return cand[p.rnd.IntN(len(cand))], ModeRandom
	}
	best, ties := -1, 0
	for i := range p.n {
		if p.pieces[i].started || p.have.Has(i) || !has.Has(i) {
			continue
		}
		switch {
		case best < 0 || p.avail[i] < p.avail[best]:
			best, ties = i, 1
		case p.avail[i] == p.avail[best]:
			// Reservoir sampling over the ties: each equally likely.
			ties++
			if p.rnd.IntN(ties) == 0 {
				best = i
			}
		}
	}
	return best, ModeRarest
}

// endGame reports whether every block we lack has been requested.
func (p *Picker) endGame() bool {
	for i := range p.n {
		if p.have.Has(i) {
			continue
		}
		ps := &p.pieces[i]
		if !ps.started {
			return false
		}
		for _, bs := range ps.blocks {
			if !bs.received && len(bs.owners) == 0 {
				return false
			}
		}
	}
	return true
}

// InEndGame reports whether the picker is in end-game mode.
func (p *Picker) InEndGame() bool { return !p.Done() && p.endGame() }

// Received records a block from peer. It reports whether this was the
// first copy (a duplicate in end game is not), whether the piece now has
// every block (ready for its hash check), and the other peers the block
// was requested from (to be sent cancels).
func (p *Picker) Received(peer int, b Block) (first, pieceFull bool, cancel []int) {
	if b.Piece < 0 || b.Piece >= p.n || p.have.Has(b.Piece) {
		return false, false, nil
	}
	ps := &p.pieces[b.Piece]
	k := b.Begin / p.blockSize
	if !ps.started || b.Begin%p.blockSize != 0 || k >= len(ps.blocks) || p.block(b.Piece, k) != b {
		return false, false, nil
	}
	bs := &ps.blocks[k]
	if bs.received {
		return false, false, nil
	}
	bs.received = true
	ps.received++
	for _, o := range bs.owners {
		if o != peer {
			cancel = append(cancel, o)
		}
	}
	bs.owners = nil
	return true, ps.received == len(ps.blocks), cancel
}

// Unrequest forgets that peer was asked for b (a reject, a choke without
// the fast extension, or a cancel).
func (p *Picker) Unrequest(peer int, b Block) {
	if b.Piece < 0 || b.Piece >= p.n {
		return
	}
	ps := &p.pieces[b.Piece]
	k := b.Begin / p.blockSize
	if !ps.started || k >= len(ps.blocks) {
		return
	}
	bs := &ps.blocks[k]
	for j, o := range bs.owners {
		if o == peer {
			bs.owners = append(bs.owners[:j], bs.owners[j+1:]...)
			return
		}
	}
}

// PieceVerified marks piece i as ours after its hash checked.
func (p *Picker) PieceVerified(i int) {
	if p.have.Has(i) {
		return
	}
	p.have.Set(i)
	p.completed++
	p.pieces[i] = pieceState{}
}

// PieceFailed resets piece i after a failed hash check, to be fetched
// again from scratch.
func (p *Picker) PieceFailed(i int) { p.pieces[i] = pieceState{} }

// Requested reports whether any block of the piece is requested from peer
// and not yet received (for tests and the trace).
func (p *Picker) Requested(peer int, b Block) bool {
	ps := &p.pieces[b.Piece]
	k := b.Begin / p.blockSize
	return ps.started && k < len(ps.blocks) && owns(ps.blocks[k].owners, peer)
}

// allPieces returns a bitfield with every one of n pieces set.
func allPieces(n int) Bitfield {
	b := NewBitfield(n)
	for i := range n {
		b.Set(i)
	}
	return b
}
