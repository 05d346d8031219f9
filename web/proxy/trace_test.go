package proxy

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/internal/trace"
)

// Each request through the proxy is one trace event from the client's
// address to the proxy's listening address, so the lab can draw it.
func TestTraceEvents(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "hello")
	})
	bus := trace.NewBus(nil)
	var mu sync.Mutex
	var events []trace.Event
	bus.Subscribe(trace.SinkFunc(func(e trace.Event) { mu.Lock(); events = append(events, e); mu.Unlock() }))
	s, err := New(Config{Addr: "127.0.0.1:0"}, service.Deps{Logger: testkit.Logger(t), Trace: bus})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(testkit.Context(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	}()
	addr := s.Addrs()[0].String()
	c := proxyClient(t, addr)
	get(t, c, o.URL+"/traced")
	mu.Lock()
	defer mu.Unlock()
	var found bool
	for _, e := range events {
		if e.To == addr && strings.HasPrefix(e.From, "127.0.0.1:") && e.Summary == "GET "+o.URL+"/traced" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no event from the client to %s for the request; got %+v", addr, events)
	}
}
