package sockets

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/internal/transport"
)

// TCPConfig configures a TCPServer. Zero fields take the documented defaults.
type TCPConfig struct {
	// Addr is the address to listen on, e.g. "127.0.0.1:12000"; port 0 picks one.
	Addr string `json:"addr"`
	// ReadTimeout bounds how long a started line may take to arrive. Default 30s.
	ReadTimeout config.Duration `json:"read_timeout,omitempty"`
	// IdleTimeout closes a connection that sends nothing for this long. Default 2m.
	IdleTimeout config.Duration `json:"idle_timeout,omitempty"`
	// MaxLineBytes is the longest line accepted; a longer one gets
	// "ERROR line too long" and the connection is closed. Default 4096.
	MaxLineBytes int `json:"max_line_bytes,omitempty"`
	// MaxConns caps concurrent connections; more are accepted and closed at
	// once with "ERROR too many connections". Default 1024.
	MaxConns int `json:"max_conns,omitempty"`
}

func (c *TCPConfig) defaults() {
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = config.Duration(30 * time.Second)
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = config.Duration(2 * time.Minute)
	}
	if c.MaxLineBytes <= 0 {
		c.MaxLineBytes = 4096
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 1024
	}
}

// TCPServer is the textbook's TCP server: a welcoming socket, and one
// connection socket (and goroutine) per client. Each line a client sends is
// answered with the line upper-cased. The accept loop, the connection cap,
// panic recovery and shutdown are internal/transport's StreamServer.
type TCPServer struct {
	cfg  TCPConfig
	deps service.Deps
	log  *slog.Logger
	m    *metrics
	srv  *transport.StreamServer

	mu   sync.Mutex
	ln   net.Listener
	once service.Once
	// closing is set by Shutdown: connections served outside the stream
	// server (tests) are not registered any more.
	closing atomic.Bool
}

// NewTCPServer returns a server for cfg; Start binds it.
func NewTCPServer(cfg TCPConfig, deps service.Deps) (*TCPServer, error) {
	if cfg.Addr == "" {
		return nil, errors.New("sockets: tcp server needs an address")
	}
	cfg.defaults()
	deps = deps.Defaults()
	m, err := newMetrics(deps.Metrics, "tcp")
	if err != nil {
		return nil, err
	}
	s := &TCPServer{cfg: cfg, deps: deps, log: deps.Logger.With("service", "tcp-upper"), m: m}
	s.srv = transport.NewStreamServer(transport.StreamConfig{
		MaxConns: cfg.MaxConns,
		OnReject: func(c net.Conn, _ transport.RejectReason) {
			s.m.refused.Inc()
			io.WriteString(c, "ERROR too many connections\n")
		},
		OnPanic: func(c net.Conn, _ any) { io.WriteString(c, "ERROR internal error\n") },
		Logger:  s.log,
	}, transport.HandlerFunc(func(_ context.Context, c *transport.Conn) {
		if s.track(c) {
			s.handle(c)
		}
	}))
	return s, nil
}

// Name implements service.Service.
func (s *TCPServer) Name() string { return "tcp-upper " + s.cfg.Addr }

// Start binds the welcoming socket and starts accepting.
func (s *TCPServer) Start(ctx context.Context) error {
	ln, err := transport.ListenConfig{}.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("sockets: tcp listen: %w", err)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	if err := s.srv.Start(ln); err != nil {
		return fmt.Errorf("sockets: %w", err)
	}
	s.log.Info("tcp server listening", "addr", ln.Addr().String())
	return nil
}

// track counts c as open; it reports false when the server is closing.
func (s *TCPServer) track(c net.Conn) bool {
	if s.closing.Load() {
		return false
	}
	s.m.conns.Inc()
	return true
}

func (s *TCPServer) untrack(net.Conn) { s.m.conns.Dec() }

// idleMarker is the transport's connection state: idle while waiting for
// a line (Shutdown may close it), busy while reading one.
type idleMarker interface {
	SetIdle() bool
	SetBusy()
}

func (s *TCPServer) handle(c net.Conn) {
	defer s.untrack(c)
	remote, local := c.RemoteAddr().String(), c.LocalAddr().String()
	log := s.log.With("remote", remote)
	if s.deps.Trace.Enabled() {
		s.deps.Trace.Publish(trace.Event{Type: trace.ConnOpen, From: remote, To: local, Proto: "tcp", Summary: "connection opened"})
	}
	r := bufio.NewReaderSize(c, 512)
	w := bufio.NewWriter(c)
	for {
		line, err := s.readLine(c, r)
		if len(line) > 0 {
			s.m.received.Inc()
			if s.deps.Trace.Enabled() {
				s.deps.Trace.Publish(trace.Event{From: remote, To: local, Proto: "tcp", Summary: summary("line", line), Bytes: len(line)})
			}
			out := Upper(line)
			c.SetWriteDeadline(time.Now().Add(s.cfg.ReadTimeout.D()))
			w.Write(out)
			if r.Buffered() == 0 || err != nil {
				if ferr := w.Flush(); ferr != nil {
					log.Debug("tcp write", "err", ferr)
					return
				}
			}
			s.m.sent.Inc()
			if s.deps.Trace.Enabled() {
				s.deps.Trace.Publish(trace.Event{From: local, To: remote, Proto: "tcp", Summary: summary("reply", out), Bytes: len(out)})
			}
		}
		if err != nil {
			w.Flush()
			switch {
			case errors.Is(err, errLineTooLong):
				s.m.refused.Inc()
				io.WriteString(c, "ERROR line too long\n")
				log.Debug("line too long, closing", "max", s.cfg.MaxLineBytes)
			case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
			case isTimeout(err):
				log.Debug("connection timed out")
			default:
				log.Debug("tcp read", "err", err)
			}
			if s.deps.Trace.Enabled() {
				s.deps.Trace.Publish(trace.Event{Type: trace.ConnClose, From: remote, To: local, Proto: "tcp", Summary: "connection closed"})
			}
			return
		}
	}
}

var errLineTooLong = errors.New("sockets: line too long")

// readLine reads one line (with its newline, if any). It waits up to
// IdleTimeout for the first byte and ReadTimeout for the rest of the line.
func (s *TCPServer) readLine(c net.Conn, r *bufio.Reader) ([]byte, error) {
	im, _ := c.(idleMarker)
	if r.Buffered() == 0 {
		c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout.D()))
		if im != nil && !im.SetIdle() {
			return nil, net.ErrClosed // shutting down
		}
		if _, err := r.Peek(1); err != nil {
			return nil, err
		}
	}
	if im != nil {
		im.SetBusy()
	}
	c.SetReadDeadline(time.Now().Add(s.cfg.ReadTimeout.D()))
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > s.cfg.MaxLineBytes {
			return nil, errLineTooLong
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return line, err
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Addrs returns the bound address after Start.
func (s *TCPServer) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return []net.Addr{s.ln.Addr()}
}

// Shutdown closes the welcoming socket and the idle connections, lets
// connections finish the line they are on, and closes every connection
// when ctx ends.
func (s *TCPServer) Shutdown(ctx context.Context) error {
	return s.once.Do(ctx, func(ctx context.Context) error {
		s.closing.Store(true)
		return s.srv.Shutdown(ctx)
	})
}
