package proxy

import (
	"bytes"
	"context"
	"io"
	"net"

	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/internal/transport"
	"github.com/applayer/applayer/web/fastpath"
)

// The fast path (web/fastpath). Every client connection starts here:
// requests are parsed in place and plain GET/HEAD requests for fresh stored responses are
// answered straight from the cache's precomputed header and body with one
// writev. The first request that needs anything else (a miss, a
// validation, request directives, conditionals, a body, CONNECT, ...)
// hands the connection, with the unread bytes, to the net/http server,
// which serves it from then on.

// busyReply answers a connection refused for a limit.
const busyReply = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

// newFront returns the transport that accepts client connections for the
// fast path: the connection and per-client limits (trusted proxies exempt:
// they carry many clients) answered with 503, accept back-off, panics
// answered with 500, and s.conns kept as the count of open connections
// (those handed to net/http included, until closed).
func (s *Server) newFront(local string) *transport.StreamServer {
	return transport.NewStreamServer(transport.StreamConfig{
		MaxConns:      s.cfg.MaxConns,
		MaxConnsPerIP: s.cfg.MaxConnsPerClient,
		PerIPExempt:   s.trustedPeer,
		OnReject:      func(c net.Conn, _ transport.RejectReason) { io.WriteString(c, busyReply) },
		OnPanic: func(c net.Conn, _ any) {
			io.WriteString(c, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		},
		Observe: func(e transport.Event) {
			switch e.Kind {
			case transport.EventAccepted:
				s.conns.Add(1)
				s.traceConn(trace.ConnOpen, e.Remote.String(), local, "TCP connection opened")
			case transport.EventClosed:
				s.conns.Add(-1)
				s.traceConn(trace.ConnClose, e.Remote.String(), local, "TCP connection closed")
			}
		},
		Logger: s.log,
	}, transport.HandlerFunc(s.serveFast))
}

// newFast returns the fast path (web/fastpath) answering from the cache
// and handing everything else to net/http through s.handoff.
func (s *Server) newFast() *fastpath.Server {
	return fastpath.New(fastpath.Config{
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout.D(),
		IdleTimeout:       s.cfg.IdleTimeout.D(),
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		HandOver:          s.handoff.Deliver,
	}, fastHandler{s})
}

// serveFast serves one client connection on the fast path until a request
// needs net/http (the connection is then handed over) or the client goes.
func (s *Server) serveFast(ctx context.Context, tc *transport.Conn) {
	if !s.allowedPeer(tc.RemoteAddrPort().Addr()) || s.deps.Trace.Enabled() {
		s.fast.HandOverNow(tc)
		return
	}
	s.fast.ServeConn(ctx, tc)
}

// fastHandler answers fresh cache hits on the fast path.
type fastHandler struct{ s *Server }

// ServeFast implements fastpath.Handler.
func (h fastHandler) ServeFast(r *fastpath.Request, w *fastpath.Writer) bool {
	var kb [512]byte
	key, ok := h.s.fastKey(kb[:0], r)
	if !ok {
		return false
	}
	hdr, body, ok := h.s.cache.FastHit(key, r.Head, h.s.via, w.B)
	if !ok {
		w.B = hdr[:len(w.B)]
		return false
	}
	w.B = hdr
	w.Body(body)
	return true
}

// fastKey appends the cache key of a request the fast path may answer
// (a plain GET or HEAD without request directives, validators, ranges,
// credentials or Via) to dst; ok false means: the general path.
func (s *Server) fastKey(dst []byte, r *fastpath.Request) (key []byte, ok bool) {
	if r.Close {
		return dst, false
	}
	for _, f := range r.Fields {
		name := f.Name
		if fastpath.HasPrefixFold(name, "if-") || fastpath.EqualFold(name, "range") || fastpath.EqualFold(name, "cache-control") ||
			fastpath.EqualFold(name, "pragma") || fastpath.EqualFold(name, "authorization") || fastpath.EqualFold(name, "via") ||
			fastpath.EqualFold(name, "max-forwards") {
			return dst, false
		}
	}
	target := r.Target
	switch {
	case target[0] == '/':
		if !s.reverseHost(r.Host) {
			return dst, false
		}
		dst = append(dst, "http://"...)
		dst = appendHost(dst, r.Host)
		dst = append(dst, target...)
	case fastpath.HasPrefixFold(target, "http://"):
		if !*s.cfg.Forward {
			return dst, false
		}
		hp := target[len("http://"):]
		slash := bytes.IndexByte(hp, '/')
		if slash < 0 {
			return dst, false
		}
		if s.reverseHost(hp[:slash]) {
			return dst, false // absolute form for a reverse site: the general path decides
		}
		dst = append(dst, "http://"...)
		dst = appendHost(dst, hp[:slash])
		dst = append(dst, hp[slash:]...)
	default:
		return dst, false
	}
	return dst, true
}

// reverseHost reports whether host names a configured reverse site.
func (s *Server) reverseHost(host []byte) bool {
	if len(s.sites) == 0 {
		return false
	}
	if s.sites["*"] != nil {
		return true
	}
	return s.siteFor(string(host)) != nil
}

// appendHost appends host lower-cased, without the default port.
func appendHost(dst, host []byte) []byte {
	if bytes.HasSuffix(host, []byte(":80")) {
		host = host[:len(host)-3]
	}
	for _, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// traceConn publishes a client connection's opening or closing.
func (s *Server) traceConn(typ, from, to, summary string) {
	if s.deps.Trace.Enabled() {
		s.deps.Trace.Publish(trace.Event{Type: typ, From: from, To: to, Proto: "tcp", Summary: summary})
	}
}
