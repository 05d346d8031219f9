// Package link is the lab's user-space link model: a link has, in each
// direction, a one-way propagation delay, a transmission rate, a loss rate
// and a queue limit, and the lab applies it to every connection and datagram
// a host sends or receives by wrapping the host's listeners and dialed
// connections (no root, no netem, and outside clients such as dig and curl
// are shaped too).
//
// The model is the chapter's: a packet of L bits reaching a link at time t
// waits in a FIFO queue until the transmitter is free, takes L/R to
// transmit, then d to propagate. One Pipe (one direction of one link) is
// shared by every connection of the host, so fifteen requests a second
// over a 1.54 Mbit/s access link queue behind each other as they should.
//
// Streams (TCP) are cut into chunks of at most 16 KiB; a chunk waits for its
// turn on the link (Write blocks until it has been transmitted, which is
// the socket buffer's back-pressure) and is delivered d later. A stream never
// loses bytes: a segment the loss rate picks is retransmitted, which delays it
// (and everything behind it on the stream, head-of-line blocking) by one
// retransmission timeout, 200 ms + 2 d. A new connection pays one round trip
// of the link for the handshake before its first data. Datagrams (UDP) are
// dropped when lost or when the queue limit is reached. Each dropped datagram
// and each lost stream segment is published on the trace bus as a
// "link.drop" event. Besides its loss rate, a pipe can be told to lose the
// next n segments or datagrams it carries (Pipe.LoseNext), which places a
// loss exactly where a lesson needs it (the http2-vs-http1 scenario).
package link

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes a link. The zero value is a link that does nothing.
type Config struct {
	// Delay is the one-way propagation delay, the same in each direction.
	Delay time.Duration `json:"delay,omitempty"`
	// Up is the rate in bits/s from the host into the network; 0 is
	// unlimited.
	Up float64 `json:"up,omitempty"`
	// Down is the rate in bits/s from the network to the host; 0 is
	// unlimited.
	Down float64 `json:"down,omitempty"`
	// Loss is the probability (0 to 1) that a packet is lost.
	Loss float64 `json:"loss,omitempty"`
	// Queue is the most bytes waiting for the transmitter in one
	// direction; a datagram that would exceed it is dropped. 0 is
	// unlimited. Streams are held back instead (they never overflow).
	Queue int `json:"queue,omitempty"`
}

// IsZero reports whether c changes nothing.
func (c Config) IsZero() bool { return c == Config{} }

// Validate reports a Config outside its ranges.
func (c Config) Validate() error {
	switch {
	case c.Delay < 0:
		return fmt.Errorf("delay %s is negative", c.Delay)
	case c.Up < 0 || c.Down < 0 || math.IsNaN(c.Up) || math.IsNaN(c.Down) || math.IsInf(c.Up, 0) || math.IsInf(c.Down, 0):
		return fmt.Errorf("rate must be a positive number of bits/s")
	case c.Loss < 0 || c.Loss >= 1 || math.IsNaN(c.Loss):
		return fmt.Errorf("loss %g is outside 0 to 1 (exclusive)", c.Loss)
	case c.Queue < 0:
		return fmt.Errorf("queue %d is negative", c.Queue)
	}
	return nil
}

// String renders c in the form Parse reads.
func (c Config) String() string {
	var parts []string
	if c.Delay != 0 {
		parts = append(parts, "delay="+c.Delay.String())
	}
	switch {
	case c.Up == c.Down && c.Up != 0:
		parts = append(parts, "rate="+FormatRate(c.Up))
	default:
		if c.Up != 0 {
			parts = append(parts, "up="+FormatRate(c.Up))
		}
		if c.Down != 0 {
			parts = append(parts, "down="+FormatRate(c.Down))
		}
	}
	if c.Loss != 0 {
		parts = append(parts, "loss="+strconv.FormatFloat(c.Loss*100, 'g', -1, 64)+"%")
	}
	if c.Queue != 0 {
		parts = append(parts, "queue="+strconv.Itoa(c.Queue))
	}
	return strings.Join(parts, ",")
}

// Parse reads a link written as comma-separated key=value pairs:
// delay=1s, rate=1.54Mbit (both directions), up=..., down=..., loss=1% (or
// 0.01), queue=64KB (bytes; KB, KiB, MB, MiB suffixes).
func Parse(s string) (Config, error) {
	var c Config
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return c, fmt.Errorf("link: %q is not key=value (keys: delay, rate, up, down, loss, queue)", kv)
		}
		var err error
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "delay":
			c.Delay, err = time.ParseDuration(v)
		case "rate":
			c.Up, err = ParseRate(v)
			c.Down = c.Up
		case "up":
			c.Up, err = ParseRate(v)
		case "down":
			c.Down, err = ParseRate(v)
		case "loss":
			c.Loss, err = parseLoss(v)
		case "queue":
			c.Queue, err = parseBytes(v)
		default:
			return c, fmt.Errorf("link: unknown key %q (keys: delay, rate, up, down, loss, queue)", k)
		}
		if err != nil {
			return c, fmt.Errorf("link: %s: %w", k, err)
		}
	}
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("link: %w", err)
	}
	return c, nil
}

// ParseRate reads a rate in bits/s: "1.54Mbit", "100kbit", "1Gbit",
// "56000" (bits/s), also with "bps" or "bit/s".
func ParseRate(s string) (float64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	for _, suf := range []string{"bit/s", "bps", "bits", "bit", "b/s"} {
		if strings.HasSuffix(t, suf) {
			t = strings.TrimSuffix(t, suf)
			break
		}
	}
	mult := 1.0
	switch {
	case strings.HasSuffix(t, "k"):
		mult, t = 1e3, strings.TrimSuffix(t, "k")
	case strings.HasSuffix(t, "m"):
		mult, t = 1e6, strings.TrimSuffix(t, "m")
	case strings.HasSuffix(t, "g"):
		mult, t = 1e9, strings.TrimSuffix(t, "g")
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q is not a rate like 1.54Mbit or 100kbit", s)
	}
	return f * mult, nil
}

// FormatRate writes a rate in bits/s the way ParseRate reads it.
func FormatRate(r float64) string {
	switch {
	case r >= 1e9:
		return strconv.FormatFloat(r/1e9, 'g', -1, 64) + "Gbit"
	case r >= 1e6:
		return strconv.FormatFloat(r/1e6, 'g', -1, 64) + "Mbit"
	case r >= 1e3:
		return strconv.FormatFloat(r/1e3, 'g', -1, 64) + "kbit"
	}
	return strconv.FormatFloat(r, 'g', -1, 64) + "bit"
}

func parseLoss(s string) (float64, error) {
	s = strings.TrimSpace(s)
	pct := strings.HasSuffix(s, "%")
	f, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a loss rate like 1%% or 0.01", s)
	}
	if pct {
		f /= 100
	}
	return f, nil
}

func parseBytes(s string) (int, error) {
	t := strings.TrimSpace(s)
	mult := 1
	for _, u := range []struct {
		suf string
		m   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"KB", 1000}, {"MB", 1000 * 1000}, {"B", 1}} {
		if strings.HasSuffix(t, u.suf) {
			mult, t = u.m, strings.TrimSuffix(t, u.suf)
			break
		}
	}
	n, err := strconv.Atoi(strings.TrimSpace(t))
	if err != nil || n < 0 || n > math.MaxInt32/mult {
		return 0, fmt.Errorf("%q is not a size in bytes like 65536 or 64KB", s)
	}
	return n * mult, nil
}

// MSS is the segment size loss is decided on for streams.
const MSS = 1460

// MinRTO is the least retransmission timeout (Linux's).
const MinRTO = 200 * time.Millisecond

// Pipe is one direction of a link: a FIFO queue in front of a transmitter
// of Rate bits/s, then Delay of propagation. Every connection of a host
// shares its host's pipes. It is safe for concurrent use.
type Pipe struct {
	// Name says which link and direction, for drop events
	// ("gaia.cs.umass.edu up").
	Name  string
	delay time.Duration
	rate  float64 // bits/s; 0 unlimited
	loss  float64
	queue int

	mu       sync.Mutex
	free     time.Time // when the transmitter is next idle
	rng      *rand.Rand
	loseNext int // segments or datagrams still to lose (LoseNext)

	sent, packets, dropped, lost atomic.Int64
}

// NewPipe returns a pipe with the given delay, rate (bits/s, 0 unlimited),
// loss probability and queue limit (bytes, 0 unlimited); seed makes its
// losses repeatable.
func NewPipe(name string, delay time.Duration, rate, loss float64, queue int, seed uint64) *Pipe {
	return &Pipe{Name: name, delay: delay, rate: rate, loss: loss, queue: queue,
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Delay is the pipe's one-way propagation delay.
func (p *Pipe) Delay() time.Duration { return p.delay }

// Rate is the pipe's rate in bits/s (0: unlimited).
func (p *Pipe) Rate() float64 { return p.rate }

// Sent is how many bytes the pipe has transmitted.
func (p *Pipe) Sent() int64 { return p.sent.Load() }

// Packets is how many datagrams or stream chunks the pipe has carried.
func (p *Pipe) Packets() int64 { return p.packets.Load() }

// Dropped is how many datagrams the pipe dropped for loss or a full queue.
func (p *Pipe) Dropped() int64 { return p.dropped.Load() }

// Retransmitted is how many stream segments the pipe lost (and delayed).
func (p *Pipe) Retransmitted() int64 { return p.lost.Load() }

// LoseNext makes the pipe lose the next n stream segments or datagrams it
// carries, whatever its loss rate: a deterministic loss, where a seeded
// random one would fall on whichever connection offers first.
func (p *Pipe) LoseNext(n int) {
	p.mu.Lock()
	p.loseNext = max(n, 0)
	p.mu.Unlock()
}

// lose decides whether the next segment or datagram is lost. p.mu is held.
func (p *Pipe) lose() bool {
	if p.loseNext > 0 {
		p.loseNext--
		return true
	}
	return p.loss > 0 && p.rng.Float64() < p.loss
}

// Verdict is what happened to n bytes offered to a pipe.
type Verdict struct {
	// Done is when the last bit left the transmitter (the sender may offer
	// more from then on).
	Done time.Time
	// At is when the bytes reach the far end.
	At time.Time
	// Drop is why a datagram was dropped ("loss", "queue full"); "" when
	// it was not.
	Drop string
	// Wait is how long the bytes waited in the queue for the transmitter,
	// and Queue the pipe where they waited longest.
	Wait  time.Duration
	Queue string
	// Lost is how many of a stream chunk's segments were lost, LostAt the
	// pipe that lost the first, and Stall the retransmission timeouts they
	// added to At (the stream's later bytes wait behind them).
	Lost   int
	LostAt string
	Stall  time.Duration
}

// Offer schedules n bytes reaching the pipe at now. A datagram may be
// dropped; a stream chunk is delayed by a retransmission timeout for each
// lost segment instead.
func (p *Pipe) Offer(now time.Time, n int, datagram bool) Verdict {
	p.mu.Lock()
	defer p.mu.Unlock()
	start := now
	if p.free.After(now) {
		start = p.free
	}
	if datagram {
		if p.queue > 0 && p.rate > 0 {
			backlog := start.Sub(now).Seconds() * p.rate / 8
			if int(backlog)+n > p.queue {
				p.dropped.Add(1)
				return Verdict{Done: now, At: now, Drop: "queue full"}
			}
		}
		if p.lose() {
			p.dropped.Add(1)
			return Verdict{Done: now, At: now, Drop: "loss"}
		}
	}
	done := start
	if p.rate > 0 {
		done = start.Add(time.Duration(float64(n) * 8 / p.rate * float64(time.Second)))
		p.free = done
	}
	at := done.Add(p.delay)
	var wait time.Duration
	if start.After(now) {
		wait = start.Sub(now)
	}
	v := Verdict{Done: done, Wait: wait, Queue: p.Name}
	if !datagram && (p.loss > 0 || p.loseNext > 0) {
		for left := n; left > 0; left -= MSS {
			if p.lose() {
				p.lost.Add(1)
				v.Lost++
				v.Stall += p.rto()
			}
		}
		if v.Lost > 0 {
			v.LostAt = p.Name
		}
	}
	v.At = at.Add(v.Stall)
	p.sent.Add(int64(n))
	p.packets.Add(1)
	return v
}

// rto is the retransmission timeout a lost segment costs: the minimum RTO
// plus the round trip of this link.
func (p *Pipe) rto() time.Duration { return MinRTO + 2*p.delay }

// Link is a host's access link (or a link between two hosts): Up carries
// what the host sends, Down what it receives.
type Link struct {
	Config Config
	Up     *Pipe
	Down   *Pipe
}

// New returns a link for cfg; name labels drop events, seed makes its
// losses repeatable (each direction gets its own stream).
func New(name string, cfg Config, seed uint64) *Link {
	return &Link{
		Config: cfg,
		Up:     NewPipe(name+" up", cfg.Delay, cfg.Up, cfg.Loss, cfg.Queue, seed*2+1),
		Down:   NewPipe(name+" down", cfg.Delay, cfg.Down, cfg.Loss, cfg.Queue, seed*2+2),
	}
}

// Path is the pipes a direction of a connection crosses, in order.
type Path []*Pipe

// Offer passes n bytes through every pipe of the path in turn. Done is
// when the first pipe finished transmitting (the sender's pace).
func (ps Path) Offer(now time.Time, n int, datagram bool) Verdict {
	v := Verdict{Done: now, At: now}
	for i, p := range ps {
		pv := p.Offer(v.At, n, datagram)
		if pv.Drop != "" {
			pv.Drop = p.Name + ": " + pv.Drop
			pv.Wait, pv.Queue = 0, ""
			return pv
		}
		if i == 0 {
			v.Done = pv.Done
		}
		if pv.Wait > v.Wait {
			v.Wait, v.Queue = pv.Wait, pv.Queue
		}
		if pv.Lost > 0 && v.Lost == 0 {
			v.LostAt = pv.LostAt
		}
		v.Lost += pv.Lost
		v.Stall += pv.Stall
		v.At = pv.At
	}
	return v
}

// Delay is the sum of the path's propagation delays.
func (ps Path) Delay() time.Duration {
	var d time.Duration
	for _, p := range ps {
		d += p.delay
	}
	return d
}
