package client

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/applayer/applayer/internal/trace"
	labpkg "github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/lab/link"
)

// HOLDelay is the one-way delay of the http2-vs-http1 scenario's client
// link (a 50 ms round trip, no rate limit).
const HOLDelay = 25 * time.Millisecond

// HOLStall is how long the scenario's lost segment holds its connection up:
// TCP's retransmission timeout on the scenario's link (the least RTO plus
// the round trip, as lab/link models it).
const HOLStall = link.MinRTO + 2*HOLDelay

// holRuns are the scenario's two page loads: HTTP/1.1 as a browser does it
// (up to 6 persistent connections) and HTTP/2 (every request multiplexed on
// one TCP connection).
var holRuns = []struct{ mode, label string }{
	{ModePersistentParallel, "HTTP/1.1 over up to 6 TCP connections"},
	{ModeH2, "HTTP/2 over one TCP connection"},
}

// holScenario is http2-vs-http1: head-of-line blocking on a lossy link.
func holScenario() labpkg.Scenario {
	return labpkg.Scenario{
		Name: "http2-vs-http1",
		Summary: "gaia's page over HTTP/1.1 (6 connections), then over HTTP/2 (one TCP connection), across a client link (25 ms each way) that loses one TCP segment, the first gaia sends after the base file: " +
			"with HTTP/2 every stream waits for its retransmission (head-of-line blocking); with HTTP/1.1 only that connection waits while the other five fetch the rest",
		Figure: "HTTP/2: head-of-line blocking, one TCP connection against a browser's parallel ones",
		Run:    runHOL,
		Hosts:  []string{"gaia.cs.umass.edu"},
		Keep:   KeepHOL,
	}
}

// KeepHOL keeps what head-of-line blocking is about: the client's TCP
// connections opening, the segment the link lost (on its connection), each
// object complete at the client (a "state" event: when its last byte
// arrived, not when gaia sent it) and the scenario's notes of which run is
// which.
func KeepHOL(e trace.Event) bool {
	switch {
	case e.Type == trace.ConnOpen:
		return e.Proto == "tcp"
	case e.Type == trace.LinkDrop:
		return true
	case e.Type == trace.State:
		return e.Proto == "http" || strings.HasPrefix(e.Proto, "http/")
	}
	return false
}

// holLink returns the client link the scenario loads the page across, and
// a dialer that shapes the client's TCP connections to gaia (at addr) with
// it, publishing lost segments on bus. Nothing is lost until
// link.Down.LoseNext.
func holLink(next interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}, addr netip.Addr, bus *trace.Bus) (*link.Link, *link.Dialer) {
	l := link.New("client link", link.Config{Delay: HOLDelay}, 1)
	return l, &link.Dialer{Next: next, Bus: bus, Route: func(network string, dst net.Addr) (out, in link.Path) {
		if ta, ok := dst.(*net.TCPAddr); ok && ta.AddrPort().Addr().Unmap() == addr {
			return link.Path{l.Up}, link.Path{l.Down}
		}
		return nil, nil
	}}
}

func runHOL(ctx context.Context, env labpkg.ScenarioEnv) error {
	const name = "gaia.cs.umass.edu"
	gaia, ok := env.Plan.Lookup(name)
	if !ok {
		return fmt.Errorf("http2-vs-http1: the topology has no host %s", name)
	}
	web := netip.AddrPortFrom(gaia.Addr, uint16(env.Plan.Port(80))).String()
	fmt.Fprintf(env.Out, "The client's access link: %s each way (a %s round trip), no rate limit. After the page's base file it loses one TCP segment, the first gaia sends; TCP resends it after its retransmission timeout (%s + RTT = %s), and until then the connection's later bytes wait in the client's receive buffer.\n\n",
		HOLDelay, 2*HOLDelay, link.MinRTO, HOLStall)
	for _, run := range holRuns {
		l, d := holLink(env.Dialer, gaia.Addr, env.Trace)
		o := scenarioOptions(env, Options{})
		o.Dialer = d
		o.Hosts = map[string]string{name: gaia.Addr.String()} // no DNS: the connections are the story
		env.Trace.Publish(trace.Event{Type: trace.State, From: env.ClientName, To: web, Proto: "http",
			Summary: "loads " + gaiaPage + " over " + run.label})
		var armed time.Duration
		pr, err := LoadPage(ctx, gaiaPage, PageOptions{Mode: run.mode, Options: o, Done: func(ob Object) {
			if ob.URL == gaiaPage {
				// The base file is in: the next segment gaia sends, an
				// object's response, is lost.
				l.Down.LoseNext(1)
				armed = ob.End
			}
			if ob.Local == "" {
				return // failed before a connection: LoadPage reports it
			}
			path := ob.URL
			if u, err := url.Parse(ob.URL); err == nil {
				path = u.RequestURI()
			}
			what := fmt.Sprintf("has GET %s: %d, complete", path, ob.Status)
			if ob.Err != nil {
				what = fmt.Sprintf("GET %s failed: %v", path, ob.Err)
			}
			env.Trace.Publish(trace.Event{Type: trace.State, From: ob.Local, To: ob.Remote, Proto: trace.HTTPProto(ob.Proto), Summary: what, Bytes: ob.Bytes})
		}})
		if err != nil {
			return fmt.Errorf("http2-vs-http1: %s: %w", run.label, err)
		}
		during, after := 0, 0
		for _, ob := range pr.Objects[1:] {
			if ob.Err != nil || ob.Status != 200 {
				return fmt.Errorf("http2-vs-http1: %s: %s: status %d, %v", run.label, ob.URL, ob.Status, ob.Err)
			}
			// The lost segment left gaia one round trip after the base
			// file and arrives a retransmission timeout late.
			if ob.End < armed+2*HOLDelay+HOLStall {
				during++
			} else {
				after++
			}
		}
		fmt.Fprintf(env.Out, "%s: %d connection(s), %d segment lost; of the %d objects, %d complete while the lost segment is awaited, %d after its retransmission; page in %s\n",
			run.label, pr.Conns, l.Down.Retransmitted(), len(pr.Objects)-1, during, after, pr.Total.Round(time.Millisecond))
	}
	return nil
}
