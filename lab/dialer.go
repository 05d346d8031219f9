package lab

import (
	"context"
	"net"
	"net/netip"
	"strconv"

	"github.com/applayer/applayer/internal/service"
)

// hostDialer makes a lab host's outbound connections come from the host's
// own address, so a resolver's queries to the root are seen (and traced) as
// coming from resolver.nyu.edu rather than from 127.0.0.1. From a loopback
// host address, destinations that are not loopback addresses are dialed as
// the base dialer would.
type hostDialer struct {
	addr netip.Addr
	base net.Dialer
}

// newHostDialer returns a dialer binding addr as the source address when
// next is a plain *net.Dialer; any other dialer is returned unchanged, so
// tests and callers that inject their own routing keep it.
func newHostDialer(addr netip.Addr, next service.Dialer) service.Dialer {
	nd, ok := next.(*net.Dialer)
	if !ok || nd.LocalAddr != nil {
		return next
	}
	return &hostDialer{addr: addr, base: *nd}
}

// DialContext implements service.Dialer.
func (d *hostDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	nd := d.base
	if host, _, err := net.SplitHostPort(address); err == nil {
		// A lab host's address on a machine (remote_block) is the source of
		// everything the host sends; a loopback one only towards loopback.
		if ip, err := netip.ParseAddr(host); err == nil && (ip.IsLoopback() || !d.addr.IsLoopback()) && ip.Is4() == d.addr.Is4() {
			switch network {
			case "tcp", "tcp4", "tcp6":
				nd.LocalAddr = &net.TCPAddr{IP: d.addr.AsSlice()}
			case "udp", "udp4", "udp6":
				nd.LocalAddr = &net.UDPAddr{IP: d.addr.AsSlice()}
			}
		}
	}
	return nd.DialContext(ctx, network, address)
}

// Dialer returns a dialer that resolves the lab's host names to their
// planned addresses and moves standard ports by the lab's offset, so a
// service (the campus cache) can fetch http://gaia.cs.umass.edu/ inside the
// mini-Internet; other addresses go to next unchanged.
func (p *Plan) Dialer(next service.Dialer) service.Dialer {
	return planDialer{plan: p, next: next}
}

type planDialer struct {
	plan *Plan
	next service.Dialer
}

func (d planDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err == nil {
		if h, ok := d.plan.Lookup(host); ok {
			p, _ := strconv.Atoi(port)
			address = net.JoinHostPort(h.Addr.String(), strconv.Itoa(d.plan.Port(p)))
		}
	}
	return d.next.DialContext(ctx, network, address)
}
