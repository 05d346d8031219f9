package trace

import (
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	now := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	ok := Event{Time: now, Type: Msg, From: "127.1.0.200:5353", To: "127.1.0.14:53", Proto: "dns/udp", Summary: "query rd A gaia.cs.umass.edu.", Bytes: 46}
	for _, c := range []struct {
		name   string
		change func(e *Event)
		want   string // "" valid, else part of the error
	}{
		{"valid message", func(e *Event) {}, ""},
		{"valid handshake", func(e *Event) { e.Type, e.Proto, e.Bytes = Handshake, "quic", 0 }, ""},
		{"valid link drop", func(e *Event) { e.Type, e.Proto = LinkDrop, "link" }, ""},
		{"state without to", func(e *Event) { e.Type, e.Proto, e.To = State, "bittorrent/choke", "" }, ""},
		{"no time", func(e *Event) { e.Time = time.Time{} }, "time is missing"},
		{"no type", func(e *Event) { e.Type = "" }, `type ""`},
		{"unknown type", func(e *Event) { e.Type = "packet" }, `type "packet"`},
		{"upper-case proto", func(e *Event) { e.Proto = "HTTP/1.1" }, "lower case"},
		{"unknown family", func(e *Event) { e.Proto = "gopher" }, `family "gopher"`},
		{"from not an address", func(e *Event) { e.From = "cache" }, "from:"},
		{"message without to", func(e *Event) { e.To = "" }, "to: missing"},
		{"empty summary", func(e *Event) { e.Summary = "" }, "summary is empty"},
		{"two-line summary", func(e *Event) { e.Summary = "a\nb" }, "spans lines"},
		{"long summary", func(e *Event) { e.Summary = strings.Repeat("x", MaxSummary+1) }, "longer than"},
		{"negative size", func(e *Event) { e.Bytes = -1 }, "negative"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := ok
			c.change(&e)
			err := Validate(e)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("Validate: %v, want nil", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("Validate: %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestPublishDefaultsToMsg(t *testing.T) {
	b := NewBus(nil)
	c := &Collector{}
	b.Subscribe(c)
	b.Publish(Event{From: "a:1", To: "b:2", Proto: "udp", Summary: "x"})
	b.Publish(Event{Type: ConnOpen, From: "a:1", To: "b:2", Proto: "tcp", Summary: "opened"})
	evs := c.Events()
	if len(evs) != 2 || evs[0].Type != Msg || evs[1].Type != ConnOpen {
		t.Fatalf("events %+v", evs)
	}
}

func TestHTTPProto(t *testing.T) {
	for in, want := range map[string]string{"HTTP/1.0": "http/1.0", "HTTP/1.1": "http/1.1", "HTTP/2.0": "http/2", "HTTP/3.0": "http/3", "HTTP/4": "http/4"} {
		if got := HTTPProto(in); got != want {
			t.Errorf("HTTPProto(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadJSONL(t *testing.T) {
	var sb strings.Builder
	j := NewJSONL(&sb)
	b := NewBus(nil)
	b.Subscribe(j)
	b.Publish(Event{From: "a:1", To: "b:2", Proto: "udp", Summary: "one"})
	b.Publish(Event{Type: CacheHit, From: "a:1", To: "b:2", Proto: "http/1.1", Summary: "two"})
	j.Close()
	evs, err := ReadJSONL(strings.NewReader(sb.String()))
	if err != nil || len(evs) != 2 || evs[1].Type != CacheHit || evs[0].Summary != "one" {
		t.Fatalf("ReadJSONL: %+v %v", evs, err)
	}
	if _, err := ReadJSONL(strings.NewReader(sb.String() + "{not json\n")); err == nil {
		t.Error("ReadJSONL accepted a broken line")
	}
}
