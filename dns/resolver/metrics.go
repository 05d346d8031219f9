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
// the cached entries.
func newMetrics(reg prometheus.Registerer, entries func() int) (*metrics, error) {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "dns_resolver", Name: name, Help: help})
	}
	m := &metrics{
		queries:             c("queries_total", "Client queries received."),
		hits:                c("cache_hits_total", "Client queries answered from the reply cache."),
		misses:              c("cache_misses_total", "Client queries that needed resolution."),
		refused:             c("refused_total", "Queries refused (client not allowed) or connections refused (limit)."),
		servfail:            c("servfail_total", "Queries answered SERVFAIL."),
		dropped:             c("dropped_total", "Queries dropped because too many resolutions were in flight."),
		stale:               c("stale_answers_total", "Expired answers served because no authority answered (RFC 8767)."),
		prefetches:          c("prefetches_total", "Popular entries refreshed before expiry."),
		upstreamQueries:     c("upstream_queries_total", "Queries sent to authoritative servers or forwarders."),
		upstreamTimeouts:    c("upstream_timeouts_total", "Upstream queries that timed out."),
		referrals:           c("referrals_total", "Referrals followed."),
		lame:                c("lame_replies_total", "Replies from servers that do not serve the zone they were asked about."),
		mismatched:          c("mismatched_replies_total", "Replies ignored for a wrong ID, question or case (possible spoofing)."),
		tcpFallback:         c("tcp_fallback_total", "Truncated replies retried over TCP."),
		bogus:               c("bogus_total", "Resolved answers that failed DNSSEC validation (SERVFAIL unless CD)."),
		secure:              c("secure_total", "Resolved answers validated secure (AD)."),
		insecure:            c("insecure_total", "Resolved answers validated insecure (no chain of trust) while validating."),
		keytrap:             c("validation_limit_total", "Validations stopped by the signature-check limits (KeyTrap)."),
		aggressive:          c("aggressive_nsec_total", "NXDOMAIN and NODATA answers synthesized from cached, validated NSEC/NSEC3 records (RFC 8198)."),
		aggressiveWildcard:  c("aggressive_wildcard_total", "Positive answers synthesized from a cached, validated wildcard RRset and NSEC/NSEC3 proof (RFC 8198 5.3)."),
		insecureDelegations: c("insecure_delegations_total", "Delegations proven unsigned (no DS)."),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "applayer", Subsystem: "dns_resolver", Name: "resolution_seconds",
			Help: "Time to answer client queries that missed the reply cache.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		rtt: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "applayer", Subsystem: "dns_resolver", Name: "upstream_rtt_seconds",
			Help: "Round-trip time of upstream queries.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
	}
	cached := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "applayer", Subsystem: "dns_resolver", Name: "cache_entries",
		Help: "Entries in the reply and RRset caches."}, func() float64 { return float64(entries()) })
	for _, col := range []prometheus.Collector{m.queries, m.hits, m.misses, m.refused, m.servfail, m.dropped, m.stale, m.prefetches,
		m.upstreamQueries, m.upstreamTimeouts, m.referrals, m.lame, m.mismatched, m.tcpFallback, m.bogus, m.secure, m.insecure, m.keytrap, m.insecureDelegations, m.aggressive, m.aggressiveWildcard, m.latency, m.rtt, cached} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("resolver: metrics: %w", err)
		}
	}
	return m, nil
}
