package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
)

// ErrNoReusePort is returned when SO_REUSEPORT is asked for on a system
// that has no such option (Windows, Plan 9, ...).
var ErrNoReusePort = errors.New("transport: SO_REUSEPORT is not available on this system")

// ReusePortAvailable reports whether this system supports SO_REUSEPORT,
// so that several sockets can be bound to one address and the kernel
// spreads datagrams or connections among them.
func ReusePortAvailable() bool { return reusePortAvailable }

// ListenConfig binds listeners and sockets. The zero value binds plain
// sockets, as net.ListenConfig does.
type ListenConfig struct {
	// ReusePort sets SO_REUSEPORT before binding. On systems without it
	// Listen and ListenUDP fail with ErrNoReusePort.
	ReusePort bool
}

func (lc ListenConfig) netConfig() (net.ListenConfig, error) {
	if !lc.ReusePort {
		return net.ListenConfig{}, nil
	}
	if !reusePortAvailable {
		return net.ListenConfig{}, ErrNoReusePort
	}
	return net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = setReusePort(fd) }); err != nil {
			return err
		}
		return serr
	}}, nil
}

// Listen binds a stream listener ("tcp", "tcp4", "tcp6", "unix"), wrapped
// by the context's ListenerWrap if it has one (see WithListenerWrap).
func (lc ListenConfig) Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	nlc, err := lc.netConfig()
	if err != nil {
		return nil, err
	}
	ln, err := nlc.Listen(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen %s %s: %w", network, addr, err)
	}
	return WrapListener(ctx, ln), nil
}

// ListenUDP binds a UDP socket ("udp", "udp4", "udp6").
func (lc ListenConfig) ListenUDP(ctx context.Context, network, addr string) (*net.UDPConn, error) {
	nlc, err := lc.netConfig()
	if err != nil {
		return nil, err
	}
	pc, err := nlc.ListenPacket(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen %s %s: %w", network, addr, err)
	}
	c, ok := pc.(*net.UDPConn)
	if !ok {
		pc.Close()
		return nil, fmt.Errorf("transport: listen %s %s: not a UDP socket", network, addr)
	}
	return c, nil
}

// ListenUDPGroup binds n UDP sockets to one address with SO_REUSEPORT, so
// that one reader per socket can serve it (the kernel hashes each client to
// one socket). The first socket fixes the port when addr asks for port 0.
// With n <= 1, or where SO_REUSEPORT is not available, it binds a single
// plain socket: a port already taken by another process then makes it fail
// instead of silently sharing the port.
func ListenUDPGroup(ctx context.Context, network, addr string, n int) ([]*net.UDPConn, error) {
	if n <= 1 || !reusePortAvailable {
		c, err := ListenConfig{}.ListenUDP(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return []*net.UDPConn{c}, nil
	}
	lc := ListenConfig{ReusePort: true}
	out := make([]*net.UDPConn, 0, n)
	for i := 0; i < n; i++ {
		c, err := lc.ListenUDP(ctx, network, addr)
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			return nil, err
		}
		out = append(out, c)
		addr = c.LocalAddr().String()
	}
	return out, nil
}
