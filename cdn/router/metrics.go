package router

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/dns/dnsserver"
)

type metrics struct {
	udp, tcp                            prometheus.Counter
	noerror, formerr, refused, servfail prometheus.Counter
	panics                              prometheus.Counter
	checks                              *prometheus.CounterVec
	edgeUp, edgeLoad                    *prometheus.GaugeVec
	nearest, fallback, down, overloaded []prometheus.Counter // by cluster index
	origin, none                        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, t *table) (*metrics, error) {
	const ns, sub = "applayer", "cdn_router"
	q := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "queries_total", Help: "Queries received, by transport."}, []string{"proto"})
	rc := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "responses_total", Help: "Answers sent, by RCODE."}, []string{"rcode"})
	dec := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "decisions_total", Help: "Routing decisions, by cluster chosen (origin: none could) and reason (nearest, fallback, origin, none)."}, []string{"cluster", "reason"})
	skips := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "skips_total", Help: "Clusters passed over while routing, by cluster and why (down, overloaded)."}, []string{"cluster", "why"})
	m := &metrics{
		udp: q.WithLabelValues("udp"), tcp: q.WithLabelValues("tcp"),
		noerror: rc.WithLabelValues("NOERROR"), formerr: rc.WithLabelValues("FORMERR"),
		refused: rc.WithLabelValues("REFUSED"), servfail: rc.WithLabelValues("SERVFAIL"),
		panics:   prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "panics_total", Help: "Panics recovered while answering (answered SERVFAIL)."}),
		checks:   prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "health_checks_total", Help: "Active health checks of edges, by result."}, []string{"result"}),
		edgeUp:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "edge_up", Help: "1 when the edge passes its health checks."}, []string{"cluster", "edge"}),
		edgeLoad: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "edge_load", Help: "The load the edge reported: its open client connections over its capacity."}, []string{"cluster", "edge"}),
		origin:   dec.WithLabelValues("origin", ReasonOrigin),
		none:     dec.WithLabelValues("", ReasonNone),
	}
	for _, c := range t.clusters {
		m.nearest = append(m.nearest, dec.WithLabelValues(c.name, ReasonNearest))
		m.fallback = append(m.fallback, dec.WithLabelValues(c.name, ReasonFallback))
		m.down = append(m.down, skips.WithLabelValues(c.name, SkipDown))
		m.overloaded = append(m.overloaded, skips.WithLabelValues(c.name, SkipOverloaded))
		for _, e := range c.edges {
			m.edgeUp.WithLabelValues(c.name, e.name).Set(1)
			m.edgeLoad.WithLabelValues(c.name, e.name).Set(0)
		}
	}
	for _, c := range []prometheus.Collector{q, rc, dec, skips, m.panics, m.checks, m.edgeUp, m.edgeLoad} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("router: metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) queries(p dnsserver.Proto) {
	if p == dnsserver.TCP {
		m.tcp.Inc()
	} else {
		m.udp.Inc()
	}
}

func (m *metrics) skip(c *cluster, why string) {
	if why == SkipDown {
		m.down[c.idx].Inc()
	} else {
		m.overloaded[c.idx].Inc()
	}
}

func (m *metrics) decided(d *decision) {
	switch d.reason {
	case ReasonNearest:
		m.nearest[d.cluster.idx].Inc()
	case ReasonFallback:
		m.fallback[d.cluster.idx].Inc()
	case ReasonOrigin:
		m.origin.Inc()
	default:
		m.none.Inc()
	}
}
