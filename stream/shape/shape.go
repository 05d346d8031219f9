// Package shape is bandwidth over time: a Schedule read from a step list
// ("20M:20s,1M:20s,8M:15s") or a Pensieve "cooked" trace file (one
// "seconds Mbit/s" sample per line), the arithmetic a simulated network
// needs (how long n bytes take from time t), and a Shaper that holds the
// connections of one client (its dialer's) to the schedule in real time,
// so a player's downloads follow the same bandwidth in every run.
package shape

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/applayer/applayer/internal/service"
)

// Step is a constant rate for a duration.
type Step struct {
	Dur  time.Duration
	Mbps float64
}

// Schedule is a piecewise-constant bandwidth, repeated from the start when
// time runs past its end (as Pensieve's simulator loops its traces).
type Schedule struct {
	Steps []Step
	total time.Duration
}

// MaxSteps bounds a schedule's steps (a cooked trace has one per line).
const MaxSteps = 1 << 20

// MaxTraceBytes bounds a trace file.
const MaxTraceBytes = 64 << 20

// New builds a schedule; every step needs a positive duration and a rate
// of at least 1 kbit/s (a zero rate would never finish a download).
func New(steps []Step) (*Schedule, error) {
	if len(steps) == 0 {
		return nil, errors.New("shape: empty schedule")
	}
	if len(steps) > MaxSteps {
		return nil, fmt.Errorf("shape: %d steps (at most %d)", len(steps), MaxSteps)
	}
	s := &Schedule{Steps: steps}
	for i, st := range steps {
		if st.Dur <= 0 {
			return nil, fmt.Errorf("shape: step %d: duration %v", i+1, st.Dur)
		}
		if !(st.Mbps >= 0.001) || st.Mbps > 1e5 {
			return nil, fmt.Errorf("shape: step %d: rate %v Mbit/s (want 0.001 to 100000)", i+1, st.Mbps)
		}
		s.total += st.Dur
		if s.total > 1000*time.Hour {
			return nil, errors.New("shape: schedule longer than 1000 h")
		}
	}
	return s, nil
}

// Constant is a schedule of one rate.
func Constant(mbps float64) (*Schedule, error) {
	return New([]Step{{Dur: time.Hour, Mbps: mbps}})
}

// Length is one period of the schedule.
func (s *Schedule) Length() time.Duration { return s.total }

// ParseSteps reads "RATE:DUR,...", rates in Mbit/s with an optional M or
// k suffix ("20", "20M", "500k"), durations as Go durations ("20s").
func ParseSteps(spec string) (*Schedule, error) {
	var steps []Step
	for _, part := range strings.Split(spec, ",") {
		r, d, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return nil, fmt.Errorf("shape: step %q: want RATE:DURATION", part)
		}
		mul := 1.0
		switch {
		case strings.HasSuffix(r, "k"):
			mul, r = 1e-3, r[:len(r)-1]
		case strings.HasSuffix(r, "M"):
			r = r[:len(r)-1]
		}
		v, err := strconv.ParseFloat(r, 64)
		if err != nil {
			return nil, fmt.Errorf("shape: step %q: rate: %v", part, err)
		}
		dur, err := time.ParseDuration(d)
		if err != nil {
			return nil, fmt.Errorf("shape: step %q: %v", part, err)
		}
		steps = append(steps, Step{Dur: dur, Mbps: v * mul})
	}
	return New(steps)
}

// ParseCooked reads a Pensieve cooked trace: lines "TIME MBPS" (seconds
// since the start, increasing; Mbit/s), blank lines and # comments
// ignored. Sample i's rate holds until sample i+1's time; the last holds
// for the mean sample spacing.
func ParseCooked(data []byte) (*Schedule, error) {
	if len(data) > MaxTraceBytes {
		return nil, fmt.Errorf("shape: trace of %d bytes (at most %d)", len(data), MaxTraceBytes)
	}
	type sample struct{ t, mbps float64 }
	var ss []sample
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), 4096)
	line := 0
	for sc.Scan() {
		line++
		txt := strings.TrimSpace(sc.Text())
		if txt == "" || strings.HasPrefix(txt, "#") {
			continue
		}
		f := strings.Fields(txt)
		if len(f) != 2 {
			return nil, fmt.Errorf("shape: trace line %d: want \"TIME MBPS\", got %q", line, txt)
		}
		t, err1 := strconv.ParseFloat(f[0], 64)
		r, err2 := strconv.ParseFloat(f[1], 64)
		if err1 != nil || err2 != nil || math.IsNaN(t) || math.IsInf(t, 0) || math.IsNaN(r) || t < 0 || t > 3.6e6 {
			return nil, fmt.Errorf("shape: trace line %d: bad numbers %q", line, txt)
		}
		if len(ss) > 0 && t <= ss[len(ss)-1].t {
			return nil, fmt.Errorf("shape: trace line %d: time %v does not increase", line, t)
		}
		if len(ss) >= MaxSteps {
			return nil, fmt.Errorf("shape: trace has more than %d samples", MaxSteps)
		}
		ss = append(ss, sample{t, r})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("shape: trace line %d: %w", line+1, err)
	}
	if len(ss) == 0 {
		return nil, errors.New("shape: empty trace")
	}
	last := 1.0
	if len(ss) > 1 {
		last = (ss[len(ss)-1].t - ss[0].t) / float64(len(ss)-1)
	}
	steps := make([]Step, 0, len(ss))
	for i, s := range ss {
		d := last
		if i+1 < len(ss) {
			d = ss[i+1].t - s.t
		}
		steps = append(steps, Step{Dur: time.Duration(d * float64(time.Second)), Mbps: max(s.mbps, 0.001)})
	}
	return New(steps)
}

// Splice is s until at, then then from its start, for length in all
// (both repeated as they repeat; the result repeats after length): a
// schedule that shares s's first at and goes another way after.
func (s *Schedule) Splice(at time.Duration, then *Schedule, length time.Duration) (*Schedule, error) {
	var steps []Step
	take := func(src *Schedule, from, d time.Duration) {
		for d > 0 {
			_, st, left := src.at(from)
			step := min(left, d)
			steps = append(steps, Step{Dur: step, Mbps: st.Mbps})
			from += step
			d -= step
		}
	}
	take(s, 0, min(at, length))
	if length > at {
		take(then, 0, length-at)
	}
	return New(steps)
}

// Rate is the bandwidth at time t (from the schedule's start), in bit/s.
func (s *Schedule) Rate(t time.Duration) float64 {
	_, st, _ := s.at(t)
	return st.Mbps * 1e6
}

// at finds the step holding at t and how long it still lasts.
func (s *Schedule) at(t time.Duration) (int, Step, time.Duration) {
	if t < 0 {
		t = 0
	}
	t %= s.total
	for i, st := range s.Steps {
		if t < st.Dur {
			return i, st, st.Dur - t
		}
		t -= st.Dur
	}
	return 0, s.Steps[0], s.Steps[0].Dur
}

// TransferTime is how long n bytes take when the transfer starts at t.
func (s *Schedule) TransferTime(t time.Duration, n float64) time.Duration {
	var d time.Duration
	bits := n * 8
	for guard := 0; bits > 0 && guard < 10*MaxSteps; guard++ {
		_, st, left := s.at(t + d)
		can := st.Mbps * 1e6 * left.Seconds()
		if can >= bits {
			return d + time.Duration(bits/(st.Mbps*1e6)*float64(time.Second))
		}
		bits -= can
		d += left
	}
	return d
}

// Bytes is how many bytes can pass between t and t+d.
func (s *Schedule) Bytes(t, d time.Duration) float64 {
	var bits float64
	for d > 0 {
		_, st, left := s.at(t)
		step := min(left, d)
		bits += st.Mbps * 1e6 * step.Seconds()
		t += step
		d -= step
	}
	return bits / 8
}

// Shaper holds the reads of every connection it wraps to the schedule
// (one token bucket shared by all), starting when it is made.
type Shaper struct {
	sched *Schedule
	now   func() time.Time

	mu     sync.Mutex
	start  time.Time
	last   time.Time
	credit float64 // bytes
}

// burst is the bucket's depth: 50 ms of the current rate, at least
// 16 KiB, so the rate holds on short time scales and a reader woken late
// (a loaded machine) loses no credit.
func burst(rate float64) float64 { return max(16<<10, rate/8*0.05) }

// NewShaper returns a shaper whose schedule starts now.
func NewShaper(s *Schedule, now func() time.Time) *Shaper {
	if now == nil {
		now = time.Now
	}
	t := now()
	return &Shaper{sched: s, now: now, start: t, last: t}
}

// Restart starts the schedule again from its beginning.
func (sh *Shaper) Restart() {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.start, sh.last, sh.credit = sh.now(), sh.now(), 0
}

// take waits until some of want bytes may pass and returns how many.
func (sh *Shaper) take(ctx context.Context, want int) (int, error) {
	for {
		sh.mu.Lock()
		now := sh.now()
		sh.credit = min(sh.credit+sh.sched.Bytes(sh.last.Sub(sh.start), now.Sub(sh.last)), burst(sh.sched.Rate(now.Sub(sh.start))))
		sh.last = now
		if sh.credit >= 1 {
			n := min(want, int(sh.credit))
			sh.credit -= float64(n)
			sh.mu.Unlock()
			return n, nil
		}
		rate := sh.sched.Rate(now.Sub(sh.start)) / 8
		sh.mu.Unlock()
		wait := time.Duration(min(float64(want), 1500) / rate * float64(time.Second))
		wait = max(wait, time.Millisecond)
		wait = min(wait, 50*time.Millisecond)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		case <-t.C:
		}
	}
}

// Conn wraps c so its reads follow the schedule.
func (sh *Shaper) Conn(c net.Conn) net.Conn { return &shapedConn{Conn: c, sh: sh} }

type shapedConn struct {
	net.Conn
	sh *Shaper
}

func (c *shapedConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return c.Conn.Read(p)
	}
	n, err := c.sh.take(context.Background(), len(p))
	if err != nil {
		return 0, err
	}
	m, err := c.Conn.Read(p[:n])
	if m < n {
		// Return the unused credit.
		c.sh.mu.Lock()
		c.sh.credit += float64(n - m)
		c.sh.mu.Unlock()
	}
	return m, err
}

// Dialer wraps d so every connection it opens is shaped.
func (sh *Shaper) Dialer(d service.Dialer) service.Dialer {
	if d == nil {
		d = &net.Dialer{Timeout: 10 * time.Second}
	}
	return dialer{d: d, sh: sh}
}

type dialer struct {
	d  service.Dialer
	sh *Shaper
}

func (d dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return d.sh.Conn(c), nil
}
