// Package smtpd is applayer's SMTP receiver: the port-25 role, accepting
// mail for the local domains and their users only (no relay, from any
// client address) and putting each accepted message in the durable queue
// before answering 250.
//
// The wire framing is github.com/emersion/go-smtp's; the connections come
// from internal/transport's StreamServer (connection limits, per-IP
// limits, accept backoff, panic recovery) through a Handoff listener that
// go-smtp accepts from. Our part is the session: envelope policy, limits,
// the refusal of SMTP-smuggling line endings, the Received header and the
// hand-off to the queue.
package smtpd

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/internal/transport"
	"github.com/applayer/applayer/mail/store"
)

// Defaults of Config's zero fields.
const (
	DefaultMaxMessageBytes = 25 << 20
	DefaultMaxRecipients   = 100
	DefaultMaxLineLength   = 2000 // RFC 5321 4.5.3.1.6's 1000, doubled as go-smtp does
	DefaultMaxErrors       = 10
	DefaultReadTimeout     = 5 * time.Minute // RFC 5321 4.5.3.2: 5 minutes per command
	DefaultWriteTimeout    = time.Minute
	DefaultMaxSessionTime  = 30 * time.Minute
	DefaultMaxConns        = 1000
	DefaultMaxConnsPerIP   = 20
)

// Config configures a Server. Zero fields take the defaults above.
type Config struct {
	// Addr is the listen address, e.g. 127.0.0.1:25.
	Addr string
	// Hostname names this server in the greeting and Received headers.
	Hostname string
	// Domains are the local domains: mail to anyone else is refused.
	Domains []string
	// TLS, when set, offers STARTTLS with this configuration.
	TLS *tls.Config
	// Limits.
	MaxMessageBytes int64
	MaxRecipients   int
	MaxLineLength   int
	// MaxErrors is how many refused commands (MAIL, RCPT, DATA) a
	// session may have before it is closed with 421.
	MaxErrors int
	// ReadTimeout bounds each command read (and the whole DATA);
	// WriteTimeout each reply.
	ReadTimeout, WriteTimeout time.Duration
	// MaxSessionTime bounds a whole connection.
	MaxSessionTime time.Duration
	// MaxConns and MaxConnsPerIP cap the connections served at once.
	MaxConns, MaxConnsPerIP int

	// Role names the listener in metrics and logs: "mx" (the default),
	// "submission" or "submissions".
	Role string
	// Submission makes this a message submission server (RFC 6409): AUTH
	// PLAIN/LOGIN required before MAIL, mail to any domain accepted from
	// the authenticated user, whose address the envelope sender and the
	// From header must be. It needs TLS (or InsecureAuthLoopback).
	Submission bool
	// ImplicitTLS speaks TLS from the first byte (port 465, RFC 8314).
	ImplicitTLS bool
	// InsecureAuthLoopback allows AUTH without TLS from loopback clients.
	InsecureAuthLoopback bool
	// Limiter bounds the messages per user on a submission server; nil
	// makes one with the defaults (100 per hour).
	Limiter *RateLimiter
	// Inbound, when set, checks each message received on a non-submission
	// server before it is queued (DKIM, SPF, DMARC): it may reject it or
	// add header fields such as Authentication-Results.
	Inbound Inbound
}

// Inbound checks a message arriving from another server before it is
// queued: the hook of the receiving policy (DKIM verification, SPF,
// DMARC). Check returns the header fields to prepend (each ending in
// CRLF), or an error: a *smtp.SMTPError is the reply to the client (550
// to reject, 451 to defer); any other error defers with 451.
type Inbound interface {
	Check(ctx context.Context, m InboundMessage) (header string, err error)
}

// InboundFunc adapts a function to Inbound.
type InboundFunc func(ctx context.Context, m InboundMessage) (string, error)

// Check calls f.
func (f InboundFunc) Check(ctx context.Context, m InboundMessage) (string, error) { return f(ctx, m) }

// InboundMessage is what Inbound sees of a received message.
type InboundMessage struct {
	Remote netip.Addr // the client's address
	// Peer is the client's address and port, Local the server's end of
	// the connection (for the checks' trace).
	Peer, Local netip.AddrPort
	Helo        string   // the name it gave in EHLO/HELO
	From        string   // the envelope sender ("" for bounces)
	To          []string // the accepted recipients
	TLS         bool     // received over TLS
	Body        []byte   // the message as received (CRLF line endings)
}

// Enqueuer takes an accepted message; it returns once the message is on
// stable storage (mail/queue's Queue).
type Enqueuer interface {
	Enqueue(ctx context.Context, from string, to []string, body []byte) (string, error)
}

// Server is the SMTP receiver, a service.Service.
type Server struct {
	cfg     Config
	store   store.Store
	queue   Enqueuer
	log     *slog.Logger
	now     func() time.Time
	limiter *RateLimiter
	trace   *trace.Bus
	domains map[string]bool
	m       metrics

	mu     sync.Mutex
	ln     net.Listener
	ts     *transport.StreamServer
	ho     *transport.Handoff
	smtp   *smtp.Server
	served chan struct{}
	conns  map[*conn]struct{}
}

type metrics struct {
	connections prometheus.Counter
	accepted    prometheus.Counter
	rejected    *prometheus.CounterVec
	panics      prometheus.Counter
}

// New returns a server that takes users from st and hands accepted mail
// to q.
func New(cfg Config, d service.Deps, st store.Store, q Enqueuer) (*Server, error) {
	d = d.Defaults()
	if len(cfg.Domains) == 0 {
		return nil, errors.New("smtpd: no local domains")
	}
	if cfg.Hostname == "" {
		cfg.Hostname = cfg.Domains[0]
	}
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	defDur := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	def(&cfg.MaxRecipients, DefaultMaxRecipients)
	def(&cfg.MaxLineLength, DefaultMaxLineLength)
	def(&cfg.MaxErrors, DefaultMaxErrors)
	def(&cfg.MaxConns, DefaultMaxConns)
	def(&cfg.MaxConnsPerIP, DefaultMaxConnsPerIP)
	defDur(&cfg.ReadTimeout, DefaultReadTimeout)
	defDur(&cfg.WriteTimeout, DefaultWriteTimeout)
	defDur(&cfg.MaxSessionTime, DefaultMaxSessionTime)
	if cfg.Role == "" {
		cfg.Role = "mx"
	}
	if (cfg.Submission && !cfg.InsecureAuthLoopback || cfg.ImplicitTLS) && cfg.TLS == nil {
		return nil, fmt.Errorf("smtpd: %s needs a TLS certificate", cfg.Role)
	}
	if cfg.Limiter == nil {
		cfg.Limiter = NewRateLimiter(0, 0, d.Now)
	}
	s := &Server{cfg: cfg, store: st, queue: q, log: d.Logger.With("role", cfg.Role), now: d.Now, trace: d.Trace, limiter: cfg.Limiter, domains: map[string]bool{}, conns: map[*conn]struct{}{}}
	for _, dom := range cfg.Domains {
		s.domains[strings.ToLower(strings.TrimSuffix(dom, "."))] = true
	}
	role := prometheus.Labels{"role": cfg.Role}
	s.m.connections = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "mail", Name: "smtp_connections_total", ConstLabels: role, Help: "SMTP connections accepted."})
	s.m.accepted = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "mail", Name: "smtp_messages_total", ConstLabels: role, Help: "Messages accepted (queued) over SMTP."})
	s.m.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "mail", Name: "smtp_rejected_total", ConstLabels: role, Help: "SMTP commands refused, by reason."}, []string{"reason"})
	s.m.panics = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "mail", Name: "smtp_panics_total", ConstLabels: role, Help: "SMTP sessions ended by a panic (answered 421)."})
	for _, c := range []prometheus.Collector{s.m.connections, s.m.accepted, s.m.rejected, s.m.panics} {
		if err := d.Metrics.Register(c); err != nil {
			return nil, fmt.Errorf("smtpd: metrics: %w", err)
		}
	}
	return s, nil
}

// Name implements service.Service.
func (s *Server) Name() string { return "smtp" }

// Addrs implements service.Addresser.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return []net.Addr{s.ln.Addr()}
}

type logAdapter struct {
	l      *slog.Logger
	panics prometheus.Counter
}

func (a logAdapter) Printf(format string, v ...any) {
	if strings.HasPrefix(format, "panic serving") {
		// go-smtp recovered a panic in our session and answered 421.
		a.panics.Inc()
		a.l.Error(fmt.Sprintf("smtpd: "+format, v...))
		return
	}
	a.l.Warn(fmt.Sprintf("smtpd: "+format, v...))
}
func (a logAdapter) Println(v ...any) { a.l.Warn("smtpd: " + strings.TrimSpace(fmt.Sprintln(v...))) }

// Start binds the listener and starts serving.
func (s *Server) Start(ctx context.Context) error {
	ln, err := transport.ListenConfig{}.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("smtpd: %w", err)
	}
	srv := smtp.NewServer(backend{s})
	srv.Domain = s.cfg.Hostname
	srv.TLSConfig = s.cfg.TLS
	srv.MaxMessageBytes = s.cfg.MaxMessageBytes
	srv.MaxRecipients = s.cfg.MaxRecipients
	srv.MaxLineLength = s.cfg.MaxLineLength
	srv.ReadTimeout = s.cfg.ReadTimeout
	srv.WriteTimeout = s.cfg.WriteTimeout
	srv.EnableSMTPUTF8 = true
	// go-smtp offers AUTH over TLS only unless told otherwise; our session
	// narrows the insecure case to loopback clients (authAllowed).
	srv.AllowInsecureAuth = s.cfg.InsecureAuthLoopback
	srv.ErrorLog = logAdapter{s.log, s.m.panics}
	ho := transport.NewHandoff(ln.Addr())
	ts := transport.NewStreamServer(transport.StreamConfig{
		MaxConns:      s.cfg.MaxConns,
		MaxConnsPerIP: s.cfg.MaxConnsPerIP,
		Logger:        s.log,
		OnReject: func(c net.Conn, why transport.RejectReason) {
			s.m.rejected.WithLabelValues("busy").Inc()
			io.WriteString(c, "421 4.7.0 "+s.cfg.Hostname+" too many connections, try again later\r\n")
		},
		OnPanic: func(c net.Conn, _ any) {
			s.m.panics.Inc()
			io.WriteString(c, "421 4.3.0 "+s.cfg.Hostname+" internal error, closing connection\r\n")
		},
	}, transport.HandlerFunc(s.handoff))
	s.mu.Lock()
	s.ln, s.ho, s.ts, s.smtp = ln, ho, ts, srv
	s.served = make(chan struct{})
	s.mu.Unlock()
	go func() {
		defer close(s.served)
		srv.Serve(ho)
	}()
	if err := ts.Start(ln); err != nil {
		ho.Close()
		return fmt.Errorf("smtpd: %w", err)
	}
	return nil
}

// handoff runs on the transport's connection goroutine: it takes the
// connection from the StreamServer (keeping its slot until closed) and
// passes it to go-smtp.
func (s *Server) handoff(ctx context.Context, tc *transport.Conn) {
	s.m.connections.Inc()
	nc, release := tc.Detach()
	c := &conn{Conn: nc, release: release, remote: tc.RemoteAddrPort(), srv: s, deadline: s.now().Add(s.cfg.MaxSessionTime)}
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	var gc net.Conn = c
	if s.cfg.ImplicitTLS {
		gc = tls.Server(c, s.cfg.TLS)
	}
	if !s.ho.Deliver(gc) {
		gc.Close()
	}
}

// Shutdown stops accepting, lets sessions in progress finish until ctx
// ends (at most a few seconds: idle sessions are then closed; a message
// whose DATA was cut was never answered 250, so its client retries).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	ts, ho, srv, served := s.ts, s.ho, s.smtp, s.served
	s.mu.Unlock()
	if ts == nil {
		return nil
	}
	err := ts.Shutdown(ctx)
	ho.Close()
	done := make(chan struct{})
	go func() {
		srv.Shutdown(context.Background())
		close(done)
	}()
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-ctx.Done():
	case <-t.C:
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Conn.Close()
	}
	s.mu.Unlock()
	<-done
	<-served
	if err != nil && !errors.Is(err, transport.ErrServerClosed) {
		return fmt.Errorf("smtpd: shutdown: %w", err)
	}
	return nil
}

// conn is a connection as go-smtp sees it: it releases the transport slot
// when closed, ends the session after MaxSessionTime, and stops reading
// once the session has had too many errors.
type conn struct {
	net.Conn
	release  func()
	remote   netip.AddrPort
	srv      *Server
	deadline time.Time
	closed   atomic.Bool
	errors   atomic.Int32
	poisoned atomic.Bool
}

func (c *conn) Read(b []byte) (int, error) {
	if c.poisoned.Load() || c.srv.now().After(c.deadline) {
		return 0, io.EOF
	}
	return c.Conn.Read(b)
}

func (c *conn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	err := c.Conn.Close()
	c.release()
	c.srv.mu.Lock()
	delete(c.srv.conns, c)
	c.srv.mu.Unlock()
	return err
}

// connOf finds our conn under go-smtp's (a *tls.Conn after STARTTLS).
func connOf(sc *smtp.Conn) *conn {
	nc := sc.Conn()
	if t, ok := nc.(*tls.Conn); ok {
		nc = t.NetConn()
	}
	c, _ := nc.(*conn)
	return c
}

type backend struct{ s *Server }

func (b backend) NewSession(sc *smtp.Conn) (smtp.Session, error) {
	c := connOf(sc)
	if c == nil {
		return nil, errors.New("smtpd: connection of unknown type")
	}
	return &session{s: b.s, sc: sc, c: c}, nil
}

type session struct {
	s    *Server
	sc   *smtp.Conn
	c    *conn
	user string // the authenticated user (submission)
	from string
	utf8 bool
	size int64 // the SIZE the client declared, or 0
	to   []string
}

// fail counts a refusal: past MaxErrors the session gets 421 and ends.
func (ss *session) fail(reason string, err *smtp.SMTPError) error {
	ss.s.m.rejected.WithLabelValues(reason).Inc()
	if int(ss.c.errors.Add(1)) > ss.s.cfg.MaxErrors {
		ss.c.poisoned.Store(true)
		ss.s.m.rejected.WithLabelValues("too_many_errors").Inc()
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "too many errors, closing connection"}
	}
	return err
}

func (ss *session) Reset() {
	ss.from, ss.to, ss.utf8, ss.size = "", nil, false, 0
}

func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if ss.c.poisoned.Load() {
		return ss.fail("too_many_errors", nil)
	}
	ss.Reset()
	if ss.s.cfg.Submission {
		if err := ss.submissionMail(from); err != nil {
			return err
		}
	}
	if from != "" {
		if _, _, err := SplitAddress(from); err != nil {
			return ss.fail("bad_sender", &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "bad sender address syntax"})
		}
	}
	ss.from = from
	if opts != nil {
		ss.utf8, ss.size = opts.UTF8, opts.Size
	}
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if ss.c.poisoned.Load() {
		return ss.fail("too_many_errors", nil)
	}
	local, domain, err := SplitAddress(to)
	if err != nil {
		return ss.fail("bad_recipient", &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "bad recipient address syntax"})
	}
	if ss.s.cfg.Submission && ss.user == "" {
		return ss.fail("auth_required", errAuthRequired)
	}
	if !ss.s.domains[domain] {
		if ss.s.cfg.Submission {
			// The authenticated user's mail goes anywhere: the queue relays it.
			if !slices.Contains(ss.to, local+"@"+domain) {
				ss.to = append(ss.to, local+"@"+domain)
			}
			return nil
		}
		// Not ours: we relay for nobody on this port, whoever asks.
		return ss.fail("relay", &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "relay access denied"})
	}
	addr := local + "@" + domain
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u, err := ss.s.store.User(ctx, addr)
	if err != nil {
		if errors.Is(err, store.ErrNoUser) || errors.Is(err, store.ErrBadAddress) {
			return ss.fail("unknown_user", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user here"})
		}
		ss.s.log.Error("smtpd: user lookup", "rcpt", addr, "err", err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "temporary failure, try again later"}
	}
	if u.Quota > 0 {
		// A full mailbox is a temporary condition (RFC 3463 4.2.2): the
		// sender retries, and the user may make room meanwhile.
		used, err := ss.s.store.Usage(ctx, addr)
		if err == nil && used+max(ss.size, 1) > u.Quota {
			ss.s.m.rejected.WithLabelValues("quota").Inc()
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
		}
	}
	if !slices.Contains(ss.to, addr) {
		ss.to = append(ss.to, addr)
	}
	return nil
}

// errBareLF refuses a message with a line ending other than CRLF: the
// SMTP-smuggling vector (RFC 5321 2.3.8: CR and LF only as CRLF).
var errBareLF = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "bare CR or LF in message: lines must end with CRLF (RFC 5321 2.3.8)"}

// CheckLineEndings reports the offset of the first CR not followed by LF
// or LF not preceded by CR in msg, or -1 when every line ends in CRLF.
func CheckLineEndings(msg []byte) int {
	for i, b := range msg {
		switch b {
		case '\r':
			if i+1 >= len(msg) || msg[i+1] != '\n' {
				return i
			}
		case '\n':
			if i == 0 || msg[i-1] != '\r' {
				return i
			}
		}
	}
	return -1
}

func (ss *session) Data(r io.Reader) error {
	if ss.c.poisoned.Load() {
		io.Copy(io.Discard, r)
		return ss.fail("too_many_errors", nil)
	}
	// go-smtp's reader stops at MaxMessageBytes with ErrDataTooLarge (552).
	body, err := io.ReadAll(r)
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code == 552 {
			return ss.fail("size", se)
		}
		return err
	}
	if CheckLineEndings(body) >= 0 {
		return ss.fail("bare_lf", errBareLF)
	}
	// The transaction as received, published before it is checked and
	// queued (the checks publish their results, and the queue may start
	// delivering before the 250 below is on the wire).
	if ss.s.trace.Enabled() {
		who := ""
		if ss.user != "" {
			who = " AUTH " + ss.user
		}
		ss.s.trace.Publish(trace.Event{From: ss.c.remote.String(), To: ss.c.LocalAddr().String(), Proto: "smtp/" + ss.s.cfg.Role,
			Summary: fmt.Sprintf("MAIL FROM:<%s> RCPT TO:<%s>%s DATA", ss.from, strings.Join(ss.to, ">,<"), who), Bytes: len(body)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var extra string
	switch {
	case ss.s.cfg.Submission:
		if extra, err = ss.checkFrom(body); err != nil {
			return err
		}
	case ss.s.cfg.Inbound != nil:
		_, isTLS := ss.sc.TLSConnectionState()
		local, _ := netip.ParseAddrPort(ss.c.LocalAddr().String())
		extra, err = ss.s.cfg.Inbound.Check(ctx, InboundMessage{Remote: ss.c.remote.Addr().Unmap(), Peer: ss.c.remote, Local: local,
			Helo: ss.sc.Hostname(), From: ss.from, To: ss.to, TLS: isTLS, Body: body})
		if err != nil {
			var se *smtp.SMTPError
			if errors.As(err, &se) {
				if ss.s.trace.Enabled() {
					ss.s.trace.Publish(trace.Event{From: ss.c.LocalAddr().String(), To: ss.c.remote.String(), Proto: "smtp/" + ss.s.cfg.Role,
						Summary: fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)})
				}
				if se.Code >= 500 {
					return ss.fail("policy", se)
				}
				return se
			}
			ss.s.log.Error("smtpd: inbound check", "err", err)
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "temporary failure, try again later"}
		}
		if rw, ok := ss.s.cfg.Inbound.(BodyRewriter); ok {
			body = rw.Rewrite(body)
		}
	}
	id := newID()
	hdr := ss.received(id) + extra
	msg := make([]byte, 0, len(hdr)+len(body))
	msg = append(append(msg, hdr...), body...)
	qid, err := ss.s.queue.Enqueue(ctx, ss.from, ss.to, msg)
	if err != nil {
		ss.s.log.Error("smtpd: enqueue", "err", err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "queue error, try again later"}
	}
	ss.s.m.accepted.Inc()
	if ss.user != "" {
		ss.s.limiter.Sent(ss.user)
	}
	if ss.s.trace.Enabled() {
		ss.s.trace.Publish(trace.Event{From: ss.c.LocalAddr().String(), To: ss.c.remote.String(), Proto: "smtp/" + ss.s.cfg.Role, Summary: "250 queued as " + qid})
	}
	ss.s.log.Info("smtpd: accepted", "queue_id", qid, "from", ss.from, "to", strings.Join(ss.to, ","), "size", len(body), "remote", ss.c.remote.String())
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK queued as " + qid}
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// received returns the Received header (RFC 5321 4.4) this server adds.
func (ss *session) received(id string) string {
	proto := "ESMTP"
	if ss.utf8 {
		proto = "UTF8SMTP"
	}
	if _, ok := ss.sc.TLSConnectionState(); ok {
		proto += "S"
	}
	if ss.user != "" {
		proto += "A" // RFC 3848: authenticated
	}
	helo := sanitize(ss.sc.Hostname())
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s with %s id %s", helo, ss.c.remote.Addr().Unmap(), ss.s.cfg.Hostname, proto, id)
	if len(ss.to) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", ss.to[0])
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", ss.s.now().Format(time.RFC1123Z))
	return b.String()
}

// sanitize keeps a client-chosen name to printable ASCII without spaces
// or parentheses, so it cannot forge header structure.
func sanitize(s string) string {
	if len(s) > 255 {
		s = s[:255]
	}
	var b strings.Builder
	for _, r := range s {
		if r > ' ' && r < 0x7f && r != '(' && r != ')' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}

// SplitAddress splits a mailbox address (as go-smtp hands it over, without
// angle brackets) into its local part and lower-cased domain, refusing
// what is not local@domain: no domain, an empty part, more than 64 octets
// of local part or 255 of domain (RFC 5321 4.5.3.1), control characters,
// spaces or brackets, or a domain that is not a dot-separated name or an
// address literal.
func SplitAddress(a string) (local, domain string, err error) {
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 {
		return "", "", fmt.Errorf("smtpd: address %q: want local@domain", a)
	}
	local, domain = a[:at], strings.ToLower(a[at+1:])
	if len(local) > 64 || len(domain) > 255 {
		return "", "", fmt.Errorf("smtpd: address %q: too long", a)
	}
	for _, r := range local {
		if r < ' ' || r == 0x7f || r == ' ' || r == '<' || r == '>' {
			return "", "", fmt.Errorf("smtpd: address %q: bad character in local part", a)
		}
	}
	if strings.HasPrefix(domain, "[") {
		if !strings.HasSuffix(domain, "]") {
			return "", "", fmt.Errorf("smtpd: address %q: bad address literal", a)
		}
		lit := strings.TrimPrefix(domain[1:len(domain)-1], "ipv6:")
		if _, err := netip.ParseAddr(lit); err != nil {
			return "", "", fmt.Errorf("smtpd: address %q: bad address literal", a)
		}
		return strings.ToLower(local), domain, nil
	}
	domain = strings.TrimSuffix(domain, ".")
	for _, label := range strings.Split(domain, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", "", fmt.Errorf("smtpd: address %q: bad domain", a)
		}
		for _, r := range label {
			if !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 0x80) {
				return "", "", fmt.Errorf("smtpd: address %q: bad domain", a)
			}
		}
	}
	return strings.ToLower(local), domain, nil
}
