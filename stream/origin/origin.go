// Package origin is the DASH origin: an http.Handler serving a directory
// of MPDs and fMP4 segments with the headers players and caches need —
// DASH content types, byte ranges, strong validators (ETag, Last-Modified,
// conditional requests), long-lived caching for segments (immutable: a
// segment's name never changes meaning) and short-lived for manifests, and
// CORS so browser players on other origins may fetch them. It is a plain
// handler, so it runs inside web/server (HTTP/1.1, h2, h3) and behind
// caches and CDN edges.
package origin

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/web/server"
)

// Config configures an Origin.
type Config struct {
	// Dir is the directory served (manifests and segments).
	Dir string
	// SegmentMaxAge is the segments' Cache-Control max-age. Default one year.
	SegmentMaxAge time.Duration
	// ManifestMaxAge is the manifests' max-age. Default 2s.
	ManifestMaxAge time.Duration
	// AllowOrigin is the CORS Access-Control-Allow-Origin value. Default "*".
	AllowOrigin string
}

// Origin serves a packaged directory.
type Origin struct {
	cfg    Config
	root   *os.Root
	log    *slog.Logger
	trace  *trace.Bus
	reqs   *prometheus.CounterVec
	bytes  *prometheus.CounterVec
	ranges prometheus.Counter
}

// New opens cfg.Dir. Close releases it.
func New(cfg Config, deps service.Deps) (*Origin, error) {
	deps = deps.Defaults()
	if cfg.Dir == "" {
		return nil, errors.New("origin: no directory")
	}
	if cfg.SegmentMaxAge == 0 {
		cfg.SegmentMaxAge = 365 * 24 * time.Hour
	}
	if cfg.ManifestMaxAge == 0 {
		cfg.ManifestMaxAge = 2 * time.Second
	}
	if cfg.AllowOrigin == "" {
		cfg.AllowOrigin = "*"
	}
	root, err := os.OpenRoot(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("origin: %w", err)
	}
	o := &Origin{cfg: cfg, root: root, log: deps.Logger.With("service", "stream-origin"), trace: deps.Trace,
		reqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "applayer_stream_origin_requests_total", Help: "Requests answered by the DASH origin, by object kind and status code.",
		}, []string{"kind", "code"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "applayer_stream_origin_sent_bytes_total", Help: "Body bytes the DASH origin sent, by object kind.",
		}, []string{"kind"}),
		ranges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "applayer_stream_origin_range_requests_total", Help: "Requests with a Range header the DASH origin answered.",
		}),
	}
	for _, c := range []prometheus.Collector{o.reqs, o.bytes, o.ranges} {
		if err := deps.Metrics.Register(c); err != nil {
			root.Close()
			return nil, fmt.Errorf("origin: metrics: %w", err)
		}
	}
	return o, nil
}

// Close releases the directory.
func (o *Origin) Close() error { return o.root.Close() }

// Kind classifies a path: "manifest", "init", "segment" or "other".
func Kind(p string) string {
	base := path.Base(p)
	switch {
	case strings.HasSuffix(base, ".mpd"):
		return "manifest"
	case strings.HasPrefix(base, "init") && (strings.HasSuffix(base, ".m4s") || strings.HasSuffix(base, ".mp4")):
		return "init"
	case strings.HasSuffix(base, ".m4s"), strings.HasSuffix(base, ".m4v"), strings.HasSuffix(base, ".m4a"):
		return "segment"
	}
	return "other"
}

// ContentType is the type served for a path.
func ContentType(p string) string {
	switch ext := path.Ext(p); ext {
	case ".mpd":
		return "application/dash+xml"
	case ".m4s":
		if Kind(p) == "init" {
			return "video/mp4"
		}
		return "video/iso.segment"
	case ".mp4", ".m4v":
		return "video/mp4"
	case ".m4a":
		return "audio/mp4"
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	}
	return "application/octet-stream"
}

type countingWriter struct {
	http.ResponseWriter
	code int
	n    int64
}

func (c *countingWriter) WriteHeader(code int) { c.code = code; c.ResponseWriter.WriteHeader(code) }
func (c *countingWriter) Write(p []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// ServeHTTP serves GET, HEAD and CORS preflight OPTIONS.
func (o *Origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", o.cfg.AllowOrigin)
	h.Set("Access-Control-Expose-Headers", "Content-Length, Content-Range, ETag, Last-Modified, Date")
	if o.cfg.AllowOrigin != "*" {
		h.Add("Vary", "Origin")
	}
	kind := Kind(r.URL.Path)
	cw := &countingWriter{ResponseWriter: w}
	defer func() {
		code := cw.code
		if code == 0 {
			code = http.StatusOK
		}
		o.reqs.WithLabelValues(kind, fmt.Sprint(code)).Inc()
		o.bytes.WithLabelValues(kind).Add(float64(cw.n))
		if r.Header.Get("Range") != "" {
			o.ranges.Inc()
		}
		if o.trace.Enabled() {
			summary := fmt.Sprintf("%s %s -> %d", r.Method, r.URL.Path, code)
			if rg := r.Header.Get("Range"); rg != "" {
				summary += " (" + rg + ")"
			}
			to := r.Host
			if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
				to = a.String() // the trace schema's host:port
			}
			o.trace.Publish(trace.Event{From: r.RemoteAddr, To: to, Proto: "dash/" + kind, Summary: summary, Bytes: int(cw.n)})
		}
	}()
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Range, If-None-Match, If-Modified-Since, If-Range")
		h.Set("Access-Control-Max-Age", "86400")
		cw.WriteHeader(http.StatusNoContent)
		return
	default:
		h.Set("Allow", "GET, HEAD, OPTIONS")
		http.Error(cw, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if name == "" {
		name = "."
	}
	f, err := o.root.Open(name)
	if err != nil {
		// Missing, unreadable, or outside the directory (os.Root refuses
		// to leave it): all the same to the client.
		o.log.Debug("open", "path", name, "err", err)
		http.Error(cw, "404 page not found", http.StatusNotFound)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.Error(cw, "404 page not found", http.StatusNotFound)
		return
	}
	h.Set("Content-Type", ContentType(name))
	h.Set("ETag", server.ETag(fi))
	h.Set("Accept-Ranges", "bytes")
	switch kind {
	case "manifest":
		h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(o.cfg.ManifestMaxAge.Seconds())))
	case "init", "segment":
		h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d, immutable", int(o.cfg.SegmentMaxAge.Seconds())))
	default:
		h.Set("Cache-Control", "public, max-age=60")
	}
	// ServeContent answers ranges (206, multipart, 416) and the
	// conditionals (If-None-Match, If-Modified-Since, If-Range) from the
	// ETag and modification time set here.
	server.ServeContent(cw, r, name, fi.ModTime(), f)
}
