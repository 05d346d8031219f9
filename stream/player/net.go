package player

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/applayer/applayer/stream/shape"
	"github.com/applayer/applayer/web/client"
)

// Clock is the player's time: real, or simulated in tests and offline
// runs.
type Clock interface {
	Now() time.Time
	// Sleep waits d (a simulated clock just moves on).
	Sleep(ctx context.Context, d time.Duration) error
}

// RealClock is wall-clock time.
type RealClock struct{}

// Now implements Clock.
func (RealClock) Now() time.Time { return time.Now() }

// Sleep implements Clock.
func (RealClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// SimClock is a simulated clock: Sleep advances it at once.
type SimClock struct {
	mu sync.Mutex
	t  time.Time
}

// NewSimClock starts a simulated clock at t.
func NewSimClock(t time.Time) *SimClock { return &SimClock{t: t} }

// Now implements Clock.
func (c *SimClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Sleep implements Clock.
func (c *SimClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d > 0 {
		c.mu.Lock()
		c.t = c.t.Add(d)
		c.mu.Unlock()
	}
	return nil
}

// Fetcher downloads objects.
type Fetcher interface {
	// Fetch downloads url. progress, when set, is called as bytes arrive
	// (at least every 100 ms of download while data flows) with the bytes
	// so far and the total (-1 when unknown); returning false abandons
	// the download and Fetch returns ErrAbandoned with the bytes so far.
	Fetch(ctx context.Context, url string, progress func(got, total int64) bool) (body []byte, n int64, err error)
}

// ErrAbandoned is returned by Fetch when progress abandons a download.
var ErrAbandoned = errors.New("player: download abandoned")

// StatusError is a response other than 200.
type StatusError struct {
	URL        string
	Code       int
	Status     string
	RetryAfter time.Duration // from Retry-After, 0 without
}

func (e *StatusError) Error() string { return fmt.Sprintf("player: GET %s: %s", e.URL, e.Status) }

// FetchManifest fetches the MPD, retrying while the origin answers 503
// (as the lab's origin does while it packages) for up to wait.
func FetchManifest(ctx context.Context, f Fetcher, c Clock, url string, wait time.Duration) ([]byte, error) {
	deadline := c.Now().Add(wait)
	for {
		body, _, err := f.Fetch(ctx, url, nil)
		var se *StatusError
		if err == nil || !errors.As(err, &se) || se.Code != http.StatusServiceUnavailable || se.RetryAfter == 0 {
			return body, err
		}
		d := min(se.RetryAfter, 5*time.Second)
		if c.Now().Add(d).After(deadline) {
			return nil, err
		}
		if err := c.Sleep(ctx, d); err != nil {
			return nil, err
		}
	}
}

// MaxObject bounds one downloaded object.
const MaxObject = 256 << 20

// HTTPFetcher downloads with the web client.
type HTTPFetcher struct {
	Client *client.Client
	// Keep keeps every body (for the decode check); otherwise only those
	// of downloads without progress (the MPD, initialization segments,
	// audio) are kept, and media segments are counted and dropped.
	Keep bool
}

// Fetch implements Fetcher.
func (f *HTTPFetcher) Fetch(ctx context.Context, url string, progress func(got, total int64) bool) ([]byte, int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("player: %w", err)
	}
	resp, err := f.Client.Open(ctx, req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		se := &StatusError{URL: url, Code: resp.StatusCode, Status: resp.Status}
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs >= 0 {
			se.RetryAfter = time.Duration(min(secs, 3600)) * time.Second
		}
		return nil, 0, se
	}
	total := resp.ContentLength
	if total > MaxObject {
		return nil, 0, fmt.Errorf("player: GET %s: %d bytes exceeds %d", url, total, MaxObject)
	}
	var body []byte
	buf := make([]byte, 32<<10)
	var n int64
	last := time.Now()
	for {
		m, err := resp.Body.Read(buf)
		n += int64(m)
		if n > MaxObject {
			return nil, n, fmt.Errorf("player: GET %s: more than %d bytes", url, MaxObject)
		}
		if f.Keep || progress == nil {
			body = append(body, buf[:m]...)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, n, fmt.Errorf("player: GET %s: %w", url, err)
		}
		if progress != nil && time.Since(last) >= 50*time.Millisecond {
			last = time.Now()
			if !progress(n, total) {
				return nil, n, ErrAbandoned
			}
		}
	}
	if total >= 0 && n != total {
		return nil, n, fmt.Errorf("player: GET %s: %d of %d bytes", url, n, total)
	}
	return body, n, nil
}

// SimNet is a simulated network for a SimClock: each download takes RTT
// plus the time the schedule needs for the object's size.
type SimNet struct {
	Clock *SimClock
	Sched *shape.Schedule
	// Start is when the schedule's time 0 is. Default the clock's time
	// at the first Fetch.
	Start time.Time
	RTT   time.Duration
	// Size is an object's size (an error for objects that do not exist).
	Size func(url string) (int64, error)
	// Body, when set, supplies objects' bytes (the MPD).
	Body func(url string) ([]byte, bool)
	// Log, when set, records each request.
	Log func(url string)
}

// Fetch implements Fetcher.
func (s *SimNet) Fetch(ctx context.Context, url string, progress func(got, total int64) bool) ([]byte, int64, error) {
	if s.Start.IsZero() {
		s.Start = s.Clock.Now()
	}
	if s.Log != nil {
		s.Log(url)
	}
	if s.Body != nil {
		if b, ok := s.Body(url); ok {
			return b, int64(len(b)), s.Clock.Sleep(ctx, s.RTT)
		}
	}
	size, err := s.Size(url)
	if err != nil {
		return nil, 0, err
	}
	if err := s.Clock.Sleep(ctx, s.RTT); err != nil {
		return nil, 0, err
	}
	const tick = 100 * time.Millisecond
	var got float64
	for {
		t := s.Clock.Now().Sub(s.Start)
		left := float64(size) - got
		if d := s.Sched.TransferTime(t, left); d <= tick {
			return nil, size, s.Clock.Sleep(ctx, d)
		}
		got += s.Sched.Bytes(t, tick)
		if err := s.Clock.Sleep(ctx, tick); err != nil {
			return nil, int64(got), err
		}
		if progress != nil && !progress(int64(got), size) {
			return nil, int64(got), ErrAbandoned
		}
	}
}
