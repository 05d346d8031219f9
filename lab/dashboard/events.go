package dashboard

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/applayer/applayer/internal/trace"
)

// StreamConfig bounds the event stream.
type StreamConfig struct {
	// Backlog is how many recent events are kept for reconnecting browsers
	// (Last-Event-ID) and for slow ones. Default 16384.
	Backlog int
	// MaxRate is the most events per second one browser is sent; beyond
	// it the oldest unsent events are skipped and counted as dropped
	// (a sequence diagram cannot draw more). Default 2000.
	MaxRate int
	// Linger keeps the hub subscribed to the bus this long after the last
	// browser leaves, so a reload or a reconnect loses nothing. Default 30s.
	Linger time.Duration
}

func (c *StreamConfig) defaults() {
	if c.Backlog <= 0 {
		c.Backlog = 16384
	}
	if c.MaxRate <= 0 {
		c.MaxRate = 2000
	}
	if c.Linger <= 0 {
		c.Linger = 30 * time.Second
	}
}

// streamTick is how often a stream writes what arrived: browsers get
// events in batches of at most MaxRate/10.
const streamTick = 100 * time.Millisecond

// hub keeps a ring of the bus's recent events, numbered from 1, while
// browsers watch. Publishers only take its lock to store an event and wake
// the streams (never waiting for a browser); each stream reads the ring at
// its own pace and counts what it had to skip.
type hub struct {
	cfg   StreamConfig
	bus   *trace.Bus
	hosts map[netip.Addr]string

	mu      sync.Mutex
	ring    []trace.Event
	last    uint64 // id of the newest event (0: none yet)
	streams map[*stream]struct{}
	unsub   func()
	linger  *time.Timer
	closed  bool
	done    chan struct{}
}

type stream struct {
	wake chan struct{}
}

func newHub(cfg StreamConfig, bus *trace.Bus, hosts map[netip.Addr]string) *hub {
	cfg.defaults()
	return &hub{cfg: cfg, bus: bus, hosts: hosts, ring: make([]trace.Event, cfg.Backlog),
		streams: map[*stream]struct{}{}, done: make(chan struct{})}
}

// Event implements trace.Sink.
func (h *hub) Event(e trace.Event) {
	h.mu.Lock()
	h.last++
	h.ring[h.last%uint64(len(h.ring))] = e
	for s := range h.streams {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	h.mu.Unlock()
}

// join registers a stream, subscribing to the bus if needed.
func (h *hub) join() (*stream, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, false
	}
	s := &stream{wake: make(chan struct{}, 1)}
	h.streams[s] = struct{}{}
	if h.linger != nil {
		h.linger.Stop()
		h.linger = nil
	}
	if h.unsub == nil && h.bus != nil {
		h.unsub = h.bus.Subscribe(h)
	}
	return s, true
}

func (h *hub) leave(s *stream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.streams, s)
	if len(h.streams) > 0 || h.unsub == nil || h.closed {
		return
	}
	h.linger = time.AfterFunc(h.cfg.Linger, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.streams) == 0 && h.unsub != nil {
			h.unsub()
			h.unsub = nil
		}
	})
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	close(h.done)
	if h.linger != nil {
		h.linger.Stop()
	}
	if h.unsub != nil {
		h.unsub()
		h.unsub = nil
	}
}

// read copies the events after id, at most max of them: when more are
// waiting, the oldest are skipped. It returns the events, the id of the
// last one returned (or of the skip), and how many were skipped, whether
// because the ring had overwritten them or because of max.
func (h *hub) read(after uint64, max int, buf []entry) ([]entry, uint64, uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if after > h.last { // an id from before a restart of the lab
		after = h.last
	}
	var skipped uint64
	if oldest := h.last - min(h.last, uint64(len(h.ring))); after < oldest {
		skipped += oldest - after
		after = oldest
	}
	if n := h.last - after; n > uint64(max) {
		skipped += n - uint64(max)
		after = h.last - uint64(max)
	}
	for id := after + 1; id <= h.last; id++ {
		buf = append(buf, entry{id: id, ev: h.ring[id%uint64(len(h.ring))]})
	}
	return buf, h.last, skipped
}

type entry struct {
	id uint64
	ev trace.Event
}

// wireEvent is an event as the page gets it: the trace event with the
// lab hosts its addresses belong to.
type wireEvent struct {
	ID uint64 `json:"id"`
	trace.Event
	FromHost string `json:"from_host,omitempty"`
	ToHost   string `json:"to_host,omitempty"`
}

func (h *hub) hostOf(addr string) string {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		if a, err := netip.ParseAddr(addr); err == nil {
			return h.hosts[a.Unmap()]
		}
		return ""
	}
	return h.hosts[ap.Addr().Unmap()]
}

// filter is the stream's query: proto (a family such as "dns", or a full
// protocol such as "dns/udp") and host (an event seen by, sent by or sent
// to that lab host), each a comma-separated list.
type filter struct {
	protos, hosts []string
}

func parseFilter(r *http.Request) filter {
	split := func(s string) []string {
		var out []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(strings.ToLower(p)); p != "" {
				out = append(out, p)
			}
		}
		return out
	}
	q := r.URL.Query()
	return filter{protos: split(q.Get("proto")), hosts: split(q.Get("host"))}
}

func (f filter) match(e *wireEvent) bool {
	if len(f.protos) > 0 {
		ok := false
		p := strings.ToLower(e.Proto)
		for _, want := range f.protos {
			if p == want || strings.HasPrefix(p, want+"/") {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(f.hosts) > 0 {
		ok := false
		for _, want := range f.hosts {
			if strings.EqualFold(e.Host, want) || strings.EqualFold(e.FromHost, want) || strings.EqualFold(e.ToHost, want) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// serveEvents streams the trace as server-sent events: "trace" events
// (data: the event as JSON, id: its number), "dropped" events (data:
// {"dropped": N, "total": M}) when some had to be skipped for this
// browser, and a comment every 15 s to keep the connection alive. A
// browser reconnecting with Last-Event-ID (or ?since=ID) gets what it
// missed while that is still in the backlog; ?since=now starts with the
// next event.
func (h *hub) serveEvents(w http.ResponseWriter, r *http.Request) {
	s, ok := h.join()
	if !ok {
		http.Error(w, "lab stopping", http.StatusServiceUnavailable)
		return
	}
	defer h.leave(s)
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})

	f := parseFilter(r)
	var cursor uint64
	since := r.Header.Get("Last-Event-ID")
	if since == "" {
		since = r.URL.Query().Get("since")
	}
	switch since {
	case "", "now":
		h.mu.Lock()
		cursor = h.last
		h.mu.Unlock()
	default:
		id, err := strconv.ParseUint(since, 10, 64)
		if err != nil {
			http.Error(w, "bad Last-Event-ID", http.StatusBadRequest)
			return
		}
		cursor = id
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: 1000\n: applayer lab events from %d\n\n", cursor)
	if rc.Flush() != nil {
		return
	}
	perTick := max(1, h.cfg.MaxRate*int(streamTick)/int(time.Second))
	tick := time.NewTicker(streamTick)
	defer tick.Stop()
	var (
		buf     []entry
		out     []byte
		dropped uint64 // total for this stream
		lastOut = time.Now()
	)
	for {
		select {
		case <-r.Context().Done():
			return
		case <-h.done:
			return
		case <-s.wake:
			continue // wait for the tick: batches, not a write per event
		case <-tick.C:
		}
		var skipped uint64
		buf, cursor, skipped = h.read(cursor, perTick, buf[:0])
		out = out[:0]
		if skipped > 0 {
			dropped += skipped
			out = fmt.Appendf(out, "event: dropped\ndata: {\"dropped\":%d,\"total\":%d}\n\n", skipped, dropped)
		}
		var sent uint64
		for i := range buf {
			we := wireEvent{ID: buf[i].id, Event: buf[i].ev}
			we.FromHost, we.ToHost = h.hostOf(we.From), h.hostOf(we.To)
			if !f.match(&we) {
				continue
			}
			data, err := json.Marshal(&we)
			if err != nil {
				continue
			}
			out = fmt.Appendf(out, "id: %d\nevent: trace\ndata: %s\n\n", we.ID, data)
			sent = we.ID
		}
		if len(buf) > 0 && sent != cursor && len(out) > 0 {
			// The newest events were filtered out: move the browser's
			// Last-Event-ID past them anyway (an id line alone sets it).
			out = fmt.Appendf(out, "id: %d\n\n", cursor)
		}
		if len(out) == 0 {
			if time.Since(lastOut) < 15*time.Second {
				continue
			}
			out = append(out, ": keep-alive\n\n"...)
		}
		if _, err := w.Write(out); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		lastOut = time.Now()
	}
}
