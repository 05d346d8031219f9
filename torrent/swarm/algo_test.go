package swarm

import (
	"math/rand/v2"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func bf(n int, pieces ...int) Bitfield {
	b := NewBitfield(n)
	for _, p := range pieces {
		b.Set(p)
	}
	return b
}

// TestRandomFirstPieces: with nothing complete, new pieces are chosen at
// random, not rarest: over many pickers the rarest piece is not always
// first.
func TestRandomFirstPieces(t *testing.T) {
	const n = 8
	firsts := map[int]bool{}
	for seed := range uint64(40) {
		p := NewPicker(n*4, 4, 4, nil, rand.New(rand.NewPCG(seed, 1)))
		p.PeerBitfield(bf(n, 3), +1) // piece 3 is the rarest by far
		for range 5 {
			p.PeerBitfield(bf(n, 0, 1, 2, 4, 5, 6, 7), +1)
		}
		picks := p.Pick(0, allPieces(n), 1)
		if picks[0].Mode != ModeRandom {
			t.Fatalf("mode %s with 0 complete", picks[0].Mode)
		}
		firsts[picks[0].Piece] = true
	}
	if len(firsts) < 4 {
		t.Errorf("first picks %v: not random", firsts)
	}
	// After RandomFirst pieces, mode switches to rarest.
	p := NewPicker(n*4, 4, 4, bf(n, 0, 1, 2, 4), rand.New(rand.NewPCG(1, 1)))
	if picks := p.Pick(0, allPieces(n), 1); picks[0].Mode != ModeRarest {
		t.Errorf("mode %s with 4 complete", picks[0].Mode)
	}
}

// TestStrictPriority: blocks of a started piece come before any new piece,
// even a rarer one.
func TestStrictPriority(t *testing.T) {
	const n = 6
	p := NewPicker(n*8, 8, 4, bf(n, 0, 1, 2, 3), rand.New(rand.NewPCG(1, 1)))
	p.PeerBitfield(allPieces(n), +1)
	p.PeerBitfield(bf(n, 4), +1)
	// Peer 0 starts piece 5 (piece 4 is less rare) and gets one block of it.
	first := p.Pick(0, bf(n, 5), 1)
	if first[0].Piece != 5 {
		t.Fatalf("first pick %+v", first)
	}
	// Peer 1 has every piece; piece 5's other block comes first.
	picks := p.Pick(1, allPieces(n), 2)
	if picks[0].Piece != 5 || picks[0].Begin != 4 || picks[0].Mode != ModePartial {
		t.Errorf("first pick for peer 1 %+v, want the rest of piece 5", picks[0])
	}
	if picks[1].Piece != 4 || picks[1].Mode != ModeRarest {
		t.Errorf("second pick %+v", picks[1])
	}
}

// TestEndGame: once every missing block is requested, another peer is
// asked for the same blocks, and the first copy to arrive cancels the rest.
func TestEndGame(t *testing.T) {
	const n = 2
	p := NewPicker(n*8, 8, 4, bf(n, 0), rand.New(rand.NewPCG(1, 1)))
	p.PeerBitfield(allPieces(n), +1)
	p.PeerBitfield(allPieces(n), +1)
	a := p.Pick(0, allPieces(n), 10)
	if len(a) != 2 || p.InEndGame() == false {
		t.Fatalf("peer 0 picks %+v, end game %v", a, p.InEndGame())
	}
	b := p.Pick(1, allPieces(n), 10)
	if len(b) != 2 || b[0].Mode != ModeEndGame || b[0].Block != a[0].Block {
		t.Fatalf("peer 1 end-game picks %+v", b)
	}
	if again := p.Pick(1, allPieces(n), 10); len(again) != 0 {
		t.Errorf("blocks requested twice from one peer: %+v", again)
	}
	first, full, cancel := p.Received(1, b[0].Block)
	if !first || full || !reflect.DeepEqual(cancel, []int{0}) {
		t.Errorf("Received = %v %v %v: want first, piece not full, cancel to peer 0", first, full, cancel)
	}
	if first, _, _ := p.Received(0, a[0].Block); first {
		t.Error("duplicate counted as first")
	}
	_, full, cancel = p.Received(0, a[1].Block)
	if !full || !reflect.DeepEqual(cancel, []int{1}) {
		t.Errorf("last block: full %v cancel %v", full, cancel)
	}
}

func TestPickerFailedPieceRefetched(t *testing.T) {
	p := NewPicker(8, 8, 4, nil, rand.New(rand.NewPCG(1, 1)))
	p.PeerBitfield(allPieces(1), +1)
	picks := p.Pick(0, allPieces(1), 10)
	for _, pk := range picks {
		p.Received(0, pk.Block)
	}
	p.PieceFailed(0)
	if again := p.Pick(1, allPieces(1), 10); len(again) != 2 {
		t.Errorf("after a failed hash check, %d blocks picked", len(again))
	}
}

func peersAt(now time.Time, rates map[int]float64) []ChokePeer {
	var out []ChokePeer
	for id, r := range rates {
		out = append(out, ChokePeer{ID: id, Interested: true, AmInterested: true, DownRate: r, LastBlock: now, Connected: now.Add(-time.Hour)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// TestChokerTitForTat: after a 10 s round with given rates, the four
// fastest uploaders to us are unchoked, plus one optimistic unchoke.
func TestChokerTitForTat(t *testing.T) {
	clock := testkit.NewClock(t0)
	c := NewChoker(rand.New(rand.NewPCG(3, 4)))
	rates := map[int]float64{1: 100, 2: 5000, 3: 300, 4: 4000, 5: 0, 6: 9000, 7: 2000, 8: 50}
	d := c.Decide(clock.Now(), peersAt(clock.Now(), rates), false)
	if !reflect.DeepEqual(d.Regular, []int{6, 2, 4, 7}) {
		t.Fatalf("regular %v, want the 4 fastest [6 2 4 7]", d.Regular)
	}
	if d.Optimistic < 0 || d.Unchoked[d.Optimistic] != true || len(d.Unchoked) != 5 {
		t.Fatalf("unchoked %v optimistic %d", d.Unchoked, d.Optimistic)
	}
	for _, id := range d.Regular {
		if id == d.Optimistic {
			t.Error("optimistic unchoke given to a regular peer")
		}
	}
	// 10 s later peer 3 has become the fastest: it takes 7's slot.
	clock.Advance(10 * time.Second)
	rates[3] = 20000
	d2 := c.Decide(clock.Now(), peersAt(clock.Now(), rates), false)
	if !reflect.DeepEqual(d2.Regular, []int{3, 6, 2, 4}) {
		t.Errorf("after 10 s regular %v, want [3 6 2 4]", d2.Regular)
	}
	// Not interested peers are never unchoked.
	ps := peersAt(clock.Now(), rates)
	for i := range ps {
		if ps[i].ID == 6 {
			ps[i].Interested = false
		}
	}
	if d3 := c.Decide(clock.Now(), ps, false); d3.Unchoked[6] {
		t.Error("uninterested peer unchoked")
	}
}

// TestOptimisticRotation: the optimistic unchoke stays for 30 s and then
// moves; new peers win it about three times as often as old ones.
func TestOptimisticRotation(t *testing.T) {
	clock := testkit.NewClock(t0)
	c := NewChoker(rand.New(rand.NewPCG(5, 6)))
	rates := map[int]float64{1: 10, 2: 20, 3: 30, 4: 40, 5: 0, 6: 0, 7: 0, 8: 0, 9: 0}
	d := c.Decide(clock.Now(), peersAt(clock.Now(), rates), false)
	opt := d.Optimistic
	if opt < 5 {
		t.Fatalf("optimistic %d is a regular peer", opt)
	}
	for range 2 {
		clock.Advance(10 * time.Second)
		if d := c.Decide(clock.Now(), peersAt(clock.Now(), rates), false); d.Optimistic != opt || d.Rotated {
			t.Fatalf("optimistic moved before 30 s: %d -> %d", opt, d.Optimistic)
		}
	}
	rotations := 0
	for range 30 {
		clock.Advance(10 * time.Second)
		d := c.Decide(clock.Now(), peersAt(clock.Now(), rates), false)
		if d.Rotated {
			rotations++
		}
	}
	if rotations < 5 {
		t.Errorf("only %d rotations in 300 s", rotations)
	}

	// Weighting: peer 10 is new (connected 5 s ago), 11 is old.
	counts := map[int]int{}
	c = NewChoker(rand.New(rand.NewPCG(7, 8)))
	for range 4000 {
		clock.Advance(30 * time.Second)
		now := clock.Now()
		ps := []ChokePeer{
			{ID: 10, Interested: true, Connected: now.Add(-5 * time.Second), LastBlock: now},
			{ID: 11, Interested: true, Connected: now.Add(-time.Hour), LastBlock: now},
		}
		c.Slots = 0
		counts[c.Decide(now, ps, false).Optimistic]++
	}
	ratio := float64(counts[10]) / float64(counts[11])
	if ratio < 2.5 || ratio > 3.5 {
		t.Errorf("new:old optimistic ratio %.2f (%v), want about 3", ratio, counts)
	}
}

// TestAntiSnubbing: a fast peer that has sent nothing for a minute loses
// its regular slot.
func TestAntiSnubbing(t *testing.T) {
	clock := testkit.NewClock(t0)
	c := NewChoker(rand.New(rand.NewPCG(1, 1)))
	now := clock.Now()
	ps := peersAt(now, map[int]float64{1: 900, 2: 800, 3: 700, 4: 600, 5: 500})
	ps[0].LastBlock = now.Add(-61 * time.Second) // peer 1 snubs us
	d := c.Decide(now, ps, false)
	if d.Unchoked[1] && d.Optimistic != 1 || !reflect.DeepEqual(d.Regular, []int{2, 3, 4, 5}) || !reflect.DeepEqual(d.Snubbed, []int{1}) {
		t.Errorf("regular %v snubbed %v optimistic %d", d.Regular, d.Snubbed, d.Optimistic)
	}
}

// TestSeedingUnchokesByUploadRate: a seed ranks peers by how fast we
// upload to them.
func TestSeedingUnchokesByUploadRate(t *testing.T) {
	c := NewChoker(rand.New(rand.NewPCG(1, 1)))
	var ps []ChokePeer
	for id, up := range []float64{10, 50, 40, 30, 20, 60} {
		ps = append(ps, ChokePeer{ID: id, Interested: true, UpRate: up, Connected: t0.Add(-time.Hour)})
	}
	d := c.Decide(t0, ps, true)
	if !reflect.DeepEqual(d.Regular, []int{5, 1, 2, 3}) {
		t.Errorf("seeding regular %v, want [5 1 2 3]", d.Regular)
	}
}

// TestSeedingRoundRobin: a round-robin seed (libtorrent's default seed
// choker) keeps a peer's regular slot until the peer has had its quota
// and the quota time has passed, then gives it to the peer that waited
// longest, so every interested peer gets slots in turn, however fast it
// downloads; the fastest-upload seed keeps its fastest peers.
func TestSeedingRoundRobin(t *testing.T) {
	// Nine interested peers; peer 0 takes ten times what the others take
	// in a round (it has more requests waiting).
	var turns []int       // the peers in the order their slots began
	var waits map[int]int // the longest a peer was choked in a row
	run := func(roundRobin bool) (unchoked map[int]int, longest map[int]int) {
		turns, waits = nil, map[int]int{}
		choked := map[int]int{}
		c := NewChoker(rand.New(rand.NewPCG(9, 9)))
		c.RoundRobin, c.Quota = roundRobin, 1000
		clock := testkit.NewClock(t0)
		ps := make([]ChokePeer, 9)
		for i := range ps {
			ps[i] = ChokePeer{ID: i, Interested: true, Connected: t0.Add(-time.Hour)}
		}
		unchoked, longest = map[int]int{}, map[int]int{}
		run := map[int]int{}
		for range 60 {
			now := clock.Now()
			d := c.Decide(now, ps, true)
			for i := range ps {
				p := &ps[i]
				if d.Unchoked[p.ID] && !p.Unchoked {
					p.UnchokedAt, p.SinceUnchoke = now, 0
					turns = append(turns, p.ID)
				}
				p.Unchoked, p.UpRate = d.Unchoked[p.ID], 0
				if p.Unchoked {
					choked[p.ID] = 0
				} else {
					choked[p.ID]++
					waits[p.ID] = max(waits[p.ID], choked[p.ID])
				}
				if p.Unchoked {
					got := int64(500)
					if p.ID == 0 {
						got = 5000
					}
					p.SinceUnchoke += got
					p.UpRate = float64(got) / 10
				}
			}
			for id := range ps {
				if d.Unchoked[id] {
					unchoked[id]++
					run[id]++
					longest[id] = max(longest[id], run[id])
				} else {
					run[id] = 0
				}
			}
			clock.Advance(10 * time.Second)
		}
		return unchoked, longest
	}
	unchoked, longest := run(true)
	t.Logf("round robin: rounds unchoked %v, longest run %v", unchoked, longest)
	for id := range 9 {
		// 60 rounds x 5 slots (4 regular, 1 optimistic) over 9 peers:
		// about 33 each.
		if unchoked[id] < 20 || unchoked[id] > 45 {
			t.Errorf("round robin: peer %d was unchoked %d of 60 rounds, want about 33 (%v)", id, unchoked[id], unchoked)
		}
		// The quota (1000 bytes, reached in 2 rounds) and the quota time
		// (6 rounds): a slot lasts about 6-7 rounds (a few more when the
		// optimistic unchoke ran into it), then rotates.
		if longest[id] > 12 {
			t.Errorf("round robin: peer %d kept its slot %d rounds in a row (%v)", id, longest[id], longest)
		}
	}
	// In turn: the optimistic slot too goes to the peer that has waited
	// longest, and a turn is not cut short for the optimistic peer, so
	// with 9 peers and 5 slots of about 6 rounds no peer waits more than
	// one slot's length (at random, one waited 12 rounds).
	for id, w := range waits {
		if w > 6 {
			t.Errorf("round robin: peer %d waited %d rounds in a row for a slot, want at most 6 (turns %v)", id, w, turns)
		}
	}
	if unchoked, _ := run(false); unchoked[0] != 60 {
		t.Errorf("fastest upload: the fast peer was unchoked %d of 60 rounds, want 60", unchoked[0])
	}
	d := NewChoker(rand.New(rand.NewPCG(1, 1)))
	d.RoundRobin = true
	if r := d.Decide(t0, []ChokePeer{{ID: 1, Interested: true}}, true).Reason; !strings.Contains(r, "round robin") {
		t.Errorf("reason %q", r)
	}
}

func TestMeterAndBucket(t *testing.T) {
	clock := testkit.NewClock(t0)
	var m Meter
	for range 10 {
		m.Add(clock.Now(), 1000)
		clock.Advance(time.Second)
	}
	if r := m.Rate(clock.Now()); r < 900 || r > 1100 {
		t.Errorf("rate %v, want about 1000", r)
	}
	clock.Advance(30 * time.Second)
	if r := m.Rate(clock.Now()); r != 0 {
		t.Errorf("rate after 30 s idle %v", r)
	}
	b := NewBucket(100000, 32<<10)
	if w := b.Take(clock.Now(), 32<<10); w != 0 {
		t.Errorf("burst waited %v", w)
	}
	if w := b.Take(clock.Now(), 50000); w != 500*time.Millisecond {
		t.Errorf("wait %v, want 500ms", w)
	}
	clock.Advance(time.Second)
	if w := b.Take(clock.Now(), 30000); w != 0 {
		t.Errorf("after the debt is repaid: wait %v", w)
	}
	if w := NewBucket(0, 0).Take(clock.Now(), 1<<30); w != 0 {
		t.Errorf("unlimited bucket waited %v", w)
	}
}

// TestChokeRates: the choker ranks by the rates over the last two choke
// rounds (BitTorrent's 20 s at 10 s rounds), whatever the interval: a peer
// that stopped sending two rounds ago ranks at zero, where the 20-second
// display meter still counts it.
func TestChokeRates(t *testing.T) {
	p := &peerConn{connected: t0}
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	p.down.Add(at(500), 1000)
	p.up.Add(at(500), 500)
	if d, u := p.chokeRates(at(1000)); d != 1000 || u != 500 {
		t.Errorf("first round: rates %v, %v; want 1000, 500 (since it connected)", d, u)
	}
	p.markRoundLocked(at(1000))
	p.down.Add(at(1500), 3000)
	p.markRoundLocked(at(2000))
	if d, _ := p.chokeRates(at(3000)); d != 1500 {
		t.Errorf("two rounds: rate %v, want 1500 (3000 bytes in 2 s)", d)
	}
	p.markRoundLocked(at(3000))
	if d, _ := p.chokeRates(at(4000)); d != 0 {
		t.Errorf("nothing for two rounds: rate %v, want 0", d)
	}
	if r := p.down.Rate(at(4000)); r == 0 {
		t.Error("the display meter forgot too soon")
	}
}

// TestChokerTieBreak: among equal rates (none in the last two rounds), a
// peer that has sent us something before goes ahead of one that never
// has, whatever their order.
func TestChokerTieBreak(t *testing.T) {
	c := NewChoker(rand.New(rand.NewPCG(3, 3)))
	c.Slots = 1
	ps := []ChokePeer{
		{ID: 1, Interested: true, Connected: t0},                // never sent us anything
		{ID: 2, Interested: true, Connected: t0, Sent: 1 << 14}, // sent a block, not lately
	}
	if d := c.Decide(t0.Add(10*time.Second), ps, false); len(d.Regular) != 1 || d.Regular[0] != 2 {
		t.Errorf("regular %v, want [2]", d.Regular)
	}
}
