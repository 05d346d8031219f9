// Package pop3d is applayer's POP3 server (RFC 1939, with RFC 2449's CAPA
// and response codes and RFC 2595's STLS) over the mail store's INBOX:
// port 110 with STLS and 995 with implicit TLS.
//
// The protocol is small enough to be ours: ParseCommand (fuzzed) and the
// session below. A session locks its maildrop (a second one gets -ERR
// [IN-USE]); DELE only marks, and marked messages are removed from the
// store in the UPDATE state, after QUIT. Connections come from
// internal/transport's StreamServer.
package pop3d

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/internal/transport"
	"github.com/applayer/applayer/mail/mailnet"
	"github.com/applayer/applayer/mail/store"
)

// Defaults of Config's zero fields.
const (
	DefaultTimeout       = 10 * time.Minute // RFC 1939 3: at least 10 minutes
	DefaultMaxConns      = 1000
	DefaultMaxConnsPerIP = 20
	DefaultMaxErrors     = 10
	DefaultAuthFailDelay = time.Second
)

// Config configures a Server. Zero fields take the defaults above.
type Config struct {
	// Addr is the plain listener with STLS (port 110); TLSAddr the
	// implicit-TLS one (995). Empty: not served. At least one is needed.
	Addr, TLSAddr string
	// TLS is the certificate configuration (STLS and TLSAddr).
	TLS *tls.Config
	// InsecureAuthLoopback lets loopback clients log in without TLS.
	InsecureAuthLoopback bool
	// Timeout is the inactivity timeout.
	Timeout time.Duration
	// MaxConns and MaxConnsPerIP cap the connections served at once.
	MaxConns, MaxConnsPerIP int
	// MaxErrors is how many refused commands end a session.
	MaxErrors int
	// AuthFailDelay is how long a failed PASS waits before its answer.
	AuthFailDelay time.Duration
	// Hostname names the server in the greeting.
	Hostname string
}

// Server is the POP3 server, a service.Service.
type Server struct {
	cfg   Config
	store store.Store
	log   *slog.Logger
	trace *trace.Bus
	m     metrics

	mu     sync.Mutex
	locked map[string]bool // maildrops in a TRANSACTION state
	ls     *mailnet.Listeners
}

type metrics struct {
	connections prometheus.Counter
	logins      *prometheus.CounterVec
	retrieved   prometheus.Counter
	deleted     prometheus.Counter
}

// New returns a server over st.
func New(cfg Config, d service.Deps, st store.Store) (*Server, error) {
	d = d.Defaults()
	if cfg.Addr == "" && cfg.TLSAddr == "" {
		return nil, errors.New("pop3d: no listen address")
	}
	if cfg.TLSAddr != "" && cfg.TLS == nil {
		return nil, errors.New("pop3d: implicit TLS needs a certificate")
	}
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&cfg.MaxConns, DefaultMaxConns)
	def(&cfg.MaxConnsPerIP, DefaultMaxConnsPerIP)
	def(&cfg.MaxErrors, DefaultMaxErrors)
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.AuthFailDelay == 0 {
		cfg.AuthFailDelay = DefaultAuthFailDelay
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	s := &Server{cfg: cfg, store: st, log: d.Logger, trace: d.Trace, locked: map[string]bool{}}
	s.m.connections = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "mail", Name: "pop3_connections_total", Help: "POP3 connections accepted."})
	s.m.logins = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "mail", Name: "pop3_logins_total", Help: "POP3 logins, by result (ok, fail, in_use)."}, []string{"result"})
	s.m.retrieved = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "mail", Name: "pop3_retrieved_total", Help: "Messages sent by RETR."})
	s.m.deleted = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "mail", Name: "pop3_deleted_total", Help: "Messages removed in the UPDATE state."})
	for _, c := range []prometheus.Collector{s.m.connections, s.m.logins, s.m.retrieved, s.m.deleted} {
		if err := d.Metrics.Register(c); err != nil {
			return nil, fmt.Errorf("pop3d: metrics: %w", err)
		}
	}
	return s, nil
}

// Name implements service.Service.
func (s *Server) Name() string { return "pop3" }

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

// Start binds the listeners and starts serving.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ls != nil {
		return errors.New("pop3d: already started")
	}
	reply := func(implicit bool, line string) func(net.Conn) {
		return func(c net.Conn) {
			if !implicit {
				io.WriteString(c, line)
			}
		}
	}
	ls, err := mailnet.Listen(ctx, s.cfg.Addr, s.cfg.TLSAddr, func(implicit bool) transport.StreamConfig {
		busy, failed := reply(implicit, "-ERR [SYS/TEMP] too many connections, try again later\r\n"), reply(implicit, "-ERR [SYS/TEMP] internal error\r\n")
		return transport.StreamConfig{
			MaxConns:      s.cfg.MaxConns,
			MaxConnsPerIP: s.cfg.MaxConnsPerIP,
			Logger:        s.log,
			OnReject:      func(c net.Conn, _ transport.RejectReason) { busy(c) },
			OnPanic:       func(c net.Conn, _ any) { failed(c) },
		}
	}, func(implicit bool) transport.Handler {
		return transport.HandlerFunc(func(ctx context.Context, tc *transport.Conn) { s.serve(tc, implicit) })
	})
	if err != nil {
		return fmt.Errorf("pop3d: %w", err)
	}
	s.ls = ls
	return nil
}

// Shutdown stops accepting and closes idle sessions; a session in the
// middle of a command finishes it (until ctx ends). Sessions cut before
// QUIT delete nothing (RFC 1939 6).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	ls := s.ls
	s.mu.Unlock()
	if ls == nil {
		return nil
	}
	return ls.Shutdown(ctx)
}

func (s *Server) lock(user string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.locked[user] {
		return false
	}
	s.locked[user] = true
	return true
}

func (s *Server) unlock(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.locked, user)
}

func (s *Server) serve(tc *transport.Conn, implicit bool) {
	s.m.connections.Inc()
	var nc net.Conn = tc
	if implicit {
		t := tls.Server(tc, s.cfg.TLS)
		t.SetDeadline(time.Now().Add(30 * time.Second))
		if err := t.Handshake(); err != nil {
			return
		}
		nc = t
	}
	ss := &session{srv: s, tc: tc, nc: nc, tls: implicit, loopback: tc.RemoteAddrPort().Addr().IsLoopback()}
	ss.reset(nc)
	defer func() {
		if ss.user != "" {
			s.unlock(ss.user)
		}
	}()
	ss.run()
}

// session is one POP3 connection.
type session struct {
	srv      *Server
	tc       *transport.Conn
	nc       net.Conn
	r        *bufio.Reader
	w        *bufio.Writer
	tls      bool
	loopback bool
	errors   int

	pendingUser string
	user        string // set once in TRANSACTION, with the lock held
	msgs        []msg
	validity    uint32
	ahead       map[uint32][]byte // read-ahead bodies, by UID, in buf
	buf         store.Buffer      // reused by every read-ahead (at most readAheadBytes and a block)
	scratch     []byte            // for formatting a reply line
}

type msg struct {
	uid     uint32
	size    int64
	deleted bool
}

func (ss *session) reset(nc net.Conn) {
	ss.nc = nc
	ss.r = bufio.NewReaderSize(nc, 1024)
	ss.w = bufio.NewWriterSize(nc, 32<<10)
}

func (ss *session) reply(ok bool, format string, args ...any) {
	p := "-ERR "
	if ok {
		p = "+OK "
	}
	ss.w.WriteString(p + fmt.Sprintf(format, args...) + "\r\n")
}

func (ss *session) flush() error {
	ss.nc.SetWriteDeadline(time.Now().Add(ss.srv.cfg.Timeout))
	return ss.w.Flush()
}

// readLine reads one command line; an overlong one is consumed to its end
// and reported as ErrTooLong.
func (ss *session) readLine() (string, error) {
	// A line already buffered (a pipelining client's next command) is
	// read without the network, and needs no new deadline (a runtime
	// timer update per command).
	if !ss.commandBuffered() {
		ss.nc.SetReadDeadline(time.Now().Add(ss.srv.cfg.Timeout))
	}
	var b []byte
	tooLong := false
	for {
		chunk, err := ss.r.ReadSlice('\n')
		if !tooLong {
			b = append(b, chunk...)
			if len(b) > MaxLine {
				tooLong, b = true, nil
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return "", err
		}
		break
	}
	if tooLong {
		return "", ErrTooLong
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

func (ss *session) canAuth() bool {
	return ss.tls || (ss.loopback && ss.srv.cfg.InsecureAuthLoopback)
}

func (ss *session) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), time.Minute)
}

func (ss *session) run() {
	ss.reply(true, "%s POP3 server ready", ss.srv.cfg.Hostname)
	for {
		// Answers go out when no whole command waits: a pipelining
		// client (RFC 2449's PIPELINING) gets many in one write, and a
		// command half-sent does not hold back the answers before it.
		if !ss.commandBuffered() && ss.flush() != nil {
			return
		}
		if ss.errors >= ss.srv.cfg.MaxErrors {
			ss.reply(false, "too many errors, closing connection")
			ss.flush()
			return
		}
		ss.tc.SetIdle()
		line, err := ss.readLine()
		if errors.Is(err, ErrTooLong) {
			ss.errors++
			ss.reply(false, "command line too long")
			continue
		}
		if err != nil {
			return
		}
		ss.tc.SetBusy()
		cmd, err := ParseCommand(line)
		if err != nil {
			ss.errors++
			ss.reply(false, "%v", err)
			continue
		}
		if done := ss.handle(cmd); done {
			ss.flush()
			return
		}
	}
}

// handle runs one command; it returns true when the session ends.
func (ss *session) handle(cmd Command) bool {
	if cmd.Name == "QUIT" {
		return ss.quit()
	}
	if cmd.Name == "CAPA" {
		ss.capa()
		return false
	}
	if cmd.Name == "NOOP" && ss.user != "" {
		ss.reply(true, "")
		return false
	}
	if ss.user == "" {
		ss.authorization(cmd)
		return false
	}
	ss.transaction(cmd)
	return false
}

func (ss *session) fail(format string, args ...any) {
	ss.errors++
	ss.reply(false, format, args...)
}

func (ss *session) capa() {
	ss.reply(true, "Capability list follows")
	caps := []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER", "IMPLEMENTATION applayer"}
	if ss.user == "" && ss.canAuth() {
		caps = append(caps, "USER")
	}
	if ss.user == "" && !ss.tls && ss.srv.cfg.TLS != nil {
		caps = append(caps, "STLS")
	}
	for _, c := range caps {
		ss.w.WriteString(c + "\r\n")
	}
	ss.w.WriteString(".\r\n")
}

func (ss *session) authorization(cmd Command) {
	switch cmd.Name {
	case "STLS":
		if ss.tls || ss.srv.cfg.TLS == nil {
			ss.fail("STLS not available")
			return
		}
		if ss.r.Buffered() > 0 {
			ss.fail("no pipelining before STLS")
			return
		}
		ss.reply(true, "Begin TLS negotiation")
		if ss.flush() != nil {
			return
		}
		t := tls.Server(ss.nc, ss.srv.cfg.TLS)
		t.SetDeadline(time.Now().Add(30 * time.Second))
		if err := t.Handshake(); err != nil {
			ss.errors = ss.srv.cfg.MaxErrors // end the session
			return
		}
		t.SetDeadline(time.Time{})
		ss.tls, ss.pendingUser = true, ""
		ss.reset(t)
	case "USER":
		if !ss.canAuth() {
			ss.fail("[AUTH] TLS required: use STLS first")
			return
		}
		if len(cmd.Args) != 1 {
			ss.fail("USER needs one argument")
			return
		}
		ss.pendingUser = cmd.Args[0]
		ss.reply(true, "send PASS")
	case "PASS":
		if !ss.canAuth() {
			ss.fail("[AUTH] TLS required: use STLS first")
			return
		}
		if ss.pendingUser == "" || len(cmd.Args) != 1 {
			ss.fail("USER first")
			return
		}
		ss.login(ss.pendingUser, cmd.Args[0])
		ss.pendingUser = ""
	default:
		ss.fail("command not valid before login")
	}
}

func (ss *session) login(user, pass string) {
	ctx, cancel := ss.ctx()
	defer cancel()
	u, err := ss.srv.store.Authenticate(ctx, user, pass)
	if err != nil {
		ss.srv.m.logins.WithLabelValues("fail").Inc()
		time.Sleep(ss.srv.cfg.AuthFailDelay)
		if errors.Is(err, store.ErrNoUser) || errors.Is(err, store.ErrBadPassword) || errors.Is(err, store.ErrBadAddress) {
			ss.fail("[AUTH] authentication failed")
		} else {
			ss.srv.log.Warn("pop3d: login", "err", err)
			ss.fail("[SYS/TEMP] store unavailable")
		}
		return
	}
	if !ss.srv.lock(u.Address) {
		ss.srv.m.logins.WithLabelValues("in_use").Inc()
		ss.fail("[IN-USE] maildrop already locked by another session")
		return
	}
	mb, err := ss.srv.store.Mailbox(ctx, u.Address, "INBOX")
	var list []store.Message
	if err == nil {
		list, err = ss.srv.store.Messages(ctx, u.Address, "INBOX")
	}
	if err != nil {
		ss.srv.unlock(u.Address)
		ss.srv.log.Warn("pop3d: maildrop", "user", u.Address, "err", err)
		ss.fail("[SYS/TEMP] maildrop unavailable")
		return
	}
	ss.srv.m.logins.WithLabelValues("ok").Inc()
	ss.publish(fmt.Sprintf("PASS %s: %d messages", u.Address, len(list)), 0)
	ss.user, ss.validity = u.Address, mb.UIDValidity
	ss.msgs = make([]msg, len(list))
	var total int64
	for i, m := range list {
		ss.msgs[i] = msg{uid: m.UID, size: m.Size}
		total += m.Size
	}
	ss.reply(true, "%s has %d messages (%d octets)", u.Address, len(list), total)
}

// number parses a message number argument, which must name a message
// not marked deleted.
func (ss *session) number(arg string) (int, bool) {
	n, err := strconv.Atoi(arg)
	if err != nil || n < 1 || n > len(ss.msgs) {
		ss.fail("no such message")
		return 0, false
	}
	if ss.msgs[n-1].deleted {
		ss.fail("message %d already deleted", n)
		return 0, false
	}
	return n, true
}

func (ss *session) transaction(cmd Command) {
	switch cmd.Name {
	case "STAT":
		n, size := 0, int64(0)
		for _, m := range ss.msgs {
			if !m.deleted {
				n++
				size += m.size
			}
		}
		ss.reply(true, "%d %d", n, size)
	case "LIST", "UIDL":
		line := func(i int) string {
			if cmd.Name == "LIST" {
				return fmt.Sprintf("%d %d", i+1, ss.msgs[i].size)
			}
			return fmt.Sprintf("%d %d.%d", i+1, ss.validity, ss.msgs[i].uid)
		}
		if len(cmd.Args) == 1 {
			if n, ok := ss.number(cmd.Args[0]); ok {
				ss.reply(true, "%s", line(n-1))
			}
			return
		}
		ss.reply(true, "%d messages", len(ss.msgs))
		for i, m := range ss.msgs {
			if !m.deleted {
				ss.w.WriteString(line(i) + "\r\n")
			}
		}
		ss.w.WriteString(".\r\n")
	case "RETR", "TOP":
		want := 1
		if cmd.Name == "TOP" {
			want = 2
		}
		if len(cmd.Args) != want {
			ss.fail("%s needs %d argument(s)", cmd.Name, want)
			return
		}
		n, ok := ss.number(cmd.Args[0])
		if !ok {
			return
		}
		lines := -1
		if cmd.Name == "TOP" {
			l, err := strconv.Atoi(cmd.Args[1])
			if err != nil || l < 0 {
				ss.fail("bad line count")
				return
			}
			lines = l
		}
		body, err := ss.body(n - 1)
		if err != nil {
			ss.fail("[SYS/TEMP] message unavailable")
			return
		}
		// "+OK n octets", without fmt: this is the line of every RETR.
		ss.w.Write(strconv.AppendInt(append(ss.scratch[:0], "+OK "...), ss.msgs[n-1].size, 10))
		ss.w.WriteString(" octets\r\n")
		writeDotStuffed(ss.w, body, lines)
		if cmd.Name == "RETR" {
			ss.srv.m.retrieved.Inc()
			if ss.srv.trace != nil {
				ss.publish(fmt.Sprintf("RETR %d (%s UID %d): %d octets", n, ss.user, ss.msgs[n-1].uid, len(body)), len(body))
			}
		}
	case "DELE":
		if len(cmd.Args) != 1 {
			ss.fail("DELE needs a message number")
			return
		}
		if n, ok := ss.number(cmd.Args[0]); ok {
			ss.msgs[n-1].deleted = true
			ss.reply(true, "message %d deleted", n)
		}
	case "RSET":
		for i := range ss.msgs {
			ss.msgs[i].deleted = false
		}
		ss.reply(true, "maildrop has %d messages", len(ss.msgs))
	default:
		ss.fail("unknown command %s", cmd.Name)
	}
}

// Read-ahead of body: clients download in order (RETR 1, 2, 3...), so
// one store round trip fetches the next few.
const (
	readAheadMessages = 128
	readAheadBytes    = 4 << 20
)

// body returns message i's content, from the read-ahead when there; it
// is valid until the next call.
func (ss *session) body(i int) ([]byte, error) {
	uid := ss.msgs[i].uid
	if b, ok := ss.ahead[uid]; ok {
		delete(ss.ahead, uid)
		return b, nil
	}
	uids := []uint32{uid}
	size := ss.msgs[i].size
	for j := i + 1; j < len(ss.msgs) && len(uids) < readAheadMessages && size < readAheadBytes; j++ {
		if !ss.msgs[j].deleted {
			uids = append(uids, ss.msgs[j].uid)
			size += ss.msgs[j].size
		}
	}
	ctx, cancel := ss.ctx()
	defer cancel()
	bodies, err := ss.srv.store.Bodies(ctx, ss.user, "INBOX", uids, &ss.buf)
	if err != nil {
		return nil, err
	}
	b, ok := bodies[uid]
	if !ok {
		return nil, store.ErrNoMessage
	}
	delete(bodies, uid)
	ss.ahead = bodies
	return b, nil
}

// quit ends the session; in the TRANSACTION state it enters UPDATE and
// removes the messages marked deleted.
func (ss *session) quit() bool {
	if ss.user == "" {
		ss.reply(true, "bye")
		return true
	}
	ctx, cancel := ss.ctx()
	defer cancel()
	var failed int
	for _, m := range ss.msgs {
		if !m.deleted {
			continue
		}
		if err := ss.srv.store.Delete(ctx, ss.user, "INBOX", m.uid); err != nil && !errors.Is(err, store.ErrNoMessage) {
			failed++
			ss.srv.log.Warn("pop3d: update", "user", ss.user, "uid", m.uid, "err", err)
			continue
		}
		ss.srv.m.deleted.Inc()
	}
	// Unlock before answering: a client that logs in again at once
	// finds the maildrop free.
	ss.srv.unlock(ss.user)
	ss.user = ""
	if failed > 0 {
		ss.reply(false, "[SYS/TEMP] %d messages not removed", failed)
		return true
	}
	ss.reply(true, "bye")
	return true
}

// writeDotStuffed writes a message as a multi-line response: lines
// starting with "." get another, line ends become CRLF, and the
// terminating ".". With lines >= 0 only the header and that many body
// lines are sent (TOP). A whole message already in that form (CRLF line
// ends, no line starting with ".", as most are) is written in one piece.
func writeDotStuffed(w *bufio.Writer, body []byte, lines int) {
	if lines < 0 && wireReady(body) {
		w.Write(body)
		w.WriteString(".\r\n")
		return
	}
	writeLines(w, body, lines)
}

// writeLines is writeDotStuffed line by line.
func writeLines(w *bufio.Writer, body []byte, lines int) {
	inBody := false
	bodyLines := 0
	for len(body) > 0 {
		if inBody && lines >= 0 && bodyLines >= lines {
			break
		}
		var line []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			line, body = body, nil
		}
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line) > 0 && line[0] == '.' {
			w.WriteByte('.')
		}
		w.Write(line)
		w.WriteString("\r\n")
		if inBody {
			bodyLines++
		} else if len(line) == 0 {
			inBody = true
		}
	}
	w.WriteString(".\r\n")
}

// wireReady reports whether body can be sent as it is in a multi-line
// response: it ends with CRLF, every LF follows a CR, no CR stands
// alone, and no line starts with ".".
func wireReady(b []byte) bool {
	n := len(b)
	if n < 2 || b[n-2] != '\r' || b[n-1] != '\n' || b[0] == '.' {
		return false
	}
	lfs := 0
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			break
		}
		k := i + j
		if k == 0 || b[k-1] != '\r' || (k+1 < n && b[k+1] == '.') {
			return false
		}
		lfs++
		i = k + 1
	}
	return bytes.Count(b, []byte{'\r'}) == lfs
}

// commandBuffered reports whether a whole command line waits in the
// input buffer.
func (ss *session) commandBuffered() bool {
	n := ss.r.Buffered()
	if n == 0 {
		return false
	}
	p, _ := ss.r.Peek(n)
	return bytes.IndexByte(p, '\n') >= 0
}

// publish puts a line on the trace bus (the lab's), if any.
func (ss *session) publish(summary string, n int) {
	if ss.srv.trace == nil {
		return
	}
	ss.srv.trace.Publish(trace.Event{From: ss.nc.RemoteAddr().String(), To: ss.nc.LocalAddr().String(), Proto: "pop3", Summary: summary, Bytes: n})
}
