package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/internal/trace"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// sse is one server-sent event as read off the wire.
type sse struct {
	id, event, data string
}

// readSSE parses events from r until n have been read or the stream ends.
func readSSE(t *testing.T, br *bufio.Reader, n int, stop func(sse) bool) []sse {
	t.Helper()
	var out []sse
	var cur sse
	for len(out) < n {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream after %d events: %v", len(out), err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			if cur.event != "" || cur.data != "" {
				out = append(out, cur)
				if stop != nil && stop(cur) {
					return out
				}
			}
			cur = sse{}
		case strings.HasPrefix(line, ":"), strings.HasPrefix(line, "retry:"):
		case strings.HasPrefix(line, "id: "):
			cur.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			cur.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			cur.data = line[6:]
		default:
			t.Fatalf("malformed line %q", line)
		}
	}
	return out
}

func startHub(t *testing.T, cfg StreamConfig) (*trace.Bus, *hub, *httptest.Server) {
	t.Helper()
	bus := trace.NewBus(nil)
	h := newHub(cfg, bus, map[netip.Addr]string{
		netip.MustParseAddr("127.1.0.5"): "resolver.nyu.edu",
		netip.MustParseAddr("127.1.0.2"): "a.root-servers.net",
	})
	srv := httptest.NewServer(http.HandlerFunc(h.serveEvents))
	t.Cleanup(func() { h.close(); srv.Close() })
	return bus, h, srv
}

func open(t *testing.T, url string, hdr map[string]string) *bufio.Reader {
	t.Helper()
	req, _ := http.NewRequestWithContext(testkit.Context(t, 20*time.Second), "GET", url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET %s: %s %q", url, resp.Status, resp.Header.Get("Content-Type"))
	}
	return bufio.NewReader(resp.Body)
}

func publishN(bus *trace.Bus, from, n int, proto string) {
	for i := from; i < from+n; i++ {
		bus.Publish(trace.Event{From: "127.1.0.5:4000", To: "127.1.0.2:53", Proto: proto, Summary: fmt.Sprintf("query %d", i), Bytes: 40})
	}
}

// waitJoined waits until the hub has n streams (the browser is connected).
func waitJoined(t *testing.T, h *hub, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		h.mu.Lock()
		got := len(h.streams)
		h.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d streams joined, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStreamFraming: events arrive in order as "trace" events with
// increasing ids and their hosts resolved from the lab's addresses.
func TestStreamFraming(t *testing.T) {
	bus, h, srv := startHub(t, StreamConfig{})
	br := open(t, srv.URL, nil)
	waitJoined(t, h, 1)
	publishN(bus, 1, 3, "dns/udp")
	evs := readSSE(t, br, 3, nil)
	for i, e := range evs {
		if e.event != "trace" || e.id != strconv.Itoa(i+1) {
			t.Fatalf("event %d: event %q id %q, want trace %d", i, e.event, e.id, i+1)
		}
		var w wireEvent
		if err := json.Unmarshal([]byte(e.data), &w); err != nil {
			t.Fatal(err)
		}
		if w.FromHost != "resolver.nyu.edu" || w.ToHost != "a.root-servers.net" || w.Summary != fmt.Sprintf("query %d", i+1) || w.ID != uint64(i+1) {
			t.Errorf("event %d = %+v", i, w)
		}
	}
}

// TestStreamReconnect: a browser reconnecting with Last-Event-ID gets what
// it missed, from the next id on, and a filter keeps to its protocol.
func TestStreamReconnect(t *testing.T) {
	bus, h, srv := startHub(t, StreamConfig{})
	br := open(t, srv.URL, nil)
	waitJoined(t, h, 1)
	publishN(bus, 1, 5, "dns/udp")
	first := readSSE(t, br, 5, nil)
	if first[4].id != "5" {
		t.Fatalf("last id %q", first[4].id)
	}
	// Disconnected (the hub lingers subscribed): more events happen.
	publishN(bus, 6, 3, "dns/udp")
	publishN(bus, 9, 2, "http/1.1")
	again := readSSE(t, open(t, srv.URL, map[string]string{"Last-Event-ID": "3"}), 7, nil)
	for i, e := range again {
		if want := strconv.Itoa(4 + i); e.id != want {
			t.Fatalf("after Last-Event-ID 3, event %d has id %q, want %s", i, e.id, want)
		}
	}
	onlyHTTP := readSSE(t, open(t, srv.URL+"?proto=http&since=0", nil), 2, nil)
	for _, e := range onlyHTTP {
		if !strings.Contains(e.data, `"proto":"http/1.1"`) {
			t.Fatalf("proto=http gave %s", e.data)
		}
	}
	if onlyHTTP[0].id != "9" {
		t.Fatalf("proto=http from the start: first id %q, want 9", onlyHTTP[0].id)
	}
}

// TestStreamBackpressure: a browser that does not read does not slow the
// publishers; when it reads again it is told how many events it missed,
// and what it gets is the newest, in order.
func TestStreamBackpressure(t *testing.T) {
	bus, h, srv := startHub(t, StreamConfig{Backlog: 1000, MaxRate: 1000})
	// A raw connection whose reads stop after the headers: its socket
	// buffers fill and the stream's writes block.
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	waitJoined(t, h, 1)

	const n = 200000
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		publishN(bus, 1, n, "dns/udp")
		done <- time.Since(start)
	}()
	var took time.Duration
	select {
	case took = <-done:
	case <-ctx.Done():
		t.Fatal("publishing blocked behind a browser that does not read")
	}
	t.Logf("%d events published in %v (%.0f ns each) with a stalled browser connected", n, took, float64(took.Nanoseconds())/n)

	br := bufio.NewReader(c)
	for { // skip the response headers
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
	}
	// Chunked body: read lines and look for the dropped report and the
	// newest event.
	var sawDropped bool
	var lastID uint64
	deadline := time.Now().Add(10 * time.Second)
	c.SetReadDeadline(deadline)
	for lastID < n {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading (last id %d, dropped seen %v): %v", lastID, sawDropped, err)
		}
		switch {
		case strings.HasPrefix(line, "event: dropped"):
			sawDropped = true
		case strings.HasPrefix(line, "id: "):
			id, _ := strconv.ParseUint(strings.TrimSpace(line[4:]), 10, 64)
			if id <= lastID {
				t.Fatalf("id %d after %d", id, lastID)
			}
			lastID = id
		}
	}
	if !sawDropped {
		t.Fatal("no dropped event after a stalled browser missed events")
	}
}

// BenchmarkPublish is what a published event costs the publisher with no
// browser watching (the dashboard is not subscribed) and with one.
func BenchmarkPublish(b *testing.B) {
	e := trace.Event{From: "127.1.0.5:4000", To: "127.1.0.2:53", Proto: "dns/udp", Summary: "A? www.umass.edu.", Bytes: 40}
	b.Run("no-browser", func(b *testing.B) {
		bus := trace.NewBus(nil)
		h := newHub(StreamConfig{}, bus, nil)
		defer h.close()
		b.ReportAllocs()
		for b.Loop() {
			bus.Publish(e)
		}
	})
	b.Run("one-browser", func(b *testing.B) {
		bus := trace.NewBus(nil)
		h := newHub(StreamConfig{}, bus, nil)
		defer h.close()
		s, _ := h.join()
		defer h.leave(s)
		b.ReportAllocs()
		for b.Loop() {
			bus.Publish(e)
		}
	})
}
