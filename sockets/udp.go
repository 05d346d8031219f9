package sockets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/internal/transport"
)

// UDPConfig configures a UDPServer.
type UDPConfig struct {
	// Addr is the address to listen on, e.g. "127.0.0.1:12000"; port 0 picks one.
	Addr string `json:"addr"`
	// MaxDatagram is the largest datagram read; longer ones are truncated
	// by the kernel and dropped. Default 2048.
	MaxDatagram int `json:"max_datagram,omitempty"`
}

// UDPServer answers each datagram with its upper-cased payload, sent to the
// address the datagram came from. The read loop (recvmmsg batches on
// Linux) is internal/transport's PacketServer.
type UDPServer struct {
	cfg  UDPConfig
	deps service.Deps
	log  *slog.Logger
	m    *metrics
	srv  *transport.PacketServer

	mu   sync.Mutex
	conn *net.UDPConn
	once service.Once
}

// NewUDPServer returns a server for cfg; Start binds it.
func NewUDPServer(cfg UDPConfig, deps service.Deps) (*UDPServer, error) {
	if cfg.Addr == "" {
		return nil, errors.New("sockets: udp server needs an address")
	}
	if cfg.MaxDatagram <= 0 {
		cfg.MaxDatagram = 2048
	}
	deps = deps.Defaults()
	m, err := newMetrics(deps.Metrics, "udp")
	if err != nil {
		return nil, err
	}
	s := &UDPServer{cfg: cfg, deps: deps, log: deps.Logger.With("service", "udp-upper"), m: m}
	s.srv = transport.NewPacketServer(transport.PacketConfig{MaxDatagram: cfg.MaxDatagram, Logger: s.log},
		func() transport.PacketHandler { return transport.PacketHandlerFunc(s.serveBatch) })
	return s, nil
}

// Name implements service.Service.
func (s *UDPServer) Name() string { return "udp-upper " + s.cfg.Addr }

// Start binds the socket and starts serving.
func (s *UDPServer) Start(ctx context.Context) error {
	conn, err := transport.ListenConfig{}.ListenUDP(ctx, "udp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("sockets: udp listen: %w", err)
	}
	s.mu.Lock()
	s.conn = conn
	s.mu.Unlock()
	if err := s.srv.Start(conn); err != nil {
		conn.Close()
		return fmt.Errorf("sockets: %w", err)
	}
	s.log.Info("udp server listening", "addr", conn.LocalAddr().String())
	return nil
}

// serveBatch answers one batch of datagrams.
func (s *UDPServer) serveBatch(b *transport.Batch) {
	local := b.LocalString()
	for i := 0; i < b.Len(); i++ {
		from := b.From(i)
		if !from.IsValid() {
			continue
		}
		if b.Truncated(i) {
			s.m.refused.Inc()
			s.log.Debug("udp datagram too large, dropped", "remote", from.String(), "max", s.cfg.MaxDatagram)
			continue
		}
		s.m.received.Inc()
		in := b.Data(i)
		if s.deps.Trace.Enabled() {
			s.deps.Trace.Publish(trace.Event{From: from.String(), To: local, Proto: "udp", Summary: summary("datagram", in), Bytes: len(in)})
		}
		out := Upper(in)
		if len(out) == 0 {
			// An empty datagram gets an empty answer, written at once (a
			// batch reply must not be empty).
			if _, err := b.Conn().WriteToUDPAddrPort(out, from); err != nil {
				continue
			}
		} else {
			b.Reply(i, out)
		}
		s.m.sent.Inc()
		if s.deps.Trace.Enabled() {
			s.deps.Trace.Publish(trace.Event{From: local, To: from.String(), Proto: "udp", Summary: summary("reply", out), Bytes: len(out)})
		}
	}
}

// Addrs returns the bound address after Start.
func (s *UDPServer) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	return []net.Addr{s.conn.LocalAddr()}
}

// Shutdown stops reading, answers the datagrams in hand and closes the
// socket.
func (s *UDPServer) Shutdown(ctx context.Context) error {
	return s.once.Do(ctx, func(ctx context.Context) error {
		return s.srv.Shutdown(ctx)
	})
}

type metrics struct {
	received prometheus.Counter
	sent     prometheus.Counter
	refused  prometheus.Counter
	conns    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, proto string) (*metrics, error) {
	lbl := prometheus.Labels{"proto": proto}
	m := &metrics{
		received: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "sockets", Name: "messages_received_total", Help: "Lines or datagrams received, by transport.", ConstLabels: lbl}),
		sent:     prometheus.NewCounter(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "sockets", Name: "messages_sent_total", Help: "Upper-cased replies sent, by transport.", ConstLabels: lbl}),
		refused:  prometheus.NewCounter(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "sockets", Name: "refused_total", Help: "Messages or connections refused for exceeding a limit, by transport.", ConstLabels: lbl}),
		conns:    prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "applayer", Subsystem: "sockets", Name: "open_connections", Help: "Open connections, by transport.", ConstLabels: lbl}),
	}
	cs := []prometheus.Collector{m.received, m.sent, m.refused}
	if proto == "tcp" {
		cs = append(cs, m.conns)
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("sockets: metrics: %w", err)
		}
	}
	return m, nil
}
