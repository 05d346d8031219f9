package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/applayer/applayer/internal/trace"
)

// traceBacklog is how many events the admin's /trace stream holds for a
// slow reader; beyond it, events are dropped from that stream (never from
// the lab's other sinks, and publishers never wait).
const traceBacklog = 4096

// traceHandler streams the lab's trace as JSON lines for as long as the
// request lasts (GET /trace on the admin listener), so a scenario or a
// diagram in another process sees every event as it happens. It ends when
// the lab stops (stop closed).
func traceHandler(bus *trace.Bus, stop <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		rc.SetReadDeadline(time.Time{}) // the admin's read timeout would end the stream
		ch := make(chan trace.Event, traceBacklog)
		cancel := bus.Subscribe(trace.SinkFunc(func(e trace.Event) {
			select {
			case ch <- e:
			default:
			}
		}))
		defer cancel()
		w.Header().Set("Content-Type", "application/jsonl")
		w.WriteHeader(http.StatusOK)
		rc.Flush()
		enc := json.NewEncoder(w)
		tick := time.NewTicker(trace.FlushInterval)
		defer tick.Stop()
		pending := false
		for {
			select {
			case e := <-ch:
				if err := enc.Encode(e); err != nil {
					return
				}
				pending = true
			case <-tick.C:
				if pending {
					if rc.Flush() != nil {
						return
					}
					pending = false
				}
			case <-r.Context().Done():
				return
			case <-stop:
				return
			}
		}
	})
}

// StreamTrace subscribes sink to the trace of the lab whose admin listener
// is at admin (GET /trace). It returns once the subscription is in place;
// stop ends it and waits for the reader.
func StreamTrace(ctx context.Context, admin string, sink trace.Sink) (stop func(), err error) {
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/trace", nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("lab: trace stream: %w", err)
	}
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("lab: trace stream from %s: %w", admin, err)
	}
	if res.StatusCode != http.StatusOK {
		res.Body.Close()
		cancel()
		return nil, fmt.Errorf("lab: trace stream from %s: %s", admin, res.Status)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var e trace.Event
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				sink.Event(e)
			}
		}
	}()
	return func() { cancel(); <-done }, nil
}
