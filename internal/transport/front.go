package transport

import (
	"context"
	"net"
)

// Front is a StreamServer that hands every connection, whole, to a server
// from a library that serves a net.Listener (net/http, go-smtp, go-imap):
// the transport's connection caps, per-client caps, accept back-off, access
// check and observation apply to that server too, and each connection keeps
// its slot until the library closes it.
//
//	f := transport.NewFront(cfg, ln.Addr())
//	go httpServer.Serve(f.Listener())
//	f.Start(ln)
//	...
//	f.Shutdown(ctx) // then httpServer.Shutdown(ctx)
type Front struct {
	*StreamServer
	ho *Handoff
}

// NewFront returns a Front whose Listener reports addr (the real
// listener's address, given to Start or Serve).
func NewFront(cfg StreamConfig, addr net.Addr) *Front {
	f := &Front{ho: NewHandoff(addr)}
	f.StreamServer = NewStreamServer(cfg, HandlerFunc(f.serveConn))
	return f
}

// Listener is what the library serves: it accepts the connections the
// Front hands over, and fails with net.ErrClosed once the Front stops.
func (f *Front) Listener() net.Listener { return f.ho }

func (f *Front) serveConn(_ context.Context, c *Conn) {
	nc, release := c.Detach()
	rc := ReplayConn(nc, Replay{Closed: release})
	if !f.ho.Deliver(rc) {
		rc.Close()
	}
}

// Shutdown stops accepting (a connection not yet taken by the library is
// closed) and waits for the accept loops; connections already handed over
// belong to the library, whose own Shutdown ends them.
func (f *Front) Shutdown(ctx context.Context) error {
	f.ho.Close()
	return f.StreamServer.Shutdown(ctx)
}

// Close stops accepting at once, like Shutdown without waiting.
func (f *Front) Close() error {
	f.ho.Close()
	return f.StreamServer.Close()
}
