package swarm

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"time"
)

// ChokePeer is what the choker knows of one neighbour.
type ChokePeer struct {
	ID int
	// Interested is whether the peer wants pieces from us.
	Interested bool
	// DownRate is the rate the peer uploads to us (bytes/s, over the
	// last two choke rounds: 20 s at the default interval).
	DownRate float64
	// UpRate is the rate we upload to the peer (bytes/s, likewise).
	UpRate float64
	// Sent is every byte the peer has sent us on this connection: among
	// equal rates (over two rounds, often none), a peer that has
	// reciprocated before goes first.
	Sent int64
	// LastBlock is when the peer last sent us a block (zero: never).
	LastBlock time.Time
	// AmInterested is whether we want pieces from the peer.
	AmInterested bool
	// Connected is when the connection was made.
	Connected time.Time
	// Unchoked is whether we unchoke the peer now; Unchoked then is
	// when its slot began (zero: never unchoked) and SinceUnchoke how
	// much we have uploaded to it since (the round-robin seed choker's
	// quota).
	Unchoked     bool
	UnchokedAt   time.Time
	SinceUnchoke int64
}

// ChokeDecision is the outcome of one round.
type ChokeDecision struct {
	// Unchoked are the peers to unchoke (regular slots and the optimistic
	// one); every other peer is choked.
	Unchoked map[int]bool
	// Regular are the peers unchoked for their rate, best first.
	Regular []int
	// Optimistic is the optimistically unchoked peer (-1 for none).
	Optimistic int
	// Rotated reports whether the optimistic unchoke moved this round.
	Rotated bool
	// Snubbed are the peers that lost their chance at a regular slot for
	// sending us nothing for SnubTimeout.
	Snubbed []int
	// Reason explains the round in a line, for the trace.
	Reason string
}

// Choker is the chapter's tit-for-tat: every 10 seconds unchoke the four
// interested peers that upload to us fastest (when seeding: that we upload
// to fastest, so the pieces go where they travel best); every 30 seconds
// optimistically unchoke one more peer at random, newly connected peers
// three times as likely, so newcomers get a first piece and we discover
// better partners. Anti-snubbing: a peer that has sent us nothing for
// SnubTimeout while we wanted its pieces loses its regular slot; only an
// optimistic unchoke can reach it.
//
// The caller calls Decide every Interval; the choker keeps only the
// optimistic unchoke's state, on the clock it is given. It is not safe for
// concurrent use.
type Choker struct {
	// Slots is the number of regular unchokes. Default 4.
	Slots int
	// Interval is how often Decide is called (regular re-evaluation).
	// Default 10 s.
	Interval time.Duration
	// OptimisticEvery rotates the optimistic unchoke. Default 30 s.
	OptimisticEvery time.Duration
	// NewPeer is the age under which a peer is new (3x as likely to be
	// picked optimistically). Default 1 minute.
	NewPeer time.Duration
	// SnubTimeout marks a peer snubbed. Default 1 minute.
	SnubTimeout time.Duration
	// Random gives the regular slots to interested peers at random each
	// round, whatever they upload to us: tit-for-tat switched off, for
	// the lab's free-rider lesson.
	Random bool
	// RoundRobin makes a seed rotate its regular slots instead of giving
	// them to the peers it uploads to fastest (libtorrent's default seed
	// choker, seed_choking_algorithm round_robin): a peer keeps its slot
	// until it has had Quota bytes and QuotaTime has passed, then goes to
	// the back; the peer that has waited longest gets the next free slot.
	// Every interested peer gets the same share of the seed over time,
	// so a peer cannot keep the seed's slots by downloading fast.
	RoundRobin bool
	// Quota is the bytes a peer gets per round-robin slot (libtorrent:
	// seeding_piece_quota, 20 pieces) and QuotaTime the least time it
	// holds it (libtorrent: 1 minute). Defaults 20 x 256 KiB and
	// 6 Intervals.
	Quota     int64
	QuotaTime time.Duration

	rnd         *rand.Rand
	optimistic  int
	lastRotated time.Time
}

// NewChoker returns a choker with the defaults, drawing from rnd.
func NewChoker(rnd *rand.Rand) *Choker {
	return &Choker{Slots: 4, Interval: 10 * time.Second, OptimisticEvery: 30 * time.Second,
		NewPeer: time.Minute, SnubTimeout: time.Minute, rnd: rnd, optimistic: -1}
}

// Snubbed reports whether p has starved us for SnubTimeout.
func (c *Choker) Snubbed(now time.Time, p ChokePeer) bool {
	if !p.AmInterested {
		return false
	}
	since := p.LastBlock
	if since.IsZero() {
		since = p.Connected
	}
	return now.Sub(since) >= c.SnubTimeout
}

// Decide runs one round at now over the connected peers.
func (c *Choker) Decide(now time.Time, peers []ChokePeer, seeding bool) ChokeDecision {
	d := ChokeDecision{Unchoked: map[int]bool{}, Optimistic: -1}
	var cand []ChokePeer
	for _, p := range peers {
		if !p.Interested {
			continue
		}
		if !seeding && c.Snubbed(now, p) {
			d.Snubbed = append(d.Snubbed, p.ID)
			continue
		}
		cand = append(cand, p)
	}
	rate := func(p ChokePeer) float64 {
		if seeding {
			return p.UpRate
		}
		return p.DownRate
	}
	roundRobin := seeding && c.RoundRobin && !c.Random
	switch {
	case c.Random:
		c.rnd.Shuffle(len(cand), func(i, j int) { cand[i], cand[j] = cand[j], cand[i] })
	case roundRobin:
		c.roundRobin(now, cand)
	default:
		sort.SliceStable(cand, func(i, j int) bool {
			if rate(cand[i]) != rate(cand[j]) {
				return rate(cand[i]) > rate(cand[j])
			}
			if !seeding && cand[i].Sent != cand[j].Sent {
				return cand[i].Sent > cand[j].Sent
			}
			return cand[i].ID < cand[j].ID
		})
	}
	for _, p := range cand {
		if len(d.Regular) == c.Slots {
			break
		}
		d.Regular = append(d.Regular, p.ID)
		d.Unchoked[p.ID] = true
	}
	// Keep the optimistic unchoke until its 30 s are up, unless it left,
	// lost interest or won a regular slot.
	present := false
	for _, p := range peers {
		if p.ID == c.optimistic && p.Interested && !d.Unchoked[p.ID] {
			present = true
		}
	}
	if !present || c.lastRotated.IsZero() || now.Sub(c.lastRotated) >= c.OptimisticEvery {
		var pool []ChokePeer
		var weights []int
		total := 0
		for _, p := range peers {
			if !p.Interested || d.Unchoked[p.ID] {
				continue
			}
			w := 1
			if now.Sub(p.Connected) < c.NewPeer {
				w = 3
			}
			pool = append(pool, p)
			weights = append(weights, w)
			total += w
		}
		prev := c.optimistic
		c.optimistic = -1
		switch {
		case roundRobin && len(pool) > 0:
			// A round-robin seed gives the optimistic slot in turn too,
			// to the peer that has waited longest (as libtorrent picks
			// its optimistic unchokes): at random, a peer could win it
			// twice in a row and, once unchoked, keep it as a regular
			// slot for a whole quota, ahead of peers still waiting for
			// their first.
			// A peer unchoked now keeps the slot until its quota is
			// done (so the slot is a turn, whether it began as a freed
			// slot or an optimistic unchoke); then it has not waited.
			waited := func(p ChokePeer) time.Time {
				switch {
				case p.Unchoked && c.quotaDone(now, p):
					return now
				case p.Unchoked:
					return time.Time{}
				}
				return p.UnchokedAt
			}
			best := pool[0]
			for _, p := range pool[1:] {
				if a, b := waited(p), waited(best); a.Before(b) || (a.Equal(b) && p.ID < best.ID) {
					best = p
				}
			}
			c.optimistic = best.ID
		case total > 0:
			x := c.rnd.IntN(total)
			for i, w := range weights {
				if x < w {
					c.optimistic = pool[i].ID
					break
				}
				x -= w
			}
		}
		c.lastRotated = now
		d.Rotated = c.optimistic != prev
	}
	if c.optimistic >= 0 {
		d.Optimistic = c.optimistic
		d.Unchoked[c.optimistic] = true
	}
	what := "download"
	if seeding {
		what = "upload"
	}
	if roundRobin {
		d.Reason = fmt.Sprintf("seeding, round robin (a slot for %d bytes and %v): regular %v, optimistic %d (rotated %v)", c.quota(), c.quotaTime(), d.Regular, d.Optimistic, d.Rotated)
		return d
	}
	if c.Random {
		d.Reason = fmt.Sprintf("tit-for-tat off, regular slots at random: regular %v, optimistic %d (rotated %v)", d.Regular, d.Optimistic, d.Rotated)
		return d
	}
	d.Reason = fmt.Sprintf("tit-for-tat by %s rate: regular %v, optimistic %d (rotated %v), snubbed %v", what, d.Regular, d.Optimistic, d.Rotated, d.Snubbed)
	return d
}

func (c *Choker) quota() int64 {
	if c.Quota > 0 {
		return c.Quota
	}
	return 20 * 256 << 10
}

func (c *Choker) quotaTime() time.Duration {
	if c.QuotaTime > 0 {
		return c.QuotaTime
	}
	return 6 * c.Interval
}

// roundRobin orders a seed's candidates as libtorrent's round-robin seed
// choker does: peers whose quota is done go last; before them, peers
// holding a slot that we upload to (the status quo), the faster first,
// the optimistic peer after the regular slots' holders; then the rest by
// how long ago their last slot began (never unchoked first), so the slots
// rotate.
func (c *Choker) roundRobin(now time.Time, cand []ChokePeer) {
	done := func(p ChokePeer) bool { return c.quotaDone(now, p) }
	sort.SliceStable(cand, func(i, j int) bool {
		a, b := cand[i], cand[j]
		if da, db := done(a), done(b); da != db {
			return db
		}
		// The optimistic peer, unchoked for a turn, comes after the
		// regular slots' holders: it is first in line for the next
		// regular slot, but must not take one from a peer whose quota
		// is not done.
		if oa, ob := a.ID == c.optimistic, b.ID == c.optimistic; oa != ob && a.Unchoked && b.Unchoked {
			return ob
		}
		// A choked peer counts as uploading nothing (what is still in
		// flight from an earlier slot must not rank it first).
		ua, ub := 0.0, 0.0
		if a.Unchoked {
			ua = a.UpRate
		}
		if b.Unchoked {
			ub = b.UpRate
		}
		if ua != ub {
			return ua > ub
		}
		if !a.UnchokedAt.Equal(b.UnchokedAt) {
			return a.UnchokedAt.Before(b.UnchokedAt)
		}
		return a.ID < b.ID
	})
}

// quotaDone reports whether an unchoked peer has had its round-robin
// turn: Quota bytes and QuotaTime.
func (c *Choker) quotaDone(now time.Time, p ChokePeer) bool {
	return p.Unchoked && p.SinceUnchoke >= c.quota() && now.Sub(p.UnchokedAt) >= c.quotaTime()
}
