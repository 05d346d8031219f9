// Package h2 is applayer's HTTP/2 server connection loop (RFC 9113) on
// golang.org/x/net/http2's Framer and hpack codecs: streams, connection and
// stream flow control with batched WINDOW_UPDATEs, SETTINGS, PING, GOAWAY
// with graceful shutdown, limits against rapid reset (CVE-2023-44487) and
// CONTINUATION floods, header list size limits, RFC 9218 priority signals
// (and RFC 7540 priorities accepted), server push, h2c with prior
// knowledge and Upgrade.
//
// Requests a Fast handler answers from memory (static files) are served on
// the connection's own goroutine, their bodies written straight as DATA
// frames sized to the peer's maximum frame size; every other request runs
// an http.Handler on a goroutine of its own, with a ResponseWriter that
// flushes, sends trailers and pushes.
//
// One goroutine per connection reads frames and answers; handler
// goroutines write their frames under the connection's write lock, waiting
// for flow-control credit, which the reading goroutine hands out.
package h2

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2/hpack"
)

// Defaults for Config's zero fields.
const (
	DefaultMaxConcurrentStreams = 128
	DefaultMaxHeaderListSize    = 16 << 10
	DefaultStreamWindow         = 256 << 10
	DefaultConnWindow           = 1 << 20
	DefaultMaxResets            = 200 // burst of peer resets of live streams
	DefaultResetRate            = 100 // per second, refilling the burst
	DefaultMaxContinuations     = 32
)

// Config configures a Server. Zero fields take the defaults.
type Config struct {
	// MaxConcurrentStreams is advertised; streams beyond it (counting
	// handlers still running for streams the peer reset) are refused.
	MaxConcurrentStreams uint32
	// MaxHeaderListSize bounds a request's decoded header list
	// (RFC 9113's size: names, values, 32 octets each); larger ones get
	// 431 and a header block longer than four times this ends the
	// connection.
	MaxHeaderListSize uint32
	// StreamWindow and ConnWindow are the receive windows advertised
	// for each stream and for the connection: the most request body the
	// server buffers.
	StreamWindow, ConnWindow uint32
	// MaxResets (a burst) and ResetRate (per second) bound the peer's
	// RST_STREAMs of streams still being answered, and the streams the
	// server refuses; beyond them the connection ends with GOAWAY
	// ENHANCE_YOUR_CALM (rapid reset, CVE-2023-44487).
	MaxResets, ResetRate int
	// MaxContinuations bounds the CONTINUATION frames of one header
	// block (CONTINUATION floods); beyond it, GOAWAY ENHANCE_YOUR_CALM.
	MaxContinuations int
	// ReadHeaderTimeout bounds the client preface and first SETTINGS.
	// Default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a connection with no stream open this long
	// (GOAWAY first) and bounds every write; a peer that sends nothing
	// this long while answers wait for its flow-control credit is cut
	// off too. Default 60s.
	IdleTimeout time.Duration
	// ReadTimeout bounds reading a request body: past it the handler's
	// reads fail. 0: none.
	ReadTimeout time.Duration
	// Logger receives debug notes on connection errors.
	Logger *slog.Logger
	// Observe, when set, is told when a connection opens and closes.
	Observe func(c net.Conn, open bool)
}

func (c *Config) defaults() {
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if c.MaxHeaderListSize == 0 {
		c.MaxHeaderListSize = DefaultMaxHeaderListSize
	}
	if c.StreamWindow == 0 {
		c.StreamWindow = DefaultStreamWindow
	}
	if c.ConnWindow == 0 {
		c.ConnWindow = DefaultConnWindow
	}
	c.StreamWindow = min(c.StreamWindow, 1<<31-1)
	c.ConnWindow = min(max(c.ConnWindow, 65535), 1<<31-1)
	if c.MaxResets <= 0 {
		c.MaxResets = DefaultMaxResets
	}
	if c.ResetRate <= 0 {
		c.ResetRate = DefaultResetRate
	}
	if c.MaxContinuations <= 0 {
		c.MaxContinuations = DefaultMaxContinuations
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Request is a request as the Fast handler sees it: valid only during
// the call.
type Request struct {
	Method, Scheme, Authority, Path string
	// Fields are the regular header fields, names in lower case.
	Fields []hpack.HeaderField
	// Remote and Local are the connection's addresses.
	Remote, Local net.Addr
	// Pushed says the request is a server push's.
	Pushed bool
}

// Response is the Fast handler's answer.
type Response struct {
	Status int
	// Fields are the response's header fields, names in lower case
	// (Date is added).
	Fields []hpack.HeaderField
	// Block, when set, is a header block fragment of AppendLiteral fields
	// sent after :status and before Fields: precomputed per file, it
	// spares the per-answer HPACK encoding.
	Block []byte
	// Body is sent after the header; it must not change afterwards (it is
	// written from where it is, possibly later, as flow control allows).
	Body []byte
}

// Fast answers requests from memory on the connection's goroutine.
type Fast interface {
	// ServeH2 fills w and returns true, or returns false to have the
	// request served by the http.Handler. Only body-less GET and HEAD
	// requests are offered.
	ServeH2(r *Request, w *Response) bool
}

// Server serves HTTP/2 connections.
type Server struct {
	cfg  Config
	h    http.Handler
	fast Fast

	mu       sync.Mutex
	conns    map[*conn]struct{}
	shutdown bool
	wg       sync.WaitGroup
}

// New returns a server running h for requests fast (which may be nil)
// does not answer.
func New(cfg Config, h http.Handler, fast Fast) *Server {
	cfg.defaults()
	return &Server{cfg: cfg, h: h, fast: fast, conns: map[*conn]struct{}{}}
}

// ErrServerClosed is returned by ServeConn after Shutdown.
var ErrServerClosed = errors.New("h2: server closed")

// ServeConn serves an HTTP/2 connection whose client preface has not
// been read yet, until it ends; it closes nc. tls says it came over TLS
// (the scheme handlers see).
func (s *Server) ServeConn(nc net.Conn, tls bool) error {
	c := s.newConn(nc, tls)
	if c == nil {
		nc.Close()
		return ErrServerClosed
	}
	return c.serve(nil)
}

func (s *Server) newConn(nc net.Conn, tls bool) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown {
		return nil
	}
	c := newConn(s, nc, tls)
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return c
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// Shutdown sends every connection GOAWAY, lets the streams in flight
// finish within ctx, then closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.goAwayGraceful()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Close closes every connection at once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.shutdown = true
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	return nil
}

// AppendLiteral appends a header field as an HPACK literal without
// indexing (RFC 7541 6.2.2; strings not Huffman-coded) to a Response.Block:
// such a block means the same whatever the connection's dynamic table,
// so it can be built once and sent on every connection.
func AppendLiteral(dst []byte, name, value string) []byte {
	if i, ok := staticNames[name]; ok {
		dst = appendInt(dst, 4, 0x00, uint64(i))
	} else {
		dst = append(dst, 0x00)
		dst = appendInt(dst, 7, 0x00, uint64(len(name)))
		dst = append(dst, name...)
	}
	dst = appendInt(dst, 7, 0x00, uint64(len(value)))
	return append(dst, value...)
}

// appendInt appends an HPACK integer with an n-bit prefix (RFC 7541
// 5.1), first byte's other bits from first.
func appendInt(dst []byte, n uint, first byte, v uint64) []byte {
	max := uint64(1)<<n - 1
	if v < max {
		return append(dst, first|byte(v))
	}
	dst = append(dst, first|byte(max))
	for v -= max; v >= 128; v >>= 7 {
		dst = append(dst, byte(v&0x7f|0x80))
	}
	return append(dst, byte(v))
}

// staticNames are the HPACK static table's indices of the response field
// names the Fast answers use.
var staticNames = map[string]int{
	"accept-ranges": 18, "age": 21, "cache-control": 24, "content-encoding": 26, "content-length": 28,
	"content-range": 30, "content-type": 31, "date": 33, "etag": 34, "expires": 36, "last-modified": 44,
	"location": 46, "server": 54, "vary": 59,
}
