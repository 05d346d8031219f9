package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// site is a reverse-proxied site and its replicas.
type site struct {
	cfg      Site
	backends []*backend
	next     atomic.Uint64
}

// backend is one origin replica.
type backend struct {
	addr     string
	healthy  atomic.Bool
	inflight atomic.Int64
	served   atomic.Int64
}

func newSite(c Site) *site {
	if c.HealthPath == "" {
		c.HealthPath = "/"
	}
	st := &site{cfg: c}
	for _, o := range c.Origins {
		b := &backend{addr: o}
		b.healthy.Store(true)
		st.backends = append(st.backends, b)
	}
	return st
}

// pick chooses a healthy replica: the next in turn (round-robin) or the
// one with fewest requests in flight (least-loaded, ties to the earliest).
// When none is healthy it tries them all in turn rather than failing.
func (st *site) pick() *backend {
	var cands []*backend
	for _, b := range st.backends {
		if b.healthy.Load() {
			cands = append(cands, b)
		}
	}
	if len(cands) == 0 {
		cands = st.backends
	}
	if st.cfg.Balance == "least-loaded" {
		best := cands[0]
		for _, b := range cands[1:] {
			if b.inflight.Load() < best.inflight.Load() {
				best = b
			}
		}
		return best
	}
	return cands[int((st.next.Add(1)-1)%uint64(len(cands)))]
}

// siteFor returns the site for a Host value, or the default site "*".
func (s *Server) siteFor(host string) *site {
	if len(s.sites) == 0 {
		return nil
	}
	h := strings.ToLower(host)
	if hh, _, err := net.SplitHostPort(h); err == nil {
		h = hh
	}
	if st := s.sites[h]; st != nil {
		return st
	}
	return s.sites["*"]
}

// router is the cache's upstream: requests for a configured site go to
// one of its replicas, others (forward proxying) to the URL's host.
type router struct{ s *Server }

func (rt *router) RoundTrip(r *http.Request) (*http.Response, error) {
	st := rt.s.siteFor(r.URL.Host)
	if st == nil {
		if !*rt.s.cfg.Forward {
			return nil, fmt.Errorf("proxy: no site for %s", r.URL.Host)
		}
		return rt.s.fwd.RoundTrip(r) // destinations checked
	}
	b := st.pick()
	r2 := r.Clone(r.Context())
	r2.URL.Host = b.addr
	if r2.Host == "" {
		r2.Host = r.URL.Host
	}
	b.inflight.Add(1)
	res, err := rt.s.tr.RoundTrip(r2)
	if err != nil {
		b.inflight.Add(-1)
		b.healthy.Store(false) // passive check; the health loop revives it
		return nil, err
	}
	b.served.Add(1)
	res.Body = &doneBody{ReadCloser: res.Body, done: func() { b.inflight.Add(-1) }}
	return res, nil
}

// doneBody calls done once when the body is closed.
type doneBody struct {
	io.ReadCloser
	done func()
	once atomic.Bool
}

func (d *doneBody) Close() error {
	if d.once.CompareAndSwap(false, true) {
		d.done()
	}
	return d.ReadCloser.Close()
}

// healthLoop checks every replica of st each HealthInterval: a replica is
// healthy when GET health_path answers below 500.
func (s *Server) healthLoop(st *site) {
	t := time.NewTicker(s.cfg.HealthInterval.D())
	defer t.Stop()
	for {
		for _, b := range st.backends {
			b.healthy.Store(s.check(st, b))
		}
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

func (s *Server) check(st *site, b *backend) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.addr+st.cfg.HealthPath, nil)
	if err != nil {
		return false
	}
	if st.cfg.Host != "*" {
		req.Host = st.cfg.Host
	}
	res, err := s.tr.RoundTrip(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
	res.Body.Close()
	return res.StatusCode < 500
}
