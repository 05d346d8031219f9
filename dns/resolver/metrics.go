package resolver

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	queries, hits, misses, refused, servfail, dropped, stale, prefetches prometheus.Counter
	upstreamQueries, upstreamTimeouts, referrals, lame, mismatched       prometheus.Counter
	tcpFallback, bogus, secure, insecure, keytrap, insecureDelegations   prometheus.Counter
	aggressive, aggressiveWildcard                                       prometheus.Counter
	latency, rtt                                                         prometheus.Histogram
}

// newMetrics registers the resolver's metrics with reg; entries counts
// the cached entries, bytes the heap bytes the RRset cache holds (of
// which negative entries hold neg) and the reply cache holds.
func newMetrics(reg prometheus.Registerer, entries func() int, bytes func() (rrsets, neg, replies int64)) (*metrics, error) {
	const ns, sub = "applayer", "dns_resolver"
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "cache_lookups_total",
		Help: "Client queries looked up in the reply cache, by result (hit: answered from it; miss: needed resolution)."}, []string{"result"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "error_responses_total",
		Help: "Error answers, by RCODE: REFUSED (client not allowed; also TCP connections refused at the limit) and SERVFAIL."}, []string{"rcode"})
	validations := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "validations_total",
		Help: "Resolved answers by DNSSEC validation result: secure (AD), insecure (no chain of trust), bogus (SERVFAIL unless CD)."}, []string{"result"})
	synth := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "synthesized_answers_total",
		Help: "Answers synthesized from cached, validated records (RFC 8198), by source: nsec (NXDOMAIN and NODATA from NSEC/NSEC3), wildcard (positive answers from a wildcard RRset and its proof)."}, []string{"from"})
	m := &metrics{
		queries:             c("queries_total", "Client queries received."),
		hits:                lookups.WithLabelValues("hit"),
		misses:              lookups.WithLabelValues("miss"),
		refused:             errs.WithLabelValues("REFUSED"),
		servfail:            errs.WithLabelValues("SERVFAIL"),
		dropped:             c("dropped_total", "Queries dropped because too many resolutions were in flight."),
		stale:               c("stale_answers_total", "Expired answers served because no authority answered (RFC 8767)."),
		prefetches:          c("prefetches_total", "Popular entries refreshed before expiry."),
		upstreamQueries:     c("upstream_queries_total", "Queries sent to authoritative servers or forwarders."),
		upstreamTimeouts:    c("upstream_timeouts_total", "Upstream queries that timed out."),
		referrals:           c("referrals_total", "Referrals followed."),
		lame:                c("lame_replies_total", "Replies from servers that do not serve the zone they were asked about."),
		mismatched:          c("mismatched_replies_total", "Replies ignored for a wrong ID, question or case (possible spoofing)."),
		tcpFallback:         c("tcp_fallback_total", "Truncated replies retried over TCP."),
		bogus:               validations.WithLabelValues("bogus"),
		secure:              validations.WithLabelValues("secure"),
		insecure:            validations.WithLabelValues("insecure"),
		keytrap:             c("validation_limit_total", "Validations stopped by the signature-check limits (KeyTrap)."),
		aggressive:          synth.WithLabelValues("nsec"),
		aggressiveWildcard:  synth.WithLabelValues("wildcard"),
		insecureDelegations: c("insecure_delegations_total", "Delegations proven unsigned (no DS)."),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "resolution_seconds",
			Help: "Time to answer client queries that missed the reply cache.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		rtt: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "upstream_rtt_seconds",
			Help: "Round-trip time of upstream queries.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
	}
	cached := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "cache_entries",
		Help: "Entries in the reply and RRset caches."}, func() float64 { return float64(entries()) })
	cacheBytes := func(pick func(rrsets, neg, replies int64) int64, cache string) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "cache_bytes",
			Help:        "Heap bytes held by the caches (as they account them), by cache: rrset (negative entries included), negative (of rrset), reply.",
			ConstLabels: prometheus.Labels{"cache": cache}}, func() float64 { return float64(pick(bytes())) })
	}
	byteGauges := []prometheus.Collector{
		cacheBytes(func(r, _, _ int64) int64 { return r }, "rrset"),
		cacheBytes(func(_, n, _ int64) int64 { return n }, "negative"),
		cacheBytes(func(_, _, p int64) int64 { return p }, "reply"),
	}
	for _, col := range []prometheus.Collector{m.queries, lookups, errs, m.dropped, m.stale, m.prefetches,
		m.upstreamQueries, m.upstreamTimeouts, m.referrals, m.lame, m.mismatched, m.tcpFallback, validations, m.keytrap, m.insecureDelegations, synth, m.latency, m.rtt, cached, byteGauges[0], byteGauges[1], byteGauges[2]} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("resolver: metrics: %w", err)
		}
	}
	return m, nil
}
