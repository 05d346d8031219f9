package transport

import (
	"context"
	"net"
)

// ListenerWrap changes a stream listener as it is bound: the lab shapes the
// connections of a host with a link this way (lab/link).
type ListenerWrap func(net.Listener) net.Listener

type wrapKey struct{}

// WithListenerWrap returns a context under which ListenConfig.Listen (and
// WrapListener) hand each new listener to w. A service started with such a
// context gets its listeners wrapped without knowing it: the lab starts each
// service of a host that has a link this way. Without it nothing is wrapped
// and nothing costs more.
func WithListenerWrap(ctx context.Context, w ListenerWrap) context.Context {
	return context.WithValue(ctx, wrapKey{}, w)
}

// WrapListener returns ln wrapped by the ListenerWrap of ctx, or ln itself
// when ctx has none. Servers that bind with net.ListenConfig (net/http's)
// call it on each listener; ListenConfig.Listen does it already.
func WrapListener(ctx context.Context, ln net.Listener) net.Listener {
	if w, ok := ctx.Value(wrapKey{}).(ListenerWrap); ok && w != nil {
		return w(ln)
	}
	return ln
}
