package app

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/web/client"
)

// slowDialer makes every TCP connection cost delay (one simulated RTT for
// the handshake), as a WAN path would, and counts the connections.
type slowDialer struct {
	delay time.Duration
	n     atomic.Int64
}

func (d *slowDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.n.Add(1)
	t := time.NewTimer(d.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

// TestLabPageModes builds the default lab's gaia.cs.umass.edu web server
// (its http-server service exactly as lab/default.yaml configures it) with
// the real wiring and loads its page of ten images with the client's page
// loader, non-persistent serial and persistent. Every connection costs a
// simulated 20 ms RTT in the client's dialer, so the chapter's comparison
// shows: non-persistent HTTP opens a connection per object and pays the
// setup every time (counted in the dialer), persistent HTTP opens one and
// saves (objects - 1) setups.
func TestLabPageModes(t *testing.T) {
	topo, err := lab.DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	var gaia lab.Host
	for _, h := range topo.Hosts {
		if h.Name == "gaia.cs.umass.edu" {
			gaia = lab.Host{Name: h.Name}
			for _, s := range h.Services {
				if s.Kind == "http-server" {
					gaia.Services = append(gaia.Services, s)
				}
			}
		}
	}
	if len(gaia.Services) != 1 {
		t.Fatalf("default lab: gaia.cs.umass.edu has %d http-server services", len(gaia.Services))
	}
	topo.Hosts = []lab.Host{gaia}
	ctx := testkit.Context(t, 60*time.Second)
	plan, _, _ := startRandomLab(t, ctx, topo, 45000, "off")
	host, _ := plan.Lookup("gaia.cs.umass.edu")
	base := fmt.Sprintf("http://%s:%d/", host.Addr, plan.Port(80))

	const rtt = 20 * time.Millisecond
	load := func(mode string) (*client.PageResult, int) {
		t.Helper()
		d := &slowDialer{delay: rtt}
		pr, err := client.LoadPage(ctx, base, client.PageOptions{Mode: mode, Options: client.Options{Dialer: d}})
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		for _, o := range pr.Objects {
			if o.Err != nil || o.Status != 200 || o.Bytes == 0 {
				t.Errorf("%s: %s: status %d, %d bytes, err %v", mode, o.URL, o.Status, o.Bytes, o.Err)
			}
		}
		t.Logf("%s: %d objects, %d connections, total %s", mode, len(pr.Objects), pr.Conns, pr.Total)
		return pr, int(d.n.Load())
	}
	np, npDials := load(client.ModeNonPersistent)
	p, pDials := load(client.ModePersistent)
	n := len(np.Objects)
	if n < 11 || len(p.Objects) != n {
		t.Fatalf("objects: non-persistent %d, persistent %d; want the page and its 10+ objects in both", n, len(p.Objects))
	}
	if np.Conns != n || npDials != n {
		t.Errorf("non-persistent: %d connections (%d dials), want one per object (%d)", np.Conns, npDials, n)
	}
	if p.Conns != 1 || pDials != 1 {
		t.Errorf("persistent: %d connections (%d dials), want 1", p.Conns, pDials)
	}
	// Non-persistent serial pays the setup n times, one after another; the
	// connection counts above show persistent pays it once. Only a lower
	// bound on time is checked (n delays in series cannot take less): a
	// comparison of two wall-clock runs fails on a loaded machine.
	if np.Total < time.Duration(n)*rtt {
		t.Errorf("non-persistent total %s < %d connection setups of %s", np.Total, n, rtt)
	}
}
