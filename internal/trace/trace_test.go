package trace

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBusFanOutAndCancel(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b := NewBus(func() time.Time { return now })
	if b.Enabled() {
		t.Fatal("new bus is enabled")
	}
	var a, c []Event
	cancelA := b.Subscribe(SinkFunc(func(e Event) { a = append(a, e) }))
	b.Subscribe(SinkFunc(func(e Event) { c = append(c, e) }))
	if !b.Enabled() {
		t.Fatal("bus with sinks is not enabled")
	}
	b.Publish(Event{From: "x", To: "y", Proto: "udp", Summary: "hi", Bytes: 2})
	cancelA()
	cancelA() // idempotent
	b.Publish(Event{From: "y", To: "x", Proto: "udp", Summary: "HI", Bytes: 2})
	if len(a) != 1 || len(c) != 2 {
		t.Fatalf("sink A got %d events, sink C %d; want 1 and 2", len(a), len(c))
	}
	if !a[0].Time.Equal(now) {
		t.Errorf("event time = %v, want the bus clock's %v", a[0].Time, now)
	}
}

func TestNilBus(t *testing.T) {
	var b *Bus
	if b.Enabled() {
		t.Fatal("nil bus enabled")
	}
	b.Publish(Event{}) // must not panic
}

func TestJSONL(t *testing.T) {
	var buf bytes.Buffer
	j := NewJSONL(&buf)
	b := NewBus(nil)
	b.Subscribe(j)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			b.Publish(Event{From: "127.0.0.1:1", To: "127.0.0.1:2", Proto: "tcp", Summary: strings.Repeat("x", i), Bytes: i})
		})
	}
	wg.Wait()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 50 {
		t.Fatalf("got %d lines, want 50", len(lines))
	}
	for _, l := range lines {
		var e Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if e.Proto != "tcp" || len(e.Summary) != e.Bytes || e.Time.IsZero() {
			t.Fatalf("event %+v does not round-trip", e)
		}
	}
}

// BenchmarkPublishNoListener shows that tracing costs nothing measurable
// when nobody listens: one atomic load, no allocation.
func BenchmarkPublishNoListener(b *testing.B) {
	bus := NewBus(nil)
	b.ReportAllocs()
	for b.Loop() {
		if bus.Enabled() {
			bus.Publish(Event{From: "a", To: "b", Proto: "udp", Summary: "x", Bytes: 1})
		}
	}
}

// BenchmarkPublishOneListener is the cost with a sink attached, for contrast.
func BenchmarkPublishOneListener(b *testing.B) {
	bus := NewBus(nil)
	n := 0
	bus.Subscribe(SinkFunc(func(Event) { n++ }))
	b.ReportAllocs()
	for b.Loop() {
		if bus.Enabled() {
			bus.Publish(Event{From: "a", To: "b", Proto: "udp", Summary: "x", Bytes: 1})
		}
	}
}

func TestPublishNoListenerAllocatesNothing(t *testing.T) {
	bus := NewBus(nil)
	allocs := testing.AllocsPerRun(1000, func() {
		bus.Publish(Event{From: "a", To: "b", Proto: "udp", Summary: "x", Bytes: 1})
	})
	if allocs != 0 {
		t.Fatalf("Publish with no listener allocates %v times", allocs)
	}
}

func TestWithHostStampsEvents(t *testing.T) {
	b := NewBus(nil)
	h := b.WithHost("resolver.nyu.edu")
	if h.Enabled() {
		t.Fatal("child enabled with no listener")
	}
	var got []Event
	h.Subscribe(SinkFunc(func(e Event) { got = append(got, e) }))
	if !h.Enabled() || !b.Enabled() {
		t.Fatal("subscribing through the child did not enable the bus")
	}
	h.Publish(Event{Summary: "a"})
	h.Publish(Event{Summary: "b", Host: "explicit"})
	b.Publish(Event{Summary: "c"})
	want := []string{"resolver.nyu.edu", "explicit", ""}
	if len(got) != 3 {
		t.Fatalf("got %d events", len(got))
	}
	for i, e := range got {
		if e.Host != want[i] || e.Time.IsZero() {
			t.Errorf("event %d: host %q time %v, want host %q", i, e.Host, e.Time, want[i])
		}
	}
	var nilBus *Bus
	if nilBus.WithHost("x") != nil {
		t.Error("nil bus WithHost != nil")
	}
}

// jsonlFile returns a trace file's path, its JSONL sink and a bus the sink
// listens to.
func jsonlFile(t *testing.T) (string, *JSONL, *Bus) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "trace.jsonl")
	j, err := CreateJSONL(path)
	if err != nil {
		t.Fatal(err)
	}
	b := NewBus(nil)
	b.Subscribe(j)
	return path, j, b
}

// TestJSONLFlushesAsEventsHappen: a reader of the trace file (tail -f) sees
// each event without waiting for Close, and a process killed before Close
// keeps what was traced until then. The bound is generous; the flush itself
// is scheduled FlushInterval after the first buffered event.
func TestJSONLFlushesAsEventsHappen(t *testing.T) {
	path, j, b := jsonlFile(t)
	defer j.Close()
	waitLines := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			data, _ := os.ReadFile(path)
			if got := strings.Count(string(data), "\n"); got >= n {
				return
			} else if time.Now().After(deadline) {
				t.Fatalf("after 10s the file holds %d lines, want %d (events are not flushed as they happen)", got, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	b.Publish(Event{Summary: "first"})
	waitLines(1)
	b.Publish(Event{Summary: "second"})
	b.Publish(Event{Summary: "third"})
	waitLines(3)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	b.Publish(Event{Summary: "after close"}) // dropped, no panic
	data, _ := os.ReadFile(path)
	if strings.Count(string(data), "\n") != 3 || strings.Contains(string(data), "after close") {
		t.Fatalf("file after Close:\n%s", data)
	}
}

// TestJSONLFlushesWithinInterval: while a busy lab publishes an event
// every 5 ms for 1.5 s, each event reaches the file within FlushInterval of
// its publication (plus slack for a loaded machine's timers), so a flush
// is never put off by the events that keep arriving, and `tail -f` follows
// the lab live.
func TestJSONLFlushesWithinInterval(t *testing.T) {
	path, j, b := jsonlFile(t)
	defer j.Close()
	const (
		n     = 300
		every = 5 * time.Millisecond
		slack = 400 * time.Millisecond
	)
	var mu sync.Mutex
	published := make([]time.Time, n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			mu.Lock()
			published[i] = time.Now()
			mu.Unlock()
			b.Publish(Event{Summary: fmt.Sprintf("event %d", i)})
			time.Sleep(every)
		}
	}()
	var worst time.Duration
	seen := 0
	for seen < n {
		data, _ := os.ReadFile(path)
		now := time.Now()
		lines := strings.Count(string(data), "\n")
		mu.Lock()
		for ; seen < lines; seen++ {
			if late := now.Sub(published[seen]); late > worst {
				worst = late
			}
		}
		mu.Unlock()
		select {
		case <-done:
			if seen < n && time.Since(published[0]) > 20*time.Second {
				t.Fatalf("%d of %d events in the file 20 s after the first", seen, n)
			}
		default:
		}
		time.Sleep(2 * time.Millisecond)
	}
	<-done
	if worst > FlushInterval+slack {
		t.Errorf("an event reached the file %s after it was published, want within %s (+%s slack)", worst, FlushInterval, slack)
	} else {
		t.Logf("worst latency to the file: %s (FlushInterval %s)", worst, FlushInterval)
	}
}
