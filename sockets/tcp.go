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
// answered with the line upper-cased.
type TCPServer struct {
	cfg  TCPConfig
	deps service.Deps
	log  *slog.Logger
	m    *metrics

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
	once  service.Once
	quit  bool
	// closing is set by Shutdown before it wakes idle readers; readers
	// check it after setting their own deadline, so none sleeps through it.
	closing atomic.Bool
	// stop is closed by Shutdown, to cut an accept back-off short.
	stop chan struct{}
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
	return &TCPServer{cfg: cfg, deps: deps, log: deps.Logger.With("service", "tcp-upper"), m: m, conns: map[net.Conn]struct{}{}, stop: make(chan struct{})}, nil
}

// Name implements service.Service.
func (s *TCPServer) Name() string { return "tcp-upper " + s.cfg.Addr }

// Start binds the welcoming socket and starts accepting.
func (s *TCPServer) Start(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("sockets: tcp listen: %w", err)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	s.wg.Add(1)
	go s.accept(ln)
	s.log.Info("tcp server listening", "addr", ln.Addr().String())
	return nil
}

func (s *TCPServer) accept(ln net.Listener) {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, as net/http does.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff *= 2; backoff > time.Second {
				backoff = time.Second
			}
			s.log.Warn("tcp accept", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-s.stop:
				return
			}
			continue
		}
		backoff = 0
		if !s.track(c) {
			s.m.refused.Inc()
			c.SetWriteDeadline(time.Now().Add(time.Second))
			io.WriteString(c, "ERROR too many connections\n")
			c.Close()
			continue
		}
		go s.handle(c)
	}
}

// track registers c; it reports false when the server is full or closing.
func (s *TCPServer) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.quit || len(s.conns) >= s.cfg.MaxConns {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.m.conns.Inc()
	return true
}

func (s *TCPServer) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.m.conns.Dec()
	s.wg.Done()
}

func (s *TCPServer) handle(c net.Conn) {
	defer s.untrack(c)
	defer c.Close()
	remote, local := c.RemoteAddr().String(), c.LocalAddr().String()
	log := s.log.With("remote", remote)
	defer func() {
		if r := recover(); r != nil {
			log.Error("panic in connection handler", "panic", r)
			c.SetWriteDeadline(time.Now().Add(time.Second))
			io.WriteString(c, "ERROR internal error\n")
		}
	}()
	if s.deps.Trace.Enabled() {
		s.deps.Trace.Publish(trace.Event{From: remote, To: local, Proto: "tcp", Summary: "connection opened"})
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
				s.deps.Trace.Publish(trace.Event{From: local, To: remote, Proto: "tcp", Summary: "connection closed"})
			}
			return
		}
	}
}

var errLineTooLong = errors.New("sockets: line too long")

// readLine reads one line (with its newline, if any). It waits up to
// IdleTimeout for the first byte and ReadTimeout for the rest of the line.
func (s *TCPServer) readLine(c net.Conn, r *bufio.Reader) ([]byte, error) {
	if r.Buffered() == 0 {
		c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout.D()))
		if s.closing.Load() {
			return nil, net.ErrClosed
		}
		if _, err := r.Peek(1); err != nil {
			return nil, err
		}
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

// Shutdown closes the welcoming socket, lets connections finish the line
// they are on, and closes every connection when ctx ends.
func (s *TCPServer) Shutdown(ctx context.Context) error {
	return s.once.Do(ctx, func(ctx context.Context) error {
		s.closing.Store(true)
		close(s.stop)
		s.mu.Lock()
		s.quit = true
		ln := s.ln
		// Idle readers are woken at once; a line in progress gets a moment.
		for c := range s.conns {
			c.SetReadDeadline(time.Now())
		}
		s.mu.Unlock()
		if ln != nil {
			ln.Close()
		}
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			s.mu.Lock()
			for c := range s.conns {
				c.Close()
			}
			s.mu.Unlock()
			<-done
			return ctx.Err()
		}
	})
}
