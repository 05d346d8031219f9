// Package queue is applayer's durable mail spool. Enqueue writes a message
// with its envelope to a file, syncs the file and its directory, and only
// then returns, so the SMTP server answers 250 for nothing that a crash or
// a kill -9 can lose. Delivery workers take spooled messages, hand each
// recipient to a Deliverer, retry temporary failures with exponential
// backoff, and remove the file once every recipient is done. A crash
// between a delivery and the removal delivers that message again on
// restart: at most a duplicate, never a loss.
//
// Deliverers: Local, into the mail store, and Remote, by MX lookup and
// SMTP to the destination's servers. A recipient that fails permanently,
// or is still undelivered when the message outlives Config.Lifetime, is
// reported to the sender in an RFC 3464 delivery status notification,
// itself queued; a bounce that cannot be returned (null sender) is kept in
// the failed/ directory of the spool for the postmaster.
package queue

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/internal/service"
)

// Deliverer delivers a message to one recipient. An error wrapped by
// Permanent is not retried.
type Deliverer interface {
	Deliver(ctx context.Context, env Envelope, rcpt string, body []byte) error
}

// DelivererFunc adapts a function to Deliverer.
type DelivererFunc func(ctx context.Context, env Envelope, rcpt string, body []byte) error

// Deliver calls f.
func (f DelivererFunc) Deliver(ctx context.Context, env Envelope, rcpt string, body []byte) error {
	return f(ctx, env, rcpt, body)
}

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as a permanent failure: the recipient is not retried.
func Permanent(err error) error { return permanentError{err} }

// IsPermanent reports whether err was marked by Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// Envelope is a spooled message's SMTP envelope.
type Envelope struct {
	ID       string
	From     string // reverse path; "" for the null sender
	To       []string
	Received time.Time
}

// Config configures a Queue.
type Config struct {
	// Dir is the spool directory (created when missing).
	Dir string
	// Workers is how many deliveries run at once (default 4).
	Workers int
	// RetryMin and RetryMax bound the backoff between attempts: RetryMin
	// doubling per attempt up to RetryMax (defaults 1 minute, 1 hour).
	RetryMin, RetryMax time.Duration
	// Lifetime is how long a message may wait for its recipients before
	// they are bounced as expired (default 5 days, as Postfix's
	// maximal_queue_lifetime).
	Lifetime time.Duration
	// Hostname names this MTA in delivery status notifications.
	Hostname string
}

// DefaultLifetime is Config.Lifetime's default.
const DefaultLifetime = 5 * 24 * time.Hour

// Queue is a durable spool with delivery workers. It is a service.Service.
type Queue struct {
	cfg     Config
	deliver Deliverer
	log     *slog.Logger
	now     func() time.Time
	m       metrics

	mu       sync.Mutex
	pending  map[string]*entry
	started  bool
	cancel   context.CancelFunc
	done     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	wake     chan struct{}
	inflight sync.WaitGroup
}

type entry struct {
	env      Envelope
	attempts int
	next     time.Time
	busy     bool
	lastErr  string
}

// Status is a waiting message as `mail queue list` shows it.
type Status struct {
	Envelope
	Size      int64     `json:"size"`
	Attempts  int       `json:"attempts"`
	Next      time.Time `json:"next"`
	LastError string    `json:"last_error,omitempty"`
}

type metrics struct {
	enqueued, delivered, deferred, failed prometheus.Counter
	size                                  prometheus.GaugeFunc
}

const (
	msgSuffix = ".msg"
	tmpPrefix = ".tmp-"
	failedDir = "failed"
)

// New opens the spool in cfg.Dir, removing temporary files a crash left,
// and loads the messages waiting there; Start begins delivering them.
func New(cfg Config, d service.Deps, deliver Deliverer) (*Queue, error) {
	d = d.Defaults()
	if cfg.Dir == "" {
		return nil, errors.New("queue: no spool directory")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = time.Minute
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(time.Hour, cfg.RetryMin)
	}
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = DefaultLifetime
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, failedDir), 0o700); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	q := &Queue{cfg: cfg, deliver: deliver, log: d.Logger, now: d.Now, pending: map[string]*entry{}, wake: make(chan struct{}, 1)}
	f := prometheus.WrapRegistererWith(nil, d.Metrics)
	q.m.enqueued = counter(f, "queue_enqueued_total", "Messages written to the spool.")
	q.m.delivered = counter(f, "queue_delivered_total", "Recipients delivered.")
	q.m.deferred = counter(f, "queue_deferred_total", "Recipient deliveries that failed temporarily and will be retried.")
	q.m.failed = counter(f, "queue_failed_total", "Recipient deliveries that failed permanently.")
	q.m.size = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "applayer", Subsystem: "mail", Name: "queue_messages", Help: "Messages in the spool."}, func() float64 { return float64(q.Len()) })
	f.Register(q.m.size)
	entries, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, tmpPrefix):
			os.Remove(filepath.Join(cfg.Dir, name))
		case strings.HasSuffix(name, msgSuffix) && e.Type().IsRegular():
			env, err := readEnvelope(filepath.Join(cfg.Dir, name))
			if err != nil {
				q.log.Error("queue: unreadable spool file, left in place", "file", name, "err", err)
				continue
			}
			q.pending[env.ID] = &entry{env: env}
		}
	}
	return q, nil
}

func counter(r prometheus.Registerer, name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "mail", Name: name, Help: help})
	r.Register(c)
	return c
}

// Name implements service.Service.
func (q *Queue) Name() string { return "mail-queue" }

// Len returns how many messages wait in the spool.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// List returns the waiting messages, oldest first.
func (q *Queue) List() []Status {
	q.mu.Lock()
	out := make([]Status, 0, len(q.pending))
	for _, e := range q.pending {
		out = append(out, Status{Envelope: e.env, Attempts: e.attempts, Next: e.next, LastError: e.lastErr})
	}
	q.mu.Unlock()
	for i := range out {
		if fi, err := os.Stat(q.path(out[i].ID)); err == nil {
			out[i].Size = fi.Size()
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Received.Before(out[j].Received) })
	return out
}

// Delete removes a waiting message from the spool (its remaining
// recipients get nothing, and no bounce). A delivery in flight finishes.
func (q *Queue) Delete(id string) error {
	if strings.ContainsAny(id, `/\.`) || id == "" {
		return fmt.Errorf("queue: bad id %q", id)
	}
	q.mu.Lock()
	_, ok := q.pending[id]
	delete(q.pending, id)
	q.mu.Unlock()
	err := os.Remove(q.path(id))
	if err != nil && !(ok && errors.Is(err, os.ErrNotExist)) {
		return fmt.Errorf("queue: delete %s: %w", id, err)
	}
	return syncDir(q.cfg.Dir)
}

// Wake makes the scheduler look at the queue now (after a simulated clock
// moved, say); what is due is attempted.
func (q *Queue) Wake() { q.poke() }

// Pending returns the envelopes of the waiting messages.
func (q *Queue) Pending() []Envelope {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]Envelope, 0, len(q.pending))
	for _, e := range q.pending {
		out = append(out, e.env)
	}
	return out
}

func newID(now time.Time) string {
	var b [6]byte
	rand.Read(b[:])
	return fmt.Sprintf("%016x%s", now.UnixNano(), hex.EncodeToString(b[:]))
}

// Enqueue spools a message for the recipients and returns its id once the
// file and the directory entry are on stable storage.
func (q *Queue) Enqueue(ctx context.Context, from string, to []string, body []byte) (string, error) {
	if len(to) == 0 {
		return "", errors.New("queue: no recipients")
	}
	for _, a := range append([]string{from}, to...) {
		if strings.ContainsAny(a, "\r\n") {
			return "", fmt.Errorf("queue: bad address %q", a)
		}
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("queue: %w", err)
	}
	env := Envelope{ID: newID(q.now()), From: from, To: to, Received: q.now()}
	if err := q.write(env, body); err != nil {
		return "", err
	}
	q.m.enqueued.Inc()
	q.mu.Lock()
	q.pending[env.ID] = &entry{env: env}
	q.mu.Unlock()
	q.poke()
	return env.ID, nil
}

// The spool file: "from <addr>", "to <addr>"..., "received <unix ns>"
// lines, an empty line, then the message exactly as received.
func encodeHeader(env Envelope) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "applayer-spool 1\nid %s\nfrom %s\n", env.ID, env.From)
	for _, t := range env.To {
		fmt.Fprintf(&b, "to %s\n", t)
	}
	fmt.Fprintf(&b, "received %d\n\n", env.Received.UnixNano())
	return b.Bytes()
}

// write puts env and body in the spool durably: a temporary file, synced,
// renamed to its name, and the directory synced.
func (q *Queue) write(env Envelope, body []byte) (err error) {
	f, err := os.CreateTemp(q.cfg.Dir, tmpPrefix+"*")
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w := bufio.NewWriterSize(f, 64<<10)
	w.Write(encodeHeader(env))
	w.Write(body)
	if err = w.Flush(); err != nil {
		return fmt.Errorf("queue: write: %w", err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("queue: sync: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("queue: close: %w", err)
	}
	if err = os.Rename(f.Name(), q.path(env.ID)); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	return syncDir(q.cfg.Dir)
}

func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be synced there; NTFS journals the rename
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("queue: sync %s: %w", dir, err)
	}
	return nil
}

func (q *Queue) path(id string) string { return filepath.Join(q.cfg.Dir, id+msgSuffix) }

// readEnvelope parses a spool file's header.
func readEnvelope(path string) (Envelope, error) {
	f, err := os.Open(path)
	if err != nil {
		return Envelope{}, err
	}
	defer f.Close()
	env, _, err := parseSpool(bufio.NewReader(f))
	return env, err
}

// parseSpool reads a spool file's header from r, leaving r at the body.
func parseSpool(r *bufio.Reader) (Envelope, int, error) {
	var env Envelope
	n := 0
	first := true
	for {
		line, err := r.ReadString('\n')
		n += len(line)
		if err != nil {
			return env, n, fmt.Errorf("queue: spool header: %w", err)
		}
		line = strings.TrimSuffix(line, "\n")
		if first {
			if line != "applayer-spool 1" {
				return env, n, fmt.Errorf("queue: not a spool file")
			}
			first = false
			continue
		}
		if line == "" {
			break
		}
		k, v, _ := strings.Cut(line, " ")
		switch k {
		case "id":
			env.ID = v
		case "from":
			env.From = v
		case "to":
			env.To = append(env.To, v)
		case "received":
			ns, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return env, n, fmt.Errorf("queue: spool header: %w", err)
			}
			env.Received = time.Unix(0, ns)
		default:
			return env, n, fmt.Errorf("queue: spool header: unknown key %q", k)
		}
	}
	if env.ID == "" || len(env.To) == 0 {
		return env, n, errors.New("queue: spool header: no id or recipients")
	}
	return env, n, nil
}

func (q *Queue) readBody(id string) ([]byte, error) {
	data, err := os.ReadFile(q.path(id))
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	_, n, err := parseSpool(bufio.NewReader(bytes.NewReader(data)))
	if err != nil {
		return nil, err
	}
	return data[n:], nil
}

func (q *Queue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Start begins delivering: the messages already in the spool first.
func (q *Queue) Start(context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.started {
		return errors.New("queue: started twice")
	}
	q.started = true
	ctx, cancel := context.WithCancel(context.Background())
	q.cancel = cancel
	q.done = make(chan struct{})
	q.stop = make(chan struct{})
	go q.run(ctx)
	return nil
}

// Shutdown stops scheduling and waits for the deliveries in flight until
// ctx ends; what is left stays in the spool for the next start.
func (q *Queue) Shutdown(ctx context.Context) error {
	q.mu.Lock()
	cancel, done, stop := q.cancel, q.done, q.stop
	q.mu.Unlock()
	if cancel == nil {
		return nil
	}
	q.stopOnce.Do(func() { close(stop) })
	stopped := make(chan struct{})
	go func() {
		<-done
		q.inflight.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
		cancel()
		return nil
	case <-ctx.Done():
		cancel()
		<-stopped
		return fmt.Errorf("queue: shutdown: %w", ctx.Err())
	}
}

// run schedules due entries onto at most Workers deliveries at once.
func (q *Queue) run(ctx context.Context) {
	defer close(q.done)
	sem := make(chan struct{}, q.cfg.Workers)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := q.now()
		var due []*entry
		var earliest time.Time
		q.mu.Lock()
		for _, e := range q.pending {
			if e.busy {
				continue
			}
			if !e.next.After(now) {
				due = append(due, e)
			} else if earliest.IsZero() || e.next.Before(earliest) {
				earliest = e.next
			}
		}
		q.mu.Unlock()
		for _, e := range due {
			select {
			case sem <- struct{}{}:
			case <-q.stop:
				return
			}
			q.mu.Lock()
			e.busy = true
			q.mu.Unlock()
			q.inflight.Add(1)
			go func() {
				defer q.inflight.Done()
				defer func() { <-sem }()
				q.attempt(ctx, e)
			}()
		}
		wait := time.Hour
		if !earliest.IsZero() {
			wait = max(earliest.Sub(now), time.Millisecond)
		}
		timer.Reset(wait)
		select {
		case <-q.stop:
			return
		case <-q.wake:
		case <-timer.C:
		}
	}
}

// attempt delivers e to each of its remaining recipients.
func (q *Queue) attempt(ctx context.Context, e *entry) {
	env := e.env
	body, err := q.readBody(env.ID)
	if errors.Is(err, os.ErrNotExist) {
		// Deleted (mail queue delete) while it waited.
		q.mu.Lock()
		delete(q.pending, env.ID)
		q.mu.Unlock()
		return
	}
	if err != nil {
		q.log.Error("queue: read spooled message", "id", env.ID, "err", err)
		q.reschedule(e, env.To)
		return
	}
	var retry []string
	var failed []Failure
	var lastErr error
	expired := q.now().Sub(env.Received) >= q.cfg.Lifetime
	for _, rcpt := range env.To {
		err := q.deliver.Deliver(ctx, env, rcpt, body)
		switch {
		case err == nil:
			q.m.delivered.Inc()
			q.log.Info("queue: delivered", "id", env.ID, "to", rcpt)
		case IsPermanent(err):
			q.m.failed.Inc()
			failed = append(failed, Failure{Rcpt: rcpt, Err: err})
			q.log.Warn("queue: delivery failed", "id", env.ID, "to", rcpt, "err", err)
		case expired:
			q.m.failed.Inc()
			failed = append(failed, Failure{Rcpt: rcpt, Err: err, Expired: true})
			q.log.Warn("queue: message expired", "id", env.ID, "to", rcpt, "age", q.now().Sub(env.Received), "err", err)
		default:
			q.m.deferred.Inc()
			retry = append(retry, rcpt)
			lastErr = err
			q.log.Warn("queue: delivery deferred", "id", env.ID, "to", rcpt, "err", err)
		}
	}
	if len(failed) > 0 {
		if err := q.bounce(ctx, env, failed, body); err != nil {
			q.log.Error("queue: bounce", "id", env.ID, "err", err)
			for _, f := range failed {
				retry = append(retry, f.Rcpt) // not lost: tried again
			}
		}
	}
	if lastErr != nil {
		q.mu.Lock()
		e.lastErr = lastErr.Error()
		q.mu.Unlock()
	}
	if len(retry) > 0 {
		if len(retry) < len(env.To) {
			// Rewrite the spool file with the recipients still to do, so a
			// restart does not deliver to the others again.
			renv := env
			renv.To = retry
			if err := q.write(renv, body); err != nil {
				q.log.Error("queue: rewrite spool file", "id", env.ID, "err", err)
				retry = env.To
			} else {
				env = renv
			}
		}
		e.env = env
		q.reschedule(e, retry)
		return
	}
	if err := os.Remove(q.path(env.ID)); err != nil {
		q.log.Error("queue: remove delivered message", "id", env.ID, "err", err)
	} else if err := syncDir(q.cfg.Dir); err != nil {
		q.log.Error("queue: remove delivered message", "id", env.ID, "err", err)
	}
	q.mu.Lock()
	delete(q.pending, env.ID)
	q.mu.Unlock()
}

func (q *Queue) reschedule(e *entry, _ []string) {
	q.mu.Lock()
	e.attempts++
	backoff := q.cfg.RetryMin << min(e.attempts-1, 30)
	if backoff <= 0 || backoff > q.cfg.RetryMax {
		backoff = q.cfg.RetryMax
	}
	e.next = q.now().Add(backoff)
	e.busy = false
	q.mu.Unlock()
	q.poke()
}

// Flush makes every waiting message due now.
func (q *Queue) Flush() {
	q.mu.Lock()
	for _, e := range q.pending {
		e.next = time.Time{}
	}
	q.mu.Unlock()
	q.poke()
}

// keepFailed writes a permanently failed message to the failed/
// directory, durably, before the spool forgets it.
func (q *Queue) keepFailed(env Envelope, body []byte) error {
	dir := filepath.Join(q.cfg.Dir, failedDir)
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return err
	}
	_, err = f.Write(append(encodeHeader(env), body...))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, env.ID+msgSuffix))
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	return syncDir(dir)
}

// Failed returns the envelopes of the messages kept in failed/.
func (q *Queue) Failed() ([]Envelope, error) {
	dir := filepath.Join(q.cfg.Dir, failedDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	var out []Envelope
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), msgSuffix) {
			env, err := readEnvelope(filepath.Join(dir, e.Name()))
			if err != nil {
				return nil, err
			}
			out = append(out, env)
		}
	}
	return out, nil
}
