package cache

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats are the figures of the chapter's caching example: how many
// requests the cache answered itself, how many bytes came from the cache
// and how many over the access link from origins, and the access-link
// utilisation that traffic implies for the configured link rate.
type Stats struct {
	Requests        int64 `json:"requests"`
	Hits            int64 `json:"hits"`
	Misses          int64 `json:"misses"`
	Revalidated     int64 `json:"revalidated"`
	StaleServed     int64 `json:"stale_served"`
	Bypassed        int64 `json:"bypassed"`
	OriginRequests  int64 `json:"origin_requests"`
	BytesFromCache  int64 `json:"bytes_from_cache"`
	BytesFromOrigin int64 `json:"bytes_from_origin"`
	Objects         int   `json:"objects"`
	MemoryBytes     int64 `json:"memory_bytes"`

	// HitRatio is Hits/Requests.
	HitRatio float64 `json:"hit_ratio"`
	// UptimeSeconds is the time the figures were collected over.
	UptimeSeconds float64 `json:"uptime_seconds"`
	// RequestRate and OriginRequestRate are per second, averaged over the uptime.
	RequestRate       float64 `json:"request_rate"`
	OriginRequestRate float64 `json:"origin_request_rate"`
	// OriginBitRate is the access link's load in bits/s.
	OriginBitRate float64 `json:"origin_bit_rate"`
	// LinkRate is the configured access-link rate in bits/s.
	LinkRate float64 `json:"link_rate"`
	// LinkUtilisation is OriginBitRate/LinkRate; LinkUtilisationNoCache is
	// what it would be if every byte came over the link.
	LinkUtilisation        float64 `json:"link_utilisation"`
	LinkUtilisationNoCache float64 `json:"link_utilisation_no_cache"`
}

// Stats returns the cache's statistics now.
func (c *Cache) Stats() Stats {
	s := Stats{
		Requests: c.st.requests.Load(), Hits: c.st.hits.Load(), Misses: c.st.misses.Load(),
		Revalidated: c.st.revalidated.Load(), StaleServed: c.st.stale.Load(), Bypassed: c.st.bypass.Load(),
		OriginRequests: c.st.originRequests.Load(), BytesFromCache: c.st.bytesCache.Load(),
		BytesFromOrigin: c.st.bytesOrigin.Load(), LinkRate: c.cfg.LinkRate,
	}
	s.Objects, s.MemoryBytes = c.mem.usage()
	if s.Requests > 0 {
		s.HitRatio = float64(s.Hits) / float64(s.Requests)
	}
	s.UptimeSeconds = c.now().Sub(c.start).Seconds()
	if s.UptimeSeconds > 0 {
		s.RequestRate = float64(s.Requests) / s.UptimeSeconds
		s.OriginRequestRate = float64(s.OriginRequests) / s.UptimeSeconds
		s.OriginBitRate = float64(s.BytesFromOrigin) * 8 / s.UptimeSeconds
		s.LinkUtilisation = s.OriginBitRate / s.LinkRate
		s.LinkUtilisationNoCache = float64(s.BytesFromOrigin+s.BytesFromCache) * 8 / s.UptimeSeconds / s.LinkRate
	}
	return s
}

// LinkModel is the chapter's back-of-the-envelope calculation: with
// requestRate requests/s for objects of objectBits bits over a link of
// linkRate bits/s, the link's traffic intensity without a cache, and with
// a cache answering hitRatio of the requests.
func LinkModel(requestRate, objectBits, linkRate, hitRatio float64) (without, with float64) {
	without = requestRate * objectBits / linkRate
	return without, without * (1 - hitRatio)
}

// String renders s as the report `applayer http proxy --stats` prints.
func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "requests            %d (%.1f/s over %.0fs)\n", s.Requests, s.RequestRate, s.UptimeSeconds)
	fmt.Fprintf(&b, "hits                %d (hit ratio %.3f)\n", s.Hits, s.HitRatio)
	fmt.Fprintf(&b, "misses              %d, revalidated %d, stale served %d, bypassed %d\n", s.Misses, s.Revalidated, s.StaleServed, s.Bypassed)
	fmt.Fprintf(&b, "origin requests     %d (%.1f/s)\n", s.OriginRequests, s.OriginRequestRate)
	fmt.Fprintf(&b, "bytes from cache    %d\n", s.BytesFromCache)
	fmt.Fprintf(&b, "bytes from origin   %d (%.3f Mbit/s on the access link)\n", s.BytesFromOrigin, s.OriginBitRate/1e6)
	fmt.Fprintf(&b, "access link         %.1f Mbit/s: utilisation %.3f (%.3f without the cache)\n", s.LinkRate/1e6, s.LinkUtilisation, s.LinkUtilisationNoCache)
	fmt.Fprintf(&b, "stored              %d objects, %d bytes in memory\n", s.Objects, s.MemoryBytes)
	return b.String()
}

// AdminHandler serves, under /cache/ on the admin listener:
//
//	GET  /cache/stats               the Stats as JSON
//	POST /cache/purge?url=URL       remove every stored response for URL
//	POST /cache/purge?prefix=PREFIX remove every response whose URL starts with PREFIX
func (c *Cache) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cache/stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(c.Stats())
	})
	mux.HandleFunc("POST /cache/purge", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var n int
		switch {
		case q.Get("url") != "":
			n = c.Purge(q.Get("url"))
		case q.Get("prefix") != "":
			n = c.PurgePrefix(q.Get("prefix"))
		default:
			http.Error(w, "purge needs url= or prefix=", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"purged\":%d}\n", n)
	})
	return mux
}

type metrics struct {
	reg prometheus.Registerer
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	return &metrics{reg: reg}, nil
}

// register adds collectors that read the cache's counters.
func (m *metrics) register(c *Cache) error {
	const ns, sub = "applayer", "web_cache"
	counter := func(name, help string, lbl prometheus.Labels, f func() int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help, ConstLabels: lbl},
			func() float64 { return float64(f()) })
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, f)
	}
	// Ratios (hit ratio, link utilisation) are left to PromQL, e.g.
	// sum(rate(applayer_web_cache_lookups_total{result="hit"}[5m])) / sum(rate(applayer_web_cache_requests_total[5m])).
	const lookups = "Requests by how the cache answered them: hit (from storage), miss (full response from the origin), revalidated (stored response validated with a 304), stale (stale-while-revalidate, stale-if-error)."
	const body = "Body bytes served, by source: cache (from storage) or origin (fetched from origins)."
	cs := []prometheus.Collector{
		counter("requests_total", "Requests the cache handled.", nil, c.st.requests.Load),
		counter("lookups_total", lookups, prometheus.Labels{"result": "hit"}, c.st.hits.Load),
		counter("lookups_total", lookups, prometheus.Labels{"result": "miss"}, c.st.misses.Load),
		counter("lookups_total", lookups, prometheus.Labels{"result": "revalidated"}, c.st.revalidated.Load),
		counter("lookups_total", lookups, prometheus.Labels{"result": "stale"}, c.st.stale.Load),
		counter("origin_requests_total", "Requests sent to origins.", nil, c.st.originRequests.Load),
		counter("body_bytes_total", body, prometheus.Labels{"source": "cache"}, c.st.bytesCache.Load),
		counter("body_bytes_total", body, prometheus.Labels{"source": "origin"}, c.st.bytesOrigin.Load),
		gauge("objects", "Stored responses in memory.", func() float64 { n, _ := c.mem.usage(); return float64(n) }),
		gauge("memory_bytes", "Bytes used by the memory tier.", func() float64 { _, b := c.mem.usage(); return float64(b) }),
		gauge("link_rate_bytes_per_second", "The configured access-link rate, for the link utilisation in PromQL: rate(applayer_web_cache_body_bytes_total{source=\"origin\"}[1m]) / this.", func() float64 { return c.cfg.LinkRate / 8 }),
	}
	for _, col := range cs {
		if err := m.reg.Register(col); err != nil {
			return fmt.Errorf("cache: metrics: %w", err)
		}
	}
	return nil
}
