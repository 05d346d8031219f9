package cache_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/web/cache"
)

// Fetch through the cache: the first request misses and goes to the
// origin, which says the response is fresh for a minute (max-age=60); the
// second is a hit, served from storage without contacting the origin. The
// Cache-Status header (RFC 9211) says which was which.
func Example() {
	// One instant for the origin's Date and the cache's clock, so the
	// remaining freshness (ttl) printed is exact.
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var originRequests atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		originRequests.Add(1)
		w.Header().Set("Date", now.Format(http.TimeFormat))
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "hello from the origin\n")
	}))
	defer origin.Close()
	upstream := &http.Transport{}
	defer upstream.CloseIdleConnections()

	// The cache is an http.Handler in front of the origin's RoundTripper;
	// a proxy (web/proxy) serves it to clients. Requests carry absolute
	// URLs, as a client sends them to a proxy.
	c, err := cache.New(cache.Config{}, upstream, service.Deps{Now: func() time.Time { return now }})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	for range 2 {
		w := httptest.NewRecorder()
		c.ServeHTTP(w, httptest.NewRequest(http.MethodGet, origin.URL+"/hello.txt", nil))
		fmt.Printf("%d %q Cache-Status: %s\n", w.Code, w.Body.String(), w.Header().Get("Cache-Status"))
	}
	st := c.Stats()
	fmt.Printf("origin requests: %d; cache: %d requests, %d hit, %d miss\n", originRequests.Load(), st.Requests, st.Hits, st.Misses)
	// Output:
	// 200 "hello from the origin\n" Cache-Status: applayer; fwd=uri-miss; stored
	// 200 "hello from the origin\n" Cache-Status: applayer; hit; ttl=60
	// origin requests: 1; cache: 2 requests, 1 hit, 1 miss
}
