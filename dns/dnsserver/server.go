package dnsserver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/internal/transport"
)

// Handler answers DNS queries at the wire level.
//
// ServeDNS returns the reply to req, packed (into out when it fits: out
// is a buffer of the server's, empty with room for a UDP reply, that
// stays the caller's until the reply is sent), or nil for no reply now:
// silence, a reply sent later (Request.Go, over UDP) or messages
// written on Request.Stream (over TCP). It runs on the reading goroutine:
// a cache hit should be answered without allocating. A reply larger than
// req.MaxSize over UDP is replaced by its truncated form (TC); a panic is
// recovered and answered with SERVFAIL.
type Handler interface {
	ServeDNS(req *Request, out []byte) []byte
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(req *Request, out []byte) []byte

// ServeDNS calls f.
func (f HandlerFunc) ServeDNS(req *Request, out []byte) []byte { return f(req, out) }

// Config configures a Server. Zero fields take the documented defaults.
type Config struct {
	// Addr is host:port; port 0 picks one (the same for UDP and TCP).
	Addr string
	// Network is "udp+tcp" (default), "udp" or "tcp".
	Network string
	// UDPSockets is how many SO_REUSEPORT UDP sockets share the address,
	// one reader each (the kernel spreads clients over them). Default 1.
	UDPSockets int
	// UDPReaders is how many goroutines read each UDP socket. Default 1.
	UDPReaders int
	// BlockingReads: see transport.PacketConfig (Linux, cheap handlers).
	BlockingReads bool
	// MaxUDPSize caps UDP replies whatever the client's EDNS buffer
	// says. 0: the client's size alone.
	MaxUDPSize int
	// RecursionAvailable sets RA in the replies the server makes itself
	// (SERVFAIL after a panic): a recursive server's.
	RecursionAvailable bool
	// EDNSSize is the buffer size in the OPT record of those replies.
	// Default 1232.
	EDNSSize uint16

	// MaxTCPConns caps client TCP connections (0: none). When full, the
	// connection idle longest is closed for the new one if DropIdle is
	// set, else the new one is closed.
	MaxTCPConns int
	DropIdle    bool
	// MaxTCPConnsPerClient caps the connections of one client address
	// (0: none); more are closed at once.
	MaxTCPConnsPerClient int
	// IdleTimeout is how long a TCP connection may wait for its next
	// query; QueryTimeout how long the rest of a query, once its first
	// byte came, and the writing of its answer may take.
	IdleTimeout  time.Duration
	QueryTimeout time.Duration
	// MaxTCPQueries closes a connection after this many queries (0: no
	// limit).
	MaxTCPQueries int
	// Refuse, when set, is the TCP access check: a refused client is
	// closed at once without a reply and without taking a slot.
	Refuse func(netip.AddrPort) bool
	// TSIGSecrets maps TSIG key names to their base64 secrets, for
	// Request.Stream over TCP (TsigStatus, signed WriteMsg).
	TSIGSecrets map[string]string

	// Now reads the clock for Request.Now. Default time.Now.
	Now func() time.Time
	// Logger gets panics (Error) and I/O errors (Debug).
	Logger *slog.Logger
	// Trace, when enabled, gets every query and reply (Summary).
	Trace *trace.Bus
	// OnPanic is told of each panic in the handler (for a metric).
	OnPanic func(v any)
	// Observe is told of the TCP server's events (transport.Event).
	Observe func(transport.Event)
}

// Server serves a Handler over UDP and TCP on internal/transport.
type Server struct {
	cfg Config
	h   Handler
	log *slog.Logger

	mu      sync.Mutex
	packets *transport.PacketServer
	streams *transport.StreamServer
	tcpLn   net.Listener
	udp     []*net.UDPConn
	local   string
	started bool
}

// New returns a server of h for cfg; Start binds it. Respond works
// without Start.
func New(cfg Config, h Handler) *Server {
	if cfg.Network == "" {
		cfg.Network = "udp+tcp"
	}
	if cfg.UDPSockets <= 0 {
		cfg.UDPSockets = 1
	}
	if cfg.EDNSSize == 0 {
		cfg.EDNSSize = 1232
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{cfg: cfg, h: h, log: cfg.Logger}
}

// Start binds TCP (plainly, so that another process on the address makes
// it fail) and then the UDP sockets on the same port, and serves.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("dnsserver: already started")
	}
	wantTCP, wantUDP := strings.Contains(s.cfg.Network, "tcp"), strings.Contains(s.cfg.Network, "udp")
	_, port, err := net.SplitHostPort(s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("dnsserver: %w", err)
	}
	for try := 0; ; try++ {
		err = s.bind(ctx, wantTCP, wantUDP)
		// With port 0 the TCP port may be taken for UDP: pick another.
		if err == nil || port != "0" || !errors.Is(err, syscall.EADDRINUSE) || try == 20 {
			break
		}
	}
	if err != nil {
		return err
	}
	if wantUDP {
		s.packets = transport.NewPacketServer(transport.PacketConfig{
			// Datagrams over 8 KiB (transport's default buffer) are cut
			// and answered FORMERR: no query is that large.
			Readers: s.cfg.UDPReaders, BlockingReads: s.cfg.BlockingReads, Logger: s.log,
			Observe: func(e transport.Event) {
				if e.Kind == transport.EventPanic && s.cfg.OnPanic != nil {
					s.cfg.OnPanic(e.Panic)
				}
			},
		}, func() transport.PacketHandler { return &packetHandler{s: s} })
		if err := s.packets.Start(s.udp...); err != nil {
			s.closeListeners()
			return fmt.Errorf("dnsserver: %w", err)
		}
	}
	if wantTCP {
		s.streams = transport.NewStreamServer(transport.StreamConfig{
			MaxConns: s.cfg.MaxTCPConns, MaxConnsPerIP: s.cfg.MaxTCPConnsPerClient, DropIdleWhenFull: s.cfg.DropIdle,
			IdleTimeout: s.cfg.IdleTimeout, ReadTimeout: s.cfg.QueryTimeout,
			Refuse:  s.cfg.Refuse,
			OnPanic: func(net.Conn, any) {},
			Observe: func(e transport.Event) {
				if e.Kind == transport.EventPanic && s.cfg.OnPanic != nil {
					s.cfg.OnPanic(e.Panic)
				}
				if s.cfg.Observe != nil {
					s.cfg.Observe(e)
				}
			},
			Logger: s.log,
		}, transport.HandlerFunc(s.serveConn))
		if err := s.streams.Start(s.tcpLn); err != nil {
			s.closeListeners()
			return fmt.Errorf("dnsserver: %w", err)
		}
	}
	s.started = true
	return nil
}

func (s *Server) bind(ctx context.Context, wantTCP, wantUDP bool) error {
	addr := s.cfg.Addr
	if wantTCP {
		ln, err := transport.ListenConfig{}.Listen(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("dnsserver: tcp: %w", err)
		}
		s.tcpLn, addr = ln, ln.Addr().String()
	}
	if wantUDP {
		conns, err := transport.ListenUDPGroup(ctx, "udp", addr, s.cfg.UDPSockets)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("dnsserver: udp: %w", err)
		}
		for _, c := range conns {
			if err := noPMTU(c); err != nil {
				s.log.Debug("dnsserver: PMTUDISC_OMIT not set", "addr", c.LocalAddr().String(), "err", err)
			}
		}
		s.udp, addr = conns, conns[0].LocalAddr().String()
	}
	s.local = addr
	return nil
}

func (s *Server) closeListeners() {
	for _, c := range s.udp {
		c.Close()
	}
	s.udp = nil
	if s.tcpLn != nil {
		s.tcpLn.Close()
		s.tcpLn = nil
	}
}

// Addrs returns the bound addresses after Start: TCP first, then UDP.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Addr
	if s.tcpLn != nil {
		out = append(out, s.tcpLn.Addr())
	}
	if len(s.udp) > 0 {
		out = append(out, s.udp[0].LocalAddr())
	}
	return out
}

// Local returns the bound address ("" before Start).
func (s *Server) Local() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.local
}

// TCPConns returns the client TCP connections open.
func (s *Server) TCPConns() int {
	s.mu.Lock()
	st := s.streams
	s.mu.Unlock()
	if st == nil {
		return 0
	}
	return st.Conns()
}

// Shutdown stops reading, answers what it holds, and waits for the TCP
// connections to finish their queries (closing the idle ones).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	packets, streams := s.packets, s.streams
	s.mu.Unlock()
	var errs []error
	if streams != nil {
		errs = append(errs, streams.Shutdown(ctx))
	}
	if packets != nil {
		errs = append(errs, packets.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// Respond answers one request with the server's rules: the query and the
// reply traced, a panic answered with SERVFAIL, a UDP reply larger than
// the client takes truncated. Servers call it for every request; it is
// public for handlers' own tests and fuzz targets.
func (s *Server) Respond(req *Request, out []byte) []byte {
	req.srv = s
	if s.cfg.Trace.Enabled() {
		s.cfg.Trace.Publish(trace.Event{From: req.From.String(), To: s.localOf(req), Proto: "dns/" + req.Proto.String(), Summary: WireSummary(req.Wire), Bytes: len(req.Wire)})
	}
	return s.answer(req, out, s.h.ServeDNS)
}

// answer runs serve on req with the rules of Respond but the query's
// trace.
func (s *Server) answer(req *Request, out []byte, serve func(*Request, []byte) []byte) (reply []byte) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("panic answering query", "panic", v, "remote", req.From.String(), "stack", string(debug.Stack()))
			if s.cfg.OnPanic != nil {
				s.cfg.OnPanic(v)
			}
			reply = ErrorReply(req, dns.RcodeServerFailure, s.cfg.RecursionAvailable, s.cfg.EDNSSize, out)
			if reply != nil {
				s.traceReply(req, reply)
			}
		}
	}()
	reply = serve(req, out)
	if req.Proto == UDP && len(reply) > dns.MinMsgSize && len(reply) > req.MaxSize() {
		reply = Truncate(reply, reply)
	}
	if reply != nil {
		s.traceReply(req, reply)
	}
	return reply
}

func (s *Server) localOf(req *Request) string {
	if req.Local != "" {
		return req.Local
	}
	return s.local
}

func (s *Server) traceReply(req *Request, reply []byte) {
	if !s.cfg.Trace.Enabled() {
		return
	}
	s.cfg.Trace.Publish(trace.Event{From: s.localOf(req), To: req.From.String(), Proto: "dns/" + req.Proto.String(), Summary: WireSummary(reply), Bytes: len(reply)})
}

// TraceEvent publishes e when tracing is on (for handlers' own events,
// such as a zone transfer's summary).
func (s *Server) TraceEvent(e trace.Event) {
	if s.cfg.Trace.Enabled() {
		s.cfg.Trace.Publish(e)
	}
}

// packetHandler serves one UDP reader's batches: one Request and one
// reply buffer per datagram of a batch, reused.
type packetHandler struct {
	s    *Server
	req  Request
	outs [][]byte
}

func (h *packetHandler) ServeBatch(b *transport.Batch) {
	n := b.Len()
	if len(h.outs) < n {
		for len(h.outs) < n {
			h.outs = append(h.outs, make([]byte, 0, 4096))
		}
	}
	now := h.s.cfg.Now()
	h.req.srv, h.req.conn, h.req.Local, h.req.MaxUDP = h.s, b.Conn(), b.LocalString(), h.s.cfg.MaxUDPSize
	for i := 0; i < n; i++ {
		from := b.From(i)
		if !from.IsValid() {
			continue
		}
		d := b.Data(i)
		if b.Truncated(i) {
			// No query is this big: the header alone says FORMERR.
			if len(d) >= 12 && d[2]&0x80 == 0 {
				h.outs[i] = HeaderReply(d[:12], dns.RcodeFormatError, h.outs[i])
				b.Reply(i, h.outs[i])
			}
			continue
		}
		h.req.reset()
		h.req.Wire, h.req.From, h.req.Proto, h.req.Now = d, from, UDP, now
		reply := h.s.Respond(&h.req, h.outs[i][:0])
		if len(reply) > 0 {
			h.outs[i] = reply[:0]
			b.Reply(i, reply)
		}
	}
}

// serveConn answers the queries of one TCP connection, in order, each
// framed by its two-byte length (RFC 1035 4.2.2, RFC 7766).
func (s *Server) serveConn(_ context.Context, c *transport.Conn) {
	w := &streamWriter{c: c, secrets: s.cfg.TSIGSecrets}
	req := Request{srv: s, Local: c.LocalAddr().String()}
	out := make([]byte, 0, 4096)
	var frame []byte
	var l [2]byte
	for n := 0; s.cfg.MaxTCPQueries <= 0 || n < s.cfg.MaxTCPQueries; n++ {
		if !c.SetIdle() {
			return
		}
		if _, err := io.ReadFull(c, l[:1]); err != nil {
			return
		}
		c.SetBusy()
		if _, err := io.ReadFull(c, l[1:]); err != nil {
			return
		}
		buf := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		if d := s.cfg.QueryTimeout; d > 0 {
			c.SetWriteDeadline(time.Now().Add(d))
		}
		req.reset()
		req.Wire, req.From, req.Proto, req.Now, req.Stream = buf, c.RemoteAddrPort(), TCP, s.cfg.Now(), w
		w.begin(&req)
		reply := s.Respond(&req, out[:0])
		if reply == nil {
			if w.wrote {
				continue // a handler that wrote its answer on the stream
			}
			return
		}
		frame = append(frame[:0], byte(len(reply)>>8), byte(len(reply)))
		frame = append(frame, reply...)
		if _, err := c.Write(frame); err != nil {
			s.log.Debug("tcp write", "remote", req.From.String(), "err", err)
			return
		}
		if cap(reply) <= 64<<10 {
			out = reply[:0]
		}
	}
}

// streamWriter is Request.Stream: a dns.ResponseWriter on a TCP
// connection, signing messages that carry a TSIG record as miekg/dns's
// own server does (the first with the request's MAC, each later one with
// the previous message's).
type streamWriter struct {
	c          *transport.Conn
	secrets    map[string]string
	req        *Request
	wrote      bool
	checked    bool
	status     error
	mac        string
	timersOnly bool
}

func (w *streamWriter) begin(req *Request) {
	w.req, w.wrote, w.checked, w.status, w.mac, w.timersOnly = req, false, false, nil, "", false
}

func (w *streamWriter) secret(name string) (string, bool) {
	if s, ok := w.secrets[name]; ok {
		return s, true
	}
	s, ok := w.secrets[strings.ToLower(name)]
	return s, ok
}

// check verifies the request's TSIG, once.
func (w *streamWriter) check() {
	if w.checked {
		return
	}
	w.checked = true
	m, err := w.req.Msg()
	if err != nil {
		return
	}
	t := m.IsTsig()
	if t == nil {
		return
	}
	w.mac = t.MAC
	sec, ok := w.secret(t.Hdr.Name)
	if !ok {
		w.status = dns.ErrSecret
		return
	}
	w.status = dns.TsigVerify(w.req.Wire, sec, "", false)
}

func (w *streamWriter) LocalAddr() net.Addr  { return w.c.LocalAddr() }
func (w *streamWriter) RemoteAddr() net.Addr { return w.c.RemoteAddr() }
func (w *streamWriter) Close() error         { return w.c.Close() }
func (w *streamWriter) TsigStatus() error    { w.check(); return w.status }
func (w *streamWriter) TsigTimersOnly(b bool) {
	w.timersOnly = b
}
func (w *streamWriter) Hijack() {}

func (w *streamWriter) WriteMsg(m *dns.Msg) error {
	var data []byte
	var err error
	if t := m.IsTsig(); t != nil {
		w.check()
		sec, ok := w.secret(t.Hdr.Name)
		if !ok {
			return dns.ErrSecret
		}
		data, w.mac, err = dns.TsigGenerate(m, sec, w.mac, w.timersOnly)
	} else {
		data, err = m.Pack()
	}
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

func (w *streamWriter) Write(b []byte) (int, error) {
	if len(b) > dns.MaxMsgSize {
		return 0, errors.New("dnsserver: message too large")
	}
	w.wrote = true
	frame := make([]byte, 2, 2+len(b))
	binary.BigEndian.PutUint16(frame, uint16(len(b)))
	if _, err := w.c.Write(append(frame, b...)); err != nil {
		return 0, err
	}
	return len(b), nil
}
