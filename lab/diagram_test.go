package lab

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/internal/trace"
)

// diagramTrace is the web cache's miss then hit as the lab traces it:
// each message seen by both ends (the sender's observation is drawn), the
// cache's decisions, connections opened and closed.
func diagramTrace() ([]trace.Event, *Namer) {
	p := &Plan{Hosts: []PlannedHost{
		{Name: "cache.nyu.edu", Addr: netip.MustParseAddr("127.1.0.13")},
		{Name: "gaia.cs.umass.edu", Addr: netip.MustParseAddr("127.1.0.7")},
	}}
	t0 := time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	const (
		client = "127.1.255.254:40000"
		cache  = "127.1.0.13:3128"
		cacheO = "127.1.0.13:50000"
		gaia   = "127.1.0.7:80"
	)
	evs := []trace.Event{
		{Time: ms(0), Type: trace.ConnOpen, From: client, To: cache, Proto: "tcp", Summary: "TCP connection opened", Host: "client"},
		{Time: ms(1), Type: trace.ConnOpen, From: client, To: cache, Proto: "tcp", Summary: "TCP connection opened", Host: "cache.nyu.edu"},
		{Time: ms(2), Type: trace.Msg, From: client, To: cache, Proto: "http/1.1", Summary: "GET http://gaia.cs.umass.edu/", Host: "cache.nyu.edu"},
		{Time: ms(3), Type: trace.CacheMiss, From: client, To: cache, Proto: "http/1.1", Summary: "http://gaia.cs.umass.edu/", Host: "cache.nyu.edu"},
		{Time: ms(4), Type: trace.Msg, From: cacheO, To: gaia, Proto: "http/1.1", Summary: "GET http://gaia.cs.umass.edu/", Host: "cache.nyu.edu"},
		{Time: ms(5), Type: trace.Msg, From: cacheO, To: gaia, Proto: "http/1.1", Summary: "GET / HTTP/1.1 Host: gaia.cs.umass.edu", Host: "gaia.cs.umass.edu"},
		{Time: ms(9), Type: trace.Msg, From: gaia, To: cacheO, Proto: "http/1.1", Summary: "HTTP/1.1 200 OK", Bytes: 892, Host: "gaia.cs.umass.edu"},
		{Time: ms(10), Type: trace.Msg, From: cache, To: client, Proto: "http/1.1", Summary: "HTTP/1.1 200 OK Cache-Status: cache.nyu.edu; fwd=uri-miss; stored", Bytes: 892, Host: "cache.nyu.edu"},
		{Time: ms(20), Type: trace.Msg, From: client, To: cache, Proto: "http/1.1", Summary: "GET http://gaia.cs.umass.edu/", Host: "cache.nyu.edu"},
		{Time: ms(21), Type: trace.CacheHit, From: client, To: cache, Proto: "http/1.1", Summary: "http://gaia.cs.umass.edu/", Host: "cache.nyu.edu"},
		{Time: ms(22), Type: trace.Msg, From: cache, To: client, Proto: "http/1.1", Summary: "HTTP/1.1 200 OK Cache-Status: cache.nyu.edu; hit", Bytes: 892, Host: "cache.nyu.edu"},
		{Time: ms(23), Type: trace.ConnClose, From: client, To: cache, Proto: "tcp", Summary: "TCP connection closed", Host: "client"},
	}
	return evs, NewNamer(p, netip.MustParseAddr("127.1.255.254"), "client")
}

// TestNarrate: each message once (the sender's view when the sender
// traces), in time order, hosts named, connections numbered.
func TestNarrate(t *testing.T) {
	evs, n := diagramTrace()
	// Out of order on input: Narrate sorts by time.
	evs[0], evs[5] = evs[5], evs[0]
	steps := Narrate(evs, n, nil)
	var got []string
	for _, s := range steps {
		got = append(got, s.From+">"+s.To+" "+s.Event.Type)
	}
	want := []string{
		"client>cache.nyu.edu conn.open", // the client's own view; the cache's dropped
		"client>cache.nyu.edu msg",       // the client does not trace messages: the cache's view
		"client>cache.nyu.edu cache.miss",
		"cache.nyu.edu>gaia.cs.umass.edu msg", // the cache's view; gaia's dropped
		"gaia.cs.umass.edu>cache.nyu.edu msg",
		"cache.nyu.edu>client msg",
		"client>cache.nyu.edu msg",
		"client>cache.nyu.edu cache.hit",
		"cache.nyu.edu>client msg",
		"client>cache.nyu.edu conn.close",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("steps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if steps[0].Conn != 1 || steps[3].Conn != 2 || steps[9].Conn != 1 || steps[9].N != 10 {
		t.Errorf("connections numbered %d %d %d, step %d", steps[0].Conn, steps[3].Conn, steps[9].Conn, steps[9].N)
	}
	keep := Narrate(evs, n, func(e trace.Event) bool { return e.Type == trace.Msg })
	if len(keep) != 6 {
		t.Errorf("keep: %d steps, want the 6 messages", len(keep))
	}
}

// TestDiagramGolden: the SVG and the Mermaid text of the web cache's trace
// (testdata/diagram.svg, testdata/diagram.mmd; APPLAYER_UPDATE_GOLDEN=1
// rewrites them).
func TestDiagramGolden(t *testing.T) {
	evs, n := diagramTrace()
	steps := Narrate(evs, n, nil)
	var svg, mmd bytes.Buffer
	if err := WriteSVG(&svg, "web cache: a miss, then a hit", steps, false); err != nil {
		t.Fatal(err)
	}
	if err := WriteMermaid(&mmd, "web cache: a miss, then a hit", steps); err != nil {
		t.Fatal(err)
	}
	testkit.Golden(t, filepath.Join("testdata", "diagram.svg"), svg.String())
	testkit.Golden(t, filepath.Join("testdata", "diagram.mmd"), mmd.String())
	for _, want := range []string{"<svg ", ">client</text>", ">cache.nyu.edu</text>", ">gaia.cs.umass.edu</text>", "stroke-dasharray=\"5,3\"", "3. cache.miss"} {
		if !strings.Contains(svg.String(), want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
}
