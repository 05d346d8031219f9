package shape

import (
	"context"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy is a TCP forwarder whose upstream-to-client direction follows a
// schedule (one Shaper shared by every connection, started again by the
// first connection): put it between any player (a browser, ours) and an
// origin and every player sees the same bandwidth over time.
type Proxy struct {
	ln       net.Listener
	upstream string
	sh       *Shaper
	started  sync.Once
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]bool
	closed   bool
}

// NewProxy listens on addr and forwards to upstream, shaped by s.
func NewProxy(addr, upstream string, s *Schedule) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, upstream: upstream, sh: NewShaper(s, nil), conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the proxy's listening address.
func (p *Proxy) Addr() net.Addr { return p.ln.Addr() }

func (p *Proxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		if p.closed {
			return false
		}
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
	return true
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.started.Do(p.sh.Restart)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(c)
		}()
	}
}

func (p *Proxy) handle(c net.Conn) {
	defer c.Close()
	d := net.Dialer{Timeout: 5 * time.Second}
	up, err := d.DialContext(context.Background(), "tcp", p.upstream)
	if err != nil {
		return
	}
	defer up.Close()
	if !p.track(c, true) || !p.track(up, true) {
		return
	}
	defer p.track(c, false)
	defer p.track(up, false)
	done := make(chan struct{})
	go func() {
		io.Copy(up, c) // requests: not shaped
		if tc, ok := up.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		close(done)
	}()
	io.Copy(c, p.sh.Conn(up)) // responses: shaped
	c.Close()
	up.Close()
	<-done
}

// Close stops the proxy and its connections.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}
