package router

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/applayer/applayer/cdn/edge"
	"github.com/applayer/applayer/internal/trace"
)

// edgeState is what the router knows of one edge: its address, and from
// the active health checks whether it is up and how loaded it is.
type edgeState struct {
	name, cluster string
	addr          netip.Addr
	control       string
	hash          uint64

	up       atomic.Bool
	load     atomic.Uint64 // math.Float64bits
	fails    atomic.Int32  // consecutive failed checks
	report   atomic.Pointer[edge.Report]
	checked  atomic.Int64 // unix nanoseconds of the last check
	lastErr  atomic.Pointer[string]
	answered atomic.Int64 // clients sent here
}

func (e *edgeState) loadValue() float64 { return math.Float64frombits(e.load.Load()) }

// checkAll runs one round of health checks, every edge in parallel, and
// returns when all are done (each bounded by the check timeout).
func (s *Server) checkAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, c := range s.t.clusters {
		for _, e := range c.edges {
			if e.control == "" {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.checkEdge(ctx, e)
			}()
		}
	}
	wg.Wait()
}

// CheckNow runs one round of health checks and returns when it is done:
// the next answers use its results (tests, and the admin's refresh).
func (s *Server) CheckNow(ctx context.Context) { s.checkAll(ctx) }

// checkEdge asks one edge for its report. An edge is marked down after
// Fall consecutive failures (a refused connection, a timeout, a status
// other than 200, or a report saying it is not healthy) and up again
// after one success.
func (s *Server) checkEdge(ctx context.Context, e *edgeState) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CheckTimeout.D())
	defer cancel()
	rep, err := s.fetchReport(ctx, e)
	e.checked.Store(s.deps.Now().UnixNano())
	wasUp := e.up.Load()
	if err == nil && !rep.Healthy {
		err = fmt.Errorf("edge reports it is not healthy")
	}
	if err != nil {
		msg := err.Error()
		e.lastErr.Store(&msg)
		s.m.checks.WithLabelValues("fail").Inc()
		if n := e.fails.Add(1); int(n) >= s.cfg.Fall && wasUp {
			e.up.Store(false)
			s.m.edgeUp.WithLabelValues(e.cluster, e.name).Set(0)
			s.log.Info("edge down", "cluster", e.cluster, "edge", e.name, "err", msg)
			s.traceHealth(e, "down: "+msg)
		}
		return
	}
	e.lastErr.Store(nil)
	e.fails.Store(0)
	e.report.Store(rep)
	e.load.Store(math.Float64bits(rep.Load))
	s.m.edgeLoad.WithLabelValues(e.cluster, e.name).Set(rep.Load)
	s.m.checks.WithLabelValues("ok").Inc()
	if !wasUp {
		e.up.Store(true)
		s.m.edgeUp.WithLabelValues(e.cluster, e.name).Set(1)
		s.log.Info("edge up", "cluster", e.cluster, "edge", e.name)
		s.traceHealth(e, "up")
	}
}

func (s *Server) traceHealth(e *edgeState, what string) {
	if s.deps.Trace.Enabled() {
		s.deps.Trace.Publish(trace.Event{From: e.control, To: s.Local(), Proto: "cdn/health", Summary: "edge " + e.name + " (" + e.cluster + ") " + what})
	}
}

// maxReport bounds an edge's report.
const maxReport = 64 << 10

func (s *Server) fetchReport(ctx context.Context, e *edgeState) (*edge.Report, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.control+"/cdn/health", nil)
	if err != nil {
		return nil, err
	}
	res, err := s.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(res.Body, maxReport))
		return nil, fmt.Errorf("health check: status %d", res.StatusCode)
	}
	var rep edge.Report
	if err := json.NewDecoder(io.LimitReader(res.Body, maxReport)).Decode(&rep); err != nil {
		return nil, fmt.Errorf("health check: report: %w", err)
	}
	if math.IsNaN(rep.Load) || rep.Load < 0 {
		return nil, fmt.Errorf("health check: load %v", rep.Load)
	}
	return &rep, nil
}

// healthLoop checks every edge each interval until ctx ends.
func (s *Server) healthLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.CheckInterval.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.checkAll(ctx)
		}
	}
}
