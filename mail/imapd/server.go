// Package imapd is applayer's IMAP server: IMAP4rev1 and IMAP4rev2 over the
// mail store, on port 143 (STARTTLS) and 993 (implicit TLS).
//
// The wire protocol (parsing, literals, response encoding, STARTTLS, IDLE
// framing, SASL PLAIN) is github.com/emersion/go-imap/v2's imapserver; the
// connections come from internal/transport's StreamServer (connection and
// per-address limits, accept backoff) through Handoff listeners. Our part
// is the session (session.go): mailboxes, messages, flags, search, copy,
// move and expunge on the store.Store, each selected session keeping its
// own sequence-number view that it reconciles with the store when the
// mailhub says the mailbox changed (EXISTS, EXPUNGE and FETCH FLAGS
// pushed during IDLE and after commands).
package imapd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/internal/transport"
	"github.com/applayer/applayer/mail/mailhub"
	"github.com/applayer/applayer/mail/mailnet"
	"github.com/applayer/applayer/mail/store"
)

// Defaults of Config's zero fields.
const (
	DefaultMaxMessageBytes = 25 << 20
	DefaultMaxConns        = 1000
	DefaultMaxConnsPerIP   = 20
	DefaultRescan          = 5 * time.Second
	DefaultAuthFailDelay   = time.Second
)

// Config configures a Server. Zero fields take the defaults above.
type Config struct {
	// Addr is the plain listener with STARTTLS (port 143); TLSAddr the
	// implicit-TLS one (993). Empty: not served. At least one is needed.
	Addr, TLSAddr string
	// TLS is the certificate configuration; without it only Addr can be
	// served, and then only to loopback clients with InsecureAuthLoopback.
	TLS *tls.Config
	// InsecureAuthLoopback lets clients on loopback addresses log in
	// without TLS (tests, the lab). Others must use TLS always.
	InsecureAuthLoopback bool
	// MaxMessageBytes is the largest APPEND (APPENDLIMIT).
	MaxMessageBytes int64
	// MaxConns and MaxConnsPerIP cap the connections served at once.
	MaxConns, MaxConnsPerIP int
	// Rescan is how often a selected session rereads its mailbox from the
	// store without a hint from the hub (changes made by another process
	// sharing the store).
	Rescan time.Duration
	// AuthFailDelay is how long a failed login waits before its answer.
	AuthFailDelay time.Duration
	// EnvelopeCacheBytes bounds the decoded envelopes kept in memory for
	// all sessions (0: DefaultEnvelopeCacheBytes; negative: none).
	EnvelopeCacheBytes int64
}

// Server is the IMAP server, a service.Service.
type Server struct {
	cfg   Config
	store store.Store
	hub   *mailhub.Hub
	log   *slog.Logger
	envs  *envCache // nil when off
	// bufs are the *store.Buffers FETCH and SEARCH read bodies into
	// (each holds at most a batch: batchBytes and a block).
	bufs  sync.Pool
	now   func() time.Time
	trace *trace.Bus
	m     metrics

	mu sync.Mutex
	ls *mailnet.Listeners
	// The imapservers by connection: secure refuses LOGIN without TLS
	// (STARTTLS); tlsDone serves implicit TLS (go-imap sees the guard,
	// not its *tls.Conn, so it is told LOGIN is allowed, and offers no
	// STARTTLS); insecure (loopback clients, when
	// configured) allows it.
	secure, insecure, tlsDone       *imapserver.Server
	hoSecure, hoInsecure, hoTLSDone *transport.Handoff
	served                          sync.WaitGroup
	conns                           map[*conn]struct{}
	started                         bool
}

type metrics struct {
	connections prometheus.Counter
	logins      *prometheus.CounterVec
	appends     prometheus.Counter
	panics      prometheus.Counter
}

// New returns a server over st; hub (may be nil) tells it of changes made
// by others in this process.
func New(cfg Config, d service.Deps, st store.Store, hub *mailhub.Hub) (*Server, error) {
	d = d.Defaults()
	if cfg.Addr == "" && cfg.TLSAddr == "" {
		return nil, errors.New("imapd: no listen address")
	}
	if cfg.TLSAddr != "" && cfg.TLS == nil {
		return nil, errors.New("imapd: implicit TLS needs a certificate")
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxConnsPerIP <= 0 {
		cfg.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if cfg.Rescan <= 0 {
		cfg.Rescan = DefaultRescan
	}
	if cfg.AuthFailDelay == 0 {
		cfg.AuthFailDelay = DefaultAuthFailDelay
	}
	if cfg.EnvelopeCacheBytes == 0 {
		cfg.EnvelopeCacheBytes = DefaultEnvelopeCacheBytes
	}
	if hub == nil {
		hub = mailhub.New()
	}
	s := &Server{cfg: cfg, store: st, hub: hub, log: d.Logger, now: d.Now, trace: d.Trace, conns: map[*conn]struct{}{}}
	if cfg.EnvelopeCacheBytes > 0 {
		s.envs = newEnvCache(cfg.EnvelopeCacheBytes)
	}
	s.bufs.New = func() any { return new(store.Buffer) }
	s.m.connections = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "mail", Name: "imap_connections_total", Help: "IMAP connections accepted."})
	s.m.logins = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "mail", Name: "imap_logins_total", Help: "IMAP logins, by result."}, []string{"result"})
	s.m.appends = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "mail", Name: "imap_appends_total", Help: "Messages stored by IMAP APPEND."})
	s.m.panics = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "mail", Name: "imap_panics_total", Help: "IMAP commands that panicked (the connection is closed, the server goes on)."})
	cached := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "applayer", Subsystem: "mail", Name: "imap_envelope_cache_bytes", Help: "Memory the envelope cache holds, by its own count (bounded by EnvelopeCacheBytes)."}, func() float64 {
		return float64(s.envs.bytesUsed())
	})
	for _, c := range []prometheus.Collector{s.m.connections, s.m.logins, s.m.appends, s.m.panics, cached} {
		if err := d.Metrics.Register(c); err != nil {
			return nil, fmt.Errorf("imapd: metrics: %w", err)
		}
	}
	return s, nil
}

// Name implements service.Service.
func (s *Server) Name() string { return "imap" }

// Addrs implements service.Addresser: the plain listener first (when
// served), then the TLS one.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ls == nil {
		return nil
	}
	return s.ls.Addrs()
}

// Caps are the capabilities advertised (go-imap adds STARTTLS, AUTH=PLAIN
// or LOGINDISABLED, IDLE, ENABLE, UNSELECT, SASL-IR, LITERAL- by state).
var caps = imap.CapSet{
	imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {},
	imap.CapNamespace: {}, imap.CapUIDPlus: {}, imap.CapESearch: {}, imap.CapSearchRes: {},
	imap.CapListExtended: {}, imap.CapListStatus: {}, imap.CapMove: {}, imap.CapStatusSize: {},
	imap.CapBinary: {}, imap.CapChildren: {}, imap.CapSpecialUse: {}, imap.CapCreateSpecialUse: {},
	imap.CapLiteralPlus: {},
}

type logAdapter struct {
	l      *slog.Logger
	panics prometheus.Counter
}

func (a logAdapter) Printf(format string, v ...any) {
	msg := fmt.Sprintf("imapd: "+format, v...)
	if strings.HasPrefix(format, "panic") {
		a.panics.Inc()
		a.l.Error(msg)
		return
	}
	a.l.Debug(msg)
}

func (s *Server) newIMAP(insecure bool, starttls *tls.Config) *imapserver.Server {
	return imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &session{srv: s, conn: c, raw: rawConn(c.NetConn())}, nil, nil
		},
		Caps:         caps,
		Logger:       logAdapter{s.log, s.m.panics},
		TLSConfig:    starttls,
		InsecureAuth: insecure,
	})
}

// Start binds the listeners and starts serving.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("imapd: already started")
	}
	s.started = true
	s.secure, s.insecure, s.tlsDone = s.newIMAP(false, s.cfg.TLS), s.newIMAP(true, s.cfg.TLS), s.newIMAP(true, nil)
	// Both imapservers accept from Handoffs; the address reported is
	// only for logs.
	var addr net.Addr = &net.TCPAddr{}
	s.hoSecure, s.hoInsecure, s.hoTLSDone = transport.NewHandoff(addr), transport.NewHandoff(addr), transport.NewHandoff(addr)
	for _, p := range []struct {
		srv *imapserver.Server
		ho  *transport.Handoff
	}{{s.secure, s.hoSecure}, {s.insecure, s.hoInsecure}, {s.tlsDone, s.hoTLSDone}} {
		s.served.Go(func() { p.srv.Serve(p.ho) })
	}
	ls, err := mailnet.Listen(ctx, s.cfg.Addr, s.cfg.TLSAddr, func(implicit bool) transport.StreamConfig {
		return transport.StreamConfig{
			MaxConns:      s.cfg.MaxConns,
			MaxConnsPerIP: s.cfg.MaxConnsPerIP,
			Logger:        s.log,
			OnReject: func(c net.Conn, _ transport.RejectReason) {
				if !implicit {
					io.WriteString(c, "* BYE [UNAVAILABLE] too many connections, try again later\r\n")
				}
			},
		}
	}, func(implicit bool) transport.Handler {
		return transport.HandlerFunc(func(ctx context.Context, tc *transport.Conn) { s.handoff(tc, implicit) })
	})
	if err != nil {
		s.stopIMAP(s.secure, s.insecure, s.tlsDone)
		return fmt.Errorf("imapd: %w", err)
	}
	s.ls = ls
	return nil
}

// stopIMAP ends both imapservers: their accept loops first (closing the
// Handoffs they accept from), then their connections. (Closing an
// imapserver while its Serve is starting races inside go-imap.)
func (s *Server) stopIMAP(secure, insecure, tlsDone *imapserver.Server) {
	s.hoSecure.Close()
	s.hoInsecure.Close()
	s.hoTLSDone.Close()
	s.served.Wait()
	secure.Close()
	insecure.Close()
	tlsDone.Close()
}

// handoff takes the connection from the StreamServer (it keeps its slot
// until closed) and passes it to the imapserver that fits its address.
func (s *Server) handoff(tc *transport.Conn, implicit bool) {
	s.m.connections.Inc()
	remote := tc.RemoteAddrPort()
	nc, release := tc.Detach()
	c := &conn{Conn: nc, release: release, srv: s}
	s.mu.Lock()
	s.conns[c] = struct{}{}
	ho := s.hoSecure
	if s.cfg.InsecureAuthLoopback && remote.Addr().IsLoopback() {
		ho = s.hoInsecure
	}
	if implicit {
		ho = s.hoTLSDone
	}
	s.mu.Unlock()
	var out net.Conn = c
	if implicit {
		out = tls.Server(c, s.cfg.TLS)
	}
	out = newGuard(out, s.log, s.cfg.MaxMessageBytes)
	if !ho.Deliver(out) {
		c.Close()
	}
}

// Shutdown stops accepting and closes the sessions: IMAP sessions are long
// lived (IDLE), and every change a client made is in the store already.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.started {
		s.mu.Unlock()
		return nil
	}
	s.started = false
	ls, secure, insecure, tlsDone := s.ls, s.secure, s.insecure, s.tlsDone
	s.mu.Unlock()
	var err error
	if ls != nil {
		err = ls.Shutdown(ctx)
	}
	s.stopIMAP(secure, insecure, tlsDone)
	s.mu.Lock()
	for c := range s.conns {
		c.Conn.Close()
	}
	s.mu.Unlock()
	return err
}

// conn releases the transport slot when closed, and can hold writes
// back (cork) while a command writes many responses.
type conn struct {
	net.Conn
	release func()
	srv     *Server
	once    sync.Once

	wmu    sync.Mutex
	corked bool
	buf    []byte
	// deadline is the write deadline go-imap last asked for while
	// corked, applied when the buffer goes out.
	deadline time.Time
}

// Bounds of a corked conn: how much it holds before writing, and how
// long the write at uncork may take (go-imap clears its own deadline
// after each response).
const (
	corkBytes   = 64 << 10
	corkTimeout = 5 * time.Minute
)

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.release()
		c.srv.mu.Lock()
		delete(c.srv.conns, c)
		c.srv.mu.Unlock()
	})
	return err
}

// Write writes through, or while corked appends to the buffer and writes
// it when full: go-imap flushes its 4 KiB buffer after every response
// line, and a FETCH of 1,000 messages would be 1,000 system calls (and
// TLS records, under TLS) instead of one per 64 KiB.
func (c *conn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !c.corked {
		return c.Conn.Write(b)
	}
	c.buf = append(c.buf, b...)
	if len(c.buf) >= corkBytes {
		dl := c.deadline
		if dl.IsZero() {
			dl = time.Now().Add(corkTimeout)
		}
		c.Conn.SetWriteDeadline(dl)
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// SetWriteDeadline sets the write deadline, or while corked notes it for
// when the buffer goes out: go-imap sets one and clears it around every
// response (a runtime timer update each, three or four per message of a
// FETCH), while corked responses reach the network only every corkBytes.
func (c *conn) SetWriteDeadline(t time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.corked {
		c.deadline = t
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *conn) flushLocked() error {
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

// cork holds writes (and write deadlines) back until uncork.
func (c *conn) cork() {
	c.wmu.Lock()
	c.corked = true
	c.deadline = time.Time{}
	c.wmu.Unlock()
}

// uncork writes what cork held back, within corkTimeout, and leaves the
// write deadline go-imap asked for last.
func (c *conn) uncork() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.corked = false
	var err error
	if len(c.buf) > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(corkTimeout))
		err = c.flushLocked()
	}
	c.Conn.SetWriteDeadline(c.deadline)
	if cap(c.buf) > 2*corkBytes {
		c.buf = nil
	}
	return err
}

// rawConn finds our conn under go-imap's (the guard, and a *tls.Conn
// with implicit TLS); nil if it is not there.
func rawConn(nc net.Conn) *conn {
	if g, ok := nc.(*guard); ok {
		nc = g.Conn
	}
	if t, ok := nc.(*tls.Conn); ok {
		nc = t.NetConn()
	}
	c, _ := nc.(*conn)
	return c
}

// publish puts a line on the trace bus (the lab's), if any.
func (s *Server) publish(c *imapserver.Conn, summary string, n int) {
	if s.trace == nil {
		return
	}
	var from, to string
	if c != nil {
		from, to = c.NetConn().RemoteAddr().String(), c.NetConn().LocalAddr().String()
	}
	s.trace.Publish(trace.Event{From: from, To: to, Proto: "imap", Summary: summary, Bytes: n})
}
