// Package experiment runs the chapter's comparison of client-server and
// P2P file distribution for real, on loopback: one server (or seed) with
// upload rate u_s, N clients (or peers) with upload rate u each, the same
// file of F bytes. The client-server run serves it over HTTP from one
// server whose every response shares one token bucket of u_s; the P2P run
// is a swarm of our BitTorrent peers (a tracker, a seed capped at u_s, N
// leechers capped at u that seed on once complete). It measures the time
// until every client has the whole file and sets it beside the lower
// bounds (d_min is unlimited here):
//
//	D_cs  >= max{N F/u_s, F/d_min}
//	D_p2p >= max{F/u_s, F/d_min, N F/(u_s + N u)}
package experiment

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/torrent/metainfo"
	"github.com/applayer/applayer/torrent/swarm"
	"github.com/applayer/applayer/torrent/tracker"
)

// Config says what to measure.
type Config struct {
	// FileSize is F, in bytes.
	FileSize int64
	// SeedUp is u_s, the server's and the seed's upload rate, bytes/s.
	SeedUp int
	// PeerUp is u, each peer's upload rate, bytes/s.
	PeerUp int
	// MaxN runs N = 1..MaxN.
	MaxN int
	// Dir is a work directory (the file and the peers' copies).
	Dir string
	// Block is a loopback prefix "127.x.y." whose addresses .1 to
	// .(MaxN+10) the run may use, one per host.
	Block string
	// Timeout bounds each run. Default 10 minutes.
	Timeout time.Duration
}

// Row is one N's measurements and bounds.
type Row struct {
	N                 int
	ClientServer, P2P time.Duration
	BoundCS, BoundP2P time.Duration
}

const (
	config1s = config.Duration(time.Second)
	config2s = config.Duration(2 * time.Second)
)

// Bounds returns the chapter's lower bounds for N clients.
func Bounds(c Config, n int) (cs, p2p time.Duration) {
	f, us, u := float64(c.FileSize), float64(c.SeedUp), float64(c.PeerUp)
	sec := func(x float64) time.Duration { return time.Duration(x * float64(time.Second)) }
	cs = sec(float64(n) * f / us)
	p2p = sec(max(f/us, float64(n)*f/(us+float64(n)*u)))
	return cs, p2p
}

// Run measures N = 1..MaxN, calling each with every row as it is done.
func Run(ctx context.Context, c Config, deps service.Deps, each func(Row)) ([]Row, error) {
	if c.FileSize <= 0 || c.SeedUp <= 0 || c.PeerUp <= 0 || c.MaxN <= 0 || c.Dir == "" || c.Block == "" {
		return nil, errors.New("experiment: size, rates, N, directory and address block are required")
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Minute
	}
	data := make([]byte, c.FileSize)
	rand.Read(data)
	seedDir := filepath.Join(c.Dir, "seed")
	if err := os.MkdirAll(seedDir, 0o755); err != nil {
		return nil, fmt.Errorf("experiment: %w", err)
	}
	if err := os.WriteFile(filepath.Join(seedDir, "file.bin"), data, 0o644); err != nil {
		return nil, fmt.Errorf("experiment: %w", err)
	}
	var rows []Row
	for n := 1; n <= c.MaxN; n++ {
		r := Row{N: n}
		r.BoundCS, r.BoundP2P = Bounds(c, n)
		var err error
		if r.ClientServer, err = clientServer(ctx, c, data, n); err != nil {
			return rows, err
		}
		if r.P2P, err = p2p(ctx, c, deps, n); err != nil {
			return rows, err
		}
		rows = append(rows, r)
		if each != nil {
			each(r)
		}
	}
	return rows, nil
}

// clientServer serves data over HTTP with every response drawing on one
// bucket of SeedUp and times n concurrent clients.
func clientServer(ctx context.Context, c Config, data []byte, n int) (time.Duration, error) {
	ln, err := net.Listen("tcp", c.Block+"1:0")
	if err != nil {
		return 0, fmt.Errorf("experiment: %w", err)
	}
	bucket := swarm.NewBucket(c.SeedUp, 0)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		for off := 0; off < len(data); off += 16 << 10 {
			chunk := data[off:min(off+16<<10, len(data))]
			if wait := bucket.Take(time.Now(), len(chunk)); wait > 0 {
				select {
				case <-time.After(wait):
				case <-r.Context().Done():
					return
				}
			}
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(c.Block + strconv.Itoa(10+i))}}
			cl := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, Proxy: nil}}
			defer cl.CloseIdleConnections()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ln.Addr().String()+"/file.bin", nil)
			resp, err := cl.Do(req)
			if err != nil {
				errs <- fmt.Errorf("experiment: client %d: %w", i, err)
				return
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(got, data) {
				errs <- fmt.Errorf("experiment: client %d got %d bytes (%v)", i, len(got), err)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		return 0, err
	}
	return elapsed, nil
}

// p2p times a swarm: a tracker, a seed capped at SeedUp and n leechers
// capped at PeerUp, each on its own address, until the last completes.
func p2p(ctx context.Context, c Config, deps service.Deps, n int) (time.Duration, error) {
	leechers := make([]swarm.Config, n)
	for i := range leechers {
		leechers[i].UploadLimit, leechers[i].Seed = c.PeerUp, true
	}
	times, err := runSwarm(ctx, c, deps, fmt.Sprintf("p2p-%d", n), swarm.Config{UploadLimit: c.SeedUp}, leechers, nil)
	if err != nil {
		return 0, err
	}
	var last time.Duration
	for _, t := range times {
		last = max(last, t)
	}
	return last, nil
}

// runSwarm starts a tracker and a seed of c.Dir/seed/file.bin (seed's
// config with the torrent, address and directory filled in), then the
// leechers (each config completed the same way, in a fresh directory
// named after run), and returns when each leecher completed, measured
// from the moment they were started. Leechers with Seed set seed on once
// complete; the others leave.
// observe, when not nil, is called with the leechers every 250 ms while
// they run and once more (final) when the last is done, before anything
// stops.
func runSwarm(ctx context.Context, c Config, deps service.Deps, run string, seed swarm.Config, leechers []swarm.Config,
	observe func(elapsed time.Duration, clients []*swarm.Client, final bool)) ([]time.Duration, error) {
	deps = deps.Defaults()
	d := service.Deps{Logger: deps.Logger, Trace: deps.Trace} // each run its own metrics
	tr, err := tracker.New(tracker.Config{HTTPAddr: c.Block + "1:0", Interval: config2s, MinInterval: config1s}, d)
	if err != nil {
		return nil, err
	}
	if err := tr.Start(ctx); err != nil {
		return nil, err
	}
	var stops []service.Service
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i].Shutdown(sctx)
		}
		tr.Shutdown(sctx)
		for i := range leechers {
			os.RemoveAll(filepath.Join(c.Dir, fmt.Sprintf("%s-%d", run, i)))
		}
	}()
	m, err := metainfo.Create(filepath.Join(c.Dir, "seed", "file.bin"), metainfo.CreateOptions{Trackers: [][]string{{tr.AnnounceURLs()[0]}}})
	if err != nil {
		return nil, err
	}
	start := func(name string, host int, cfg swarm.Config) (*swarm.Client, error) {
		cfg.Torrent, cfg.Listen, cfg.AnnounceInterval = m, c.Block+strconv.Itoa(host)+":0", config1s
		cl, err := swarm.New(cfg, service.Deps{Logger: deps.Logger.With("peer", name), Trace: deps.Trace})
		if err != nil {
			return nil, err
		}
		if err := cl.Start(ctx); err != nil {
			return nil, err
		}
		stops = append(stops, cl)
		return cl, nil
	}
	seed.Dir, seed.Seed = filepath.Join(c.Dir, "seed"), true
	if _, err := start("seed", 2, seed); err != nil {
		return nil, err
	}
	t0 := time.Now()
	var clients []*swarm.Client
	for i, cfg := range leechers {
		cfg.Dir = filepath.Join(c.Dir, fmt.Sprintf("%s-%d", run, i))
		os.RemoveAll(cfg.Dir)
		l, err := start(fmt.Sprintf("peer%d", i), 10+i, cfg)
		if err != nil {
			return nil, err
		}
		clients = append(clients, l)
	}
	timeout := time.NewTimer(c.Timeout)
	defer timeout.Stop()
	times := make([]time.Duration, len(clients))
	done := make(chan int, len(clients))
	stop := make(chan struct{})
	defer close(stop)
	for i, l := range clients {
		go func() {
			select {
			case <-l.Done():
				times[i] = time.Since(t0)
				if !leechers[i].Seed {
					// It leaves, as a peer that does not seed on does.
					sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					l.Shutdown(sctx)
					cancel()
				}
				done <- i
			case <-stop:
			}
		}()
	}
	var sample <-chan time.Time
	if observe != nil {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		sample = tick.C
		observe(0, clients, false)
	}
	for left := len(clients); left > 0; {
		select {
		case <-done:
			left--
		case <-sample:
			observe(time.Since(t0), clients, false)
		case <-timeout.C:
			return nil, fmt.Errorf("experiment: swarm %s not done in %v", run, c.Timeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if observe != nil {
		observe(time.Since(t0), clients, true)
	}
	return times, nil
}
