package swarm

import (
	"sync"
	"time"
)

// RateWindow is the span a Meter averages over.
const RateWindow = 20 * time.Second

// Meter measures a transfer rate over the last RateWindow in one-second
// buckets, on the clock it is handed. It is safe for concurrent use.
type Meter struct {
	mu      sync.Mutex
	buckets [20]int64
	last    int64 // unix second of the newest bucket
	start   time.Time
	total   int64
}

func (m *Meter) advance(sec int64) {
	switch {
	case m.last == 0 || sec-m.last >= int64(len(m.buckets)):
		m.buckets = [20]int64{}
		m.last = sec
	case sec > m.last:
		for m.last < sec {
			m.last++
			m.buckets[m.last%int64(len(m.buckets))] = 0
		}
	}
}

// Add counts n bytes at now.
func (m *Meter) Add(now time.Time, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.start.IsZero() {
		m.start = now
	}
	m.advance(now.Unix())
	m.buckets[m.last%int64(len(m.buckets))] += int64(n)
	m.total += int64(n)
}

// Rate is bytes per second over the window (or since the first byte, if
// that is sooner).
func (m *Meter) Rate(now time.Time) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.start.IsZero() {
		return 0
	}
	m.advance(now.Unix())
	var sum int64
	for _, b := range m.buckets {
		sum += b
	}
	span := min(now.Sub(m.start), RateWindow)
	if span < time.Second {
		span = time.Second
	}
	return float64(sum) / span.Seconds()
}

// Total is every byte counted.
func (m *Meter) Total() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.total
}

// Bucket is a token bucket: Rate tokens (bytes) a second, at most Burst
// saved up. A zero Rate means unlimited. It is safe for concurrent use.
type Bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

// NewBucket returns a bucket of rate bytes/s with a burst of burst bytes;
// rate 0 is unlimited. A burst under 32 KiB (two blocks), or 0, becomes
// a quarter of a second of rate (at least 32 KiB): a sender woken late
// (a loaded machine's timers can be tens of milliseconds late) then
// catches up instead of losing the time. The bucket starts with at most
// 32 KiB, so a transfer does not start with a quarter second's worth.
func NewBucket(rate, burst int) *Bucket {
	if burst < 32<<10 {
		burst = max(32<<10, rate/4)
	}
	return &Bucket{rate: float64(rate), burst: float64(burst), tokens: float64(min(burst, 32<<10))}
}

// Take takes n tokens at now and returns how long the caller must wait
// before using them (0 when they were there). The debt is recorded, so
// callers that wait their turn share the rate fairly.
func (b *Bucket) Take(now time.Time, n int) time.Duration {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rate <= 0 {
		return 0
	}
	if !b.last.IsZero() {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}
