// Package mailnet binds the listener pair every mail access protocol has
// (plain with STARTTLS/STLS, and implicit TLS: 143/993, 110/995), each
// served by its own internal/transport StreamServer.
package mailnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/applayer/applayer/internal/transport"
)

// Listeners is a bound pair (either may be absent).
type Listeners struct {
	mu        sync.Mutex
	listeners []net.Listener
	streams   []*transport.StreamServer
}

// Listen binds plain and implicit (empty: not served) and serves each
// with a StreamServer made from cfg(implicit) and serve(implicit). On an
// error everything bound is closed.
func Listen(ctx context.Context, plain, implicit string, cfg func(implicit bool) transport.StreamConfig, serve func(implicit bool) transport.Handler) (*Listeners, error) {
	l := &Listeners{}
	for _, a := range []struct {
		addr     string
		implicit bool
	}{{plain, false}, {implicit, true}} {
		if a.addr == "" {
			continue
		}
		ln, err := transport.ListenConfig{}.Listen(ctx, "tcp", a.addr)
		if err != nil {
			l.Close()
			return nil, err
		}
		ts := transport.NewStreamServer(cfg(a.implicit), serve(a.implicit))
		if err := ts.Start(ln); err != nil {
			ln.Close()
			l.Close()
			return nil, err
		}
		l.listeners = append(l.listeners, ln)
		l.streams = append(l.streams, ts)
	}
	return l, nil
}

// Addrs returns the bound addresses: the plain one first (when served).
func (l *Listeners) Addrs() []net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []net.Addr
	for _, ln := range l.listeners {
		out = append(out, ln.Addr())
	}
	return out
}

// Shutdown stops accepting and waits for the connections still owned by
// the StreamServers (idle ones are closed) until ctx ends.
func (l *Listeners) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	streams := l.streams
	l.streams = nil
	l.mu.Unlock()
	var err error
	for _, ts := range streams {
		if e := ts.Shutdown(ctx); e != nil && !errors.Is(e, transport.ErrServerClosed) {
			err = errors.Join(err, e)
		}
	}
	if err != nil {
		return fmt.Errorf("mailnet: shutdown: %w", err)
	}
	return nil
}

// Close stops at once.
func (l *Listeners) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ts := range l.streams {
		ts.Close()
	}
	for _, ln := range l.listeners {
		ln.Close()
	}
	l.streams = nil
}
