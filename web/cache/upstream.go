// Requests forwarded to the upstream: building them, sending them,
// unsafe methods and the invalidation they cause.

package cache

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"

	"github.com/applayer/applayer/internal/trace"
)

// outbound builds the request sent upstream: r's method, URL and header
// (cloned), detached from the client's cancellation but bounded by the
// fetch timeout.
func (c *Cache) outbound(r *http.Request) (*http.Request, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), c.cfg.FetchTimeout.D())
	out := r.Clone(ctx)
	out.RequestURI = ""
	// The client's "Connection: close" (or HTTP/1.0) is about its own
	// connection, not ours to the origin (hop-by-hop).
	out.Close = false
	if out.URL.Scheme == "" {
		out.URL.Scheme = "http"
	}
	if out.URL.Host == "" {
		out.URL.Host = r.Host
	}
	RemoveHopByHop(out.Header)
	return out, cancel
}

func (c *Cache) roundTrip(out *http.Request) (*http.Response, error) {
	c.st.originRequests.Add(1)
	if tr := c.deps.Trace; tr.Enabled() {
		// The request as sent, once the connection it goes on is known.
		summary := out.Method + " " + out.URL.String() + headerSummary(out.Header)
		out = out.WithContext(httptrace.WithClientTrace(out.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) {
				from, to := info.Conn.LocalAddr().String(), info.Conn.RemoteAddr().String()
				if !info.Reused {
					tr.Publish(trace.Event{Type: trace.ConnOpen, From: from, To: to, Proto: "tcp", Summary: "TCP connection opened"})
				}
				tr.Publish(trace.Event{From: from, To: to, Proto: "http/1.1", Summary: summary})
			},
		}))
	}
	res, err := c.upstream.RoundTrip(out)
	if err != nil {
		return nil, fmt.Errorf("cache: origin %s: %w", out.URL.Host, err)
	}
	if res.StatusCode < 200 || res.StatusCode > 599 {
		// No final status the client could be given (net/http's server
		// refuses to write one outside 100-999; a 1xx here, e.g. 101 to a
		// request whose Upgrade was removed, is no answer): a bad gateway.
		res.Body.Close()
		return nil, fmt.Errorf("cache: origin %s: invalid status %d", out.URL.Host, res.StatusCode)
	}
	RemoveHopByHop(res.Header)
	delete(res.Header, "Content-Length") // recomputed or streamed
	if res.ContentLength >= 0 {
		res.Header["Content-Length"] = []string{strconv.FormatInt(res.ContentLength, 10)}
	}
	return res, nil
}

func (c *Cache) badGateway(w http.ResponseWriter, status string, err error) {
	c.log.Debug("origin failed", "err", err)
	w.Header()["Cache-Status"] = []string{c.cfg.Name + "; " + status + "; detail=origin-error"}
	code := http.StatusBadGateway
	if errors.Is(err, context.DeadlineExceeded) {
		code = http.StatusGatewayTimeout
	}
	http.Error(w, fmt.Sprintf("%d %s", code, http.StatusText(code)), code)
}

// forwardUnsafe passes a request with any other method through and
// invalidates the target URI (and Location / Content-Location when of the
// same origin) on a non-error response (RFC 9111 section 4.4).
func (c *Cache) forwardUnsafe(w http.ResponseWriter, r *http.Request) {
	c.st.bypass.Add(1)
	out, cancel := c.outbound(r)
	defer cancel()
	out = out.WithContext(r.Context())
	res, err := c.roundTrip(out)
	if err != nil {
		c.badGateway(w, csMethod, err)
		return
	}
	defer res.Body.Close()
	if safe := r.Method == http.MethodOptions || r.Method == http.MethodTrace; !safe && res.StatusCode < 400 {
		key := Key(r)
		c.invalidate(key)
		for _, f := range []string{"Location", "Content-Location"} {
			if v := res.Header.Get(f); v != "" {
				if k, same := keyFromURL(key, v); same {
					c.invalidate(k)
				}
			}
		}
	}
	c.stream(w, r, res, csMethod, nil, nil)
}

func (c *Cache) invalidate(key string) {
	c.mem.remove(key)
	if c.disk != nil {
		c.disk.remove(key)
	}
}

// headerSummary shows a forwarded request's validators in its trace.
func headerSummary(h http.Header) string {
	s := ""
	for _, n := range []string{"If-Modified-Since", "If-None-Match"} {
		if v := h.Get(n); v != "" {
			s += " " + n + ": " + v
		}
	}
	return s
}

// forwardInterim returns out set to pass the upstream's informational
// responses (1xx other than 100 and 101: 103 Early Hints, RFC 8297) to
// the client as they arrive, so a browser behind the cache can start
// fetching what the hints name while the origin still works on the
// final response. The hints' fields are sent with the 1xx only: they are
// removed from w's header again before the final response.
func forwardInterim(out *http.Request, w http.ResponseWriter) *http.Request {
	trace := &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			if code == http.StatusContinue || code == http.StatusSwitchingProtocols {
				return nil
			}
			wh := w.Header()
			var added []string
			for k, vs := range h {
				if _, had := wh[k]; !had {
					added = append(added, k)
				}
				wh[k] = vs
			}
			w.WriteHeader(code)
			for _, k := range added {
				delete(wh, k)
			}
			return nil
		},
	}
	return out.WithContext(httptrace.WithClientTrace(out.Context(), trace))
}
