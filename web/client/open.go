package client

import (
	"context"
	"fmt"
	"net/http"
)

// Open sends req and returns the response with its body unread, for a
// caller that reads it progressively (a DASH player measuring a segment's
// throughput as it arrives and abandoning a slow one). The caller closes
// the body. Unlike Do it neither asks for gzip nor uses the cookie jar or
// the cache; Options.Timeout does not apply (ctx bounds the exchange).
func (c *Client) Open(ctx context.Context, req *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(req.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: %w", req.Method, req.URL, err)
	}
	return resp, nil
}
