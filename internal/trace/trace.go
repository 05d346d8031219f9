// Package trace is the protocol-event bus: every protocol message a server or
// client sends or receives can be published as an Event (who, to whom,
// protocol, summary, size, time). Sinks such as the JSONL writer subscribe to
// it. Publishing costs one atomic load when nobody listens, so callers can
// leave tracing in hot paths; build costly summaries only after Enabled.
package trace

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Event is one protocol message (or connection, handshake, cache decision,
// link drop) seen by a server or a client. The schema, with the types and
// protocols each system publishes, is in docs/trace.md; Validate checks it.
type Event struct {
	Time time.Time `json:"time"` // when it was seen (set by Publish if zero)
	// Type is what happened: Msg (the default), ConnOpen, ConnClose,
	// Handshake, CacheHit, CacheMiss, CacheRevalidate, LinkDrop,
	// LinkQueue or State (see Types).
	Type    string `json:"type"`
	From    string `json:"from"`    // sender (client for connections), host:port
	To      string `json:"to"`      // receiver (server, cache), host:port
	Proto   string `json:"proto"`   // family[/variant]: "dns/udp", "http/1.1", "tls"
	Summary string `json:"summary"` // one line describing the message
	Bytes   int    `json:"bytes"`   // size of the message on the wire (0: unknown or none)
	// Host is the lab host (or service instance) that observed the message.
	Host string `json:"host,omitempty"`
}

// Sink receives events. Sinks are called synchronously from Publish and must
// not block for long.
type Sink interface {
	Event(Event)
}

// SinkFunc adapts a function to a Sink.
type SinkFunc func(Event)

// Event calls f(e).
func (f SinkFunc) Event(e Event) { f(e) }

// Bus fans events out to its subscribers. The zero value is ready to use and
// a nil *Bus is valid and never enabled.
type Bus struct {
	mu     sync.Mutex
	nextID uint64
	sinks  atomic.Pointer[[]subscription]
	now    func() time.Time

	// parent and host are set on a bus made by WithHost: it publishes to
	// parent, stamping events with host.
	parent *Bus
	host   string
}

// WithHost returns a bus that publishes to b with each event's Host set to
// host (when the publisher left it empty), so a lab can tell which of its
// hosts observed a message: a query is seen by its sender and its receiver.
// Subscribing to the returned bus subscribes to b.
func (b *Bus) WithHost(host string) *Bus {
	if b == nil {
		return nil
	}
	return &Bus{parent: b, host: host}
}

type subscription struct {
	id   uint64
	sink Sink
}

// NewBus returns an empty bus. now, when nil, is time.Now.
func NewBus(now func() time.Time) *Bus {
	return &Bus{now: now}
}

// Enabled reports whether anyone listens. It is a single atomic load.
func (b *Bus) Enabled() bool {
	if b == nil {
		return false
	}
	if b.parent != nil {
		return b.parent.Enabled()
	}
	p := b.sinks.Load()
	return p != nil && len(*p) > 0
}

// Publish hands e to every sink. A zero Time is set to the bus's clock.
func (b *Bus) Publish(e Event) {
	if b == nil {
		return
	}
	if b.parent != nil {
		if e.Host == "" {
			e.Host = b.host
		}
		b.parent.Publish(e)
		return
	}
	p := b.sinks.Load()
	if p == nil || len(*p) == 0 {
		return
	}
	if e.Type == "" {
		e.Type = Msg
	}
	if e.Time.IsZero() {
		if b.now != nil {
			e.Time = b.now()
		} else {
			e.Time = time.Now()
		}
	}
	for _, s := range *p {
		s.sink.Event(e)
	}
}

// Subscribe adds s and returns a function that removes it.
func (b *Bus) Subscribe(s Sink) (cancel func()) {
	if b.parent != nil {
		return b.parent.Subscribe(s)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nextID++
	id := b.nextID
	var cur []subscription
	if p := b.sinks.Load(); p != nil {
		cur = *p
	}
	next := append(append([]subscription(nil), cur...), subscription{id: id, sink: s})
	b.sinks.Store(&next)
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			cur := *b.sinks.Load()
			next := make([]subscription, 0, len(cur))
			for _, x := range cur {
				if x.id != id {
					next = append(next, x)
				}
			}
			b.sinks.Store(&next)
		})
	}
}

// FlushInterval is the longest an event written to a JSONL sink waits in
// its buffer: a `tail -f` of the trace sees each event within this time, and
// a process killed outright loses at most this much of the trace.
const FlushInterval = 100 * time.Millisecond

// JSONL writes events as JSON lines. It is safe for concurrent use. Events
// are buffered and written out within FlushInterval of being published (and
// on Flush and Close), so a busy lab does not pay a write per event and a
// reader of the file still sees them as they happen.
type JSONL struct {
	mu      sync.Mutex
	w       *bufio.Writer
	c       io.Closer
	enc     *json.Encoder
	err     error
	pending *time.Timer // the flush scheduled for buffered events, if any
	closed  bool
}

// NewJSONL returns a sink writing to w; Close flushes it and closes w if it
// is an io.Closer.
func NewJSONL(w io.Writer) *JSONL {
	bw := bufio.NewWriter(w)
	j := &JSONL{w: bw, enc: json.NewEncoder(bw)}
	if c, ok := w.(io.Closer); ok {
		j.c = c
	}
	return j
}

// CreateJSONL creates (or truncates) path and returns a sink writing to it.
func CreateJSONL(path string) (*JSONL, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	return NewJSONL(f), nil
}

// Event writes e as one line. Write errors are kept for Close.
func (j *JSONL) Event(e Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil || j.closed {
		return
	}
	j.err = j.enc.Encode(e)
	if j.pending == nil && j.w.Buffered() > 0 {
		j.pending = time.AfterFunc(FlushInterval, func() { j.Flush() })
	}
}

// Flush writes buffered events out.
func (j *JSONL) Flush() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.flushLocked()
}

func (j *JSONL) flushLocked() error {
	if j.pending != nil {
		j.pending.Stop()
		j.pending = nil
	}
	if err := j.w.Flush(); err != nil && j.err == nil {
		j.err = err
	}
	return j.err
}

// Close flushes and closes the underlying writer. Events published after
// Close are dropped.
func (j *JSONL) Close() error {
	j.mu.Lock()
	err := j.flushLocked()
	j.closed = true
	j.mu.Unlock()
	if j.c != nil {
		if cerr := j.c.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("trace: %w", err)
	}
	return nil
}

// Collector is a Sink that keeps every event, for scenarios and tests.
type Collector struct {
	mu     sync.Mutex
	events []Event
}

// Event implements Sink.
func (c *Collector) Event(e Event) {
	c.mu.Lock()
	c.events = append(c.events, e)
	c.mu.Unlock()
}

// Events returns a copy of the events kept so far.
func (c *Collector) Events() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Event(nil), c.events...)
}

// ReadJSONL reads a trace file's events (as the JSONL sink writes them).
func ReadJSONL(r io.Reader) ([]Event, error) {
	dec := json.NewDecoder(r)
	var out []Event
	for {
		var e Event
		if err := dec.Decode(&e); err == io.EOF {
			return out, nil
		} else if err != nil {
			return out, fmt.Errorf("trace: event %d: %w", len(out)+1, err)
		}
		out = append(out, e)
	}
}
