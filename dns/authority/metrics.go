package authority

import (
	"fmt"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	udpQueries prometheus.Counter
	tcpQueries prometheus.Counter
	dropped    prometheus.Counter
	truncated  prometheus.Counter
	panics     prometheus.Counter
	responses  *prometheus.CounterVec
	byRcode    [24]prometheus.Counter
	transfers  *prometheus.CounterVec
	reloads    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "applayer", "dns_authority"
	q := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "queries_total", Help: "Queries received, by transport."}, []string{"proto"})
	m := &metrics{
		udpQueries: q.WithLabelValues("udp"),
		tcpQueries: q.WithLabelValues("tcp"),
		dropped:    prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "dropped_total", Help: "Datagrams dropped without an answer (responses, runts)."}),
		truncated:  prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "truncated_total", Help: "UDP answers sent truncated (TC)."}),
		panics:     prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "panics_total", Help: "Panics recovered while answering (answered SERVFAIL)."}),
		responses:  prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "responses_total", Help: "Answers sent, by RCODE."}, []string{"rcode"}),
		transfers:  prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "transfers_total", Help: "Zone transfers, by direction and result."}, []string{"direction", "result"}),
		reloads:    prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "zone_loads_total", Help: "Zone loads and reloads, by result."}, []string{"result"}),
	}
	for rc := range m.byRcode {
		name := dns.RcodeToString[rc]
		if name == "" {
			name = fmt.Sprint(rc)
		}
		m.byRcode[rc] = m.responses.WithLabelValues(name)
	}
	for _, c := range []prometheus.Collector{q, m.dropped, m.truncated, m.panics, m.responses, m.transfers, m.reloads} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("authority: metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) rcode(rc int) {
	if rc >= 0 && rc < len(m.byRcode) {
		m.byRcode[rc].Inc()
	}
}
