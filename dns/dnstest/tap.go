package dnstest

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Tap stands at a server's address in front of a real authority server
// (on another port of the same address) and relays every query to it, so
// that a test can count the queries a server gets, stop it (a dead
// server), or rewrite or drop its answers (a lying, truncating or
// spoofing one) with Hook, while the zones themselves are served by the
// authority as in production.
type Tap struct {
	// Addr is where clients reach the server.
	Addr netip.AddrPort
	// Queries counts the queries received.
	Queries atomic.Int64

	backend string
	mu      sync.Mutex
	hook    func(req, resp *dns.Msg, tcp bool) *dns.Msg
	srv     []*dns.Server
	wg      sync.WaitGroup
}

// SetHook sets a function that may rewrite the authority's answer or
// replace it (nil: no answer at all).
func (p *Tap) SetHook(h func(req, resp *dns.Msg, tcp bool) *dns.Msg) {
	p.mu.Lock()
	p.hook = h
	p.mu.Unlock()
}

// Stop closes the tap's sockets: the server is dead from then on.
func (p *Tap) Stop() {
	p.mu.Lock()
	srv := p.srv
	p.srv = nil
	p.mu.Unlock()
	for _, s := range srv {
		s.Shutdown()
	}
	p.wg.Wait()
}

// StartTap relays addr (UDP and TCP) to backend (host:port of an
// authority server); it stops when the test ends.
func StartTap(t testing.TB, addr netip.AddrPort, backend string) (*Tap, error) {
	p := &Tap{Addr: addr, backend: backend}
	pc, err := net.ListenPacket("udp", addr.String())
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		pc.Close()
		return nil, err
	}
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: p}, {Listener: ln, Handler: p}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		p.wg.Add(1)
		go func() { defer p.wg.Done(); s.ActivateAndServe() }()
		<-started
		p.srv = append(p.srv, s)
	}
	t.Cleanup(p.Stop)
	return p, nil
}

// ServeDNS relays one query.
func (p *Tap) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	p.Queries.Add(1)
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second, UDPSize: 65535}
	if tcp {
		c.Net = "tcp"
	}
	resp, _, err := c.Exchange(req, p.backend)
	if err != nil {
		return
	}
	p.mu.Lock()
	hook := p.hook
	p.mu.Unlock()
	if hook != nil {
		if resp = hook(req, resp, tcp); resp == nil {
			return
		}
	}
	w.WriteMsg(resp)
}
