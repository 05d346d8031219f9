package edge

// Report is what an edge tells the request router on its control
// listener (GET /cdn/health): that it is up, and how loaded it is. The
// router's active health check reads it every interval; an edge that
// does not answer 200 with a Report in time counts as down.
type Report struct {
	// Name is the edge's name (its host name in the lab).
	Name string `json:"name"`
	// Healthy is false while the edge drains (shutting down).
	Healthy bool `json:"healthy"`
	// Load is InFlight / Capacity: above the router's threshold for the
	// cluster the edge gets no new clients.
	Load     float64 `json:"load"`
	InFlight int64   `json:"in_flight"`
	Capacity int     `json:"capacity"`
	// Requests, Hits: client requests, and those answered from the cache.
	Requests int64 `json:"requests"`
	Hits     int64 `json:"hits"`
	// BytesCache is body bytes served from the cache; BytesUpstream
	// those fetched from upstream (the shield or the origin).
	BytesCache    int64 `json:"bytes_cache"`
	BytesUpstream int64 `json:"bytes_upstream"`
	// UpstreamFetches counts requests sent upstream.
	UpstreamFetches int64 `json:"upstream_fetches"`
}
