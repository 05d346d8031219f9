package server

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/internal/trace"
)

type metrics struct {
	// hot caches the counters and histograms of the (proto, method, code)
	// tuples seen, so a request costs no label hashing or allocation.
	mu  sync.RWMutex
	hot map[reqKey]reqMetrics

	requests *prometheus.CounterVec
	bytes    prometheus.Counter
	duration *prometheus.HistogramVec
	conns    prometheus.Counter
	open     prometheus.Gauge
	panics   prometheus.Counter
	pushes   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		hot:      map[reqKey]reqMetrics{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "http_server", Name: "requests_total", Help: "HTTP requests answered, by protocol, method and status code."}, []string{"proto", "method", "code"}),
		bytes:    prometheus.NewCounter(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "http_server", Name: "response_body_bytes_total", Help: "Response body bytes written."}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "applayer", Subsystem: "http_server", Name: "request_duration_seconds", Help: "Time from request header to end of response.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}, []string{"proto"}),
		conns:    prometheus.NewCounter(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "http_server", Name: "connections_total", Help: "TCP connections accepted (HTTP/1 and HTTP/2)."}),
		open:     prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "applayer", Subsystem: "http_server", Name: "open_connections", Help: "TCP connections open now."}),
		panics:   prometheus.NewCounter(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "http_server", Name: "panics_total", Help: "Handler panics answered with 500."}),
		pushes:   prometheus.NewCounter(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "http_server", Name: "pushes_total", Help: "HTTP/2 server pushes (PUSH_PROMISE) made."}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.bytes, m.duration, m.conns, m.open, m.panics, m.pushes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("server: metrics: %w", err)
		}
	}
	return m, nil
}

type reqKey struct {
	proto, method string
	code          int
}

type reqMetrics struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// request counts one answered request.
func (m *metrics) request(proto, method string, code int, d time.Duration, n int64) {
	k := reqKey{proto, method, code}
	m.mu.RLock()
	rm, ok := m.hot[k]
	m.mu.RUnlock()
	if !ok {
		rm = reqMetrics{m.requests.WithLabelValues(proto, method, strconv.Itoa(code)), m.duration.WithLabelValues(proto)}
		m.mu.Lock()
		if len(m.hot) < 1024 { // methods are client-chosen: bound the cache
			m.hot[k] = rm
		}
		m.mu.Unlock()
	}
	rm.requests.Inc()
	rm.duration.Observe(d.Seconds())
	if n > 0 {
		m.bytes.Add(float64(n))
	}
}

var recorderPool = sync.Pool{New: func() any { return new(recorder) }}

// recorder wraps a ResponseWriter to learn the status and body size.
type recorder struct {
	http.ResponseWriter
	status int
	n      int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.n += int64(n)
	return n, err
}

// ReadFrom keeps sendfile for file bodies.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{r.ResponseWriter}, src)
	}
	r.n += n
	return n, err
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Push implements http.Pusher when the wrapped writer does (HTTP/2).
func (r *recorder) Push(target string, opts *http.PushOptions) error {
	if p, ok := r.ResponseWriter.(http.Pusher); ok {
		return p.Push(target, opts)
	}
	return http.ErrNotSupported
}

// observe wraps h with panic recovery, trace events, metrics and the
// access log.
func (s *Server) observe(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.deps.Now()
		rec := recorderPool.Get().(*recorder)
		*rec = recorder{ResponseWriter: w}
		local := ""
		tr := s.deps.Trace
		if tr.Enabled() {
			if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
				local = a.String()
			}
			tr.Publish(trace.Event{From: r.RemoteAddr, To: local, Proto: trace.HTTPProto(r.Proto), Summary: r.Method + " " + r.RequestURI + " " + r.Proto + " Host: " + r.Host + HeaderSummary(r.Header, traceRequestHeaders), Bytes: int(max(r.ContentLength, 0))})
		}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.m.panics.Inc()
				s.log.Error("handler panic", "panic", fmt.Sprint(v), "method", r.Method, "uri", r.RequestURI)
				if rec.status == 0 {
					rec.Header().Del("Content-Encoding")
					rec.Header().Del("ETag")
					http.Error(rec, "500 internal server error", http.StatusInternalServerError)
				}
			}
			if rec.status == 0 {
				rec.status = http.StatusOK
			}
			s.m.request(r.Proto, r.Method, rec.status, s.deps.Now().Sub(start), rec.n)
			if tr.Enabled() {
				if local == "" { // tracing began during the request
					if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
						local = a.String()
					}
				}
				tr.Publish(trace.Event{From: local, To: r.RemoteAddr, Proto: trace.HTTPProto(r.Proto), Summary: fmt.Sprintf("%s %d %s", r.Proto, rec.status, http.StatusText(rec.status)) + HeaderSummary(rec.Header(), traceResponseHeaders), Bytes: int(rec.n)})
			}
			if s.access != nil {
				s.access.log(r, rec.status, rec.n, start)
			}
			*rec = recorder{}
			recorderPool.Put(rec)
		}()
		h.ServeHTTP(rec, r)
	})
}

// accessLog writes Common or Combined Log Format lines.
type accessLog struct {
	combined bool
	mu       sync.Mutex
	f        *os.File
	w        *bufio.Writer
	slog     *slog.Logger
}

func newAccessLog(format, file string, log *slog.Logger) (*accessLog, error) {
	a := &accessLog{combined: format == "combined", slog: log}
	if file != "" {
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("server: access log: %w", err)
		}
		a.f, a.w = f, bufio.NewWriter(f)
	}
	return a, nil
}

// accessFields are the request's parts of an access-log line.
type accessFields[S ~string | ~[]byte] struct {
	host, user, method, uri, referer, ua S
}

// appendDash appends s with backslashes and quotes escaped, or "-" when
// it is empty.
func appendDash[S ~string | ~[]byte](dst []byte, s S) []byte {
	if len(s) == 0 {
		return append(dst, '-')
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\\' || c == '"' {
			dst = append(dst, '\\', c)
		} else {
			dst = append(dst, c)
		}
	}
	return dst
}

// appendAccess appends one access-log line (without newline) in the
// Common Log Format, or the Combined one (adding Referer and User-Agent).
func appendAccess[S ~string | ~[]byte](dst []byte, f accessFields[S], proto string, status int, n int64, t time.Time, combined bool) []byte {
	dst = append(dst, f.host...)
	dst = append(dst, " - "...)
	dst = appendDash(dst, f.user)
	dst = append(dst, " ["...)
	dst = t.AppendFormat(dst, "02/Jan/2006:15:04:05 -0700")
	dst = append(dst, "] \""...)
	dst = append(dst, f.method...)
	dst = append(dst, ' ')
	dst = appendDash(dst, f.uri)
	dst = append(dst, ' ')
	dst = append(dst, proto...)
	dst = append(dst, "\" "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	if n > 0 {
		dst = strconv.AppendInt(dst, n, 10)
	} else {
		dst = append(dst, '-')
	}
	if combined {
		dst = append(dst, " \""...)
		dst = appendDash(dst, f.referer)
		dst = append(dst, "\" \""...)
		dst = appendDash(dst, f.ua)
		dst = append(dst, '"')
	}
	return dst
}

// FormatAccess formats one access-log line (without newline) in the Common
// Log Format, or the Combined one (adding Referer and User-Agent).
func FormatAccess(r *http.Request, status int, n int64, t time.Time, combined bool) string {
	return string(appendAccess(nil, accessOf(r), r.Proto, status, n, t, combined))
}

// accessOf returns r's parts of an access-log line.
func accessOf(r *http.Request) accessFields[string] {
	host := r.RemoteAddr
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	user := ""
	if u, _, ok := r.BasicAuth(); ok {
		user = u
	}
	return accessFields[string]{host, user, r.Method, r.RequestURI, r.Referer(), r.UserAgent()}
}

func (a *accessLog) log(r *http.Request, status int, n int64, t time.Time) {
	var buf [512]byte
	a.write(appendAccess(buf[:0], accessOf(r), r.Proto, status, n, t, a.combined))
}

// write writes one formatted line.
func (a *accessLog) write(line []byte) {
	if a.w == nil {
		a.slog.Info("access", "line", string(line))
		return
	}
	a.mu.Lock()
	a.w.Write(line)
	a.w.WriteByte('\n')
	if a.w.Buffered() > 32<<10 {
		a.w.Flush()
	}
	a.mu.Unlock()
}

func (a *accessLog) flush() {
	if a.w != nil {
		a.mu.Lock()
		a.w.Flush()
		a.mu.Unlock()
	}
}

func (a *accessLog) close() error {
	if a.f == nil {
		return nil
	}
	a.flush()
	return a.f.Close()
}

// The headers a trace summary shows: those the chapter's lessons are about
// (conditional GET, cookies, persistent connections).
var (
	traceRequestHeaders  = []string{"Connection", "If-Modified-Since", "If-None-Match", "Cookie"}
	traceResponseHeaders = []string{"Connection", "Last-Modified", "Set-Cookie"}
)

// HeaderSummary returns the named headers of h present in it as
// " Name: value" each, for a trace summary (each value cut to 80 bytes).
func HeaderSummary(h http.Header, names []string) string {
	var b strings.Builder
	for _, n := range names {
		for _, v := range h[n] {
			if len(v) > 80 {
				v = v[:80] + "..."
			}
			b.WriteString(" " + n + ": " + v)
		}
	}
	return b.String()
}
