package service

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/internal/trace"
)

// Dialer opens outbound connections. Servers and clients take one instead of
// calling net.Dial, so the lab and the CDN can route traffic between hosts.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Deps carries what a service needs from its surroundings. The zero value is
// usable: Defaults fills in a discarding logger, a private registry, a
// silent trace bus, a net.Dialer and time.Now.
type Deps struct {
	// Logger receives the service's logs; handlers add service/instance
	// attributes before handing it down.
	Logger *slog.Logger
	// Metrics is where the service registers its collectors. The lab wraps
	// one registry per instance with host and service labels.
	Metrics prometheus.Registerer
	// Trace receives protocol events.
	Trace *trace.Bus
	// Dialer opens outbound connections.
	Dialer Dialer
	// Now is the clock.
	Now func() time.Time
}

// Defaults returns d with every nil field set to its default.
func (d Deps) Defaults() Deps {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Metrics == nil {
		d.Metrics = prometheus.NewRegistry()
	}
	if d.Dialer == nil {
		d.Dialer = &net.Dialer{Timeout: 10 * time.Second}
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return d
}
