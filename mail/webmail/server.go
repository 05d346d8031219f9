// Package webmail is applayer's web mail: a small server-rendered HTML
// application (html/template, go:embed) where a user logs in, browses
// folders and pages of messages, reads a message (its HTML part sanitised
// by bluemonday, remote images blocked), downloads attachments, composes,
// replies and forwards with attachments, moves, deletes and searches.
//
// Like Roundcube it keeps no mail of its own: every page reads through
// IMAP with the user's credentials, and mail is sent through SMTP
// submission (AUTH when offered), so it works in front of any IMAP and
// submission server. Sessions are server-side, named by a random cookie
// (HttpOnly, SameSite=Strict, Secure over TLS); every form carries the
// session's CSRF token; failed logins are rate limited per client address.
package webmail

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/internal/transport"
)

// Security is how the web mail reaches a server.
type Security int

// Security modes.
const (
	// SecurityPlain: no TLS (only sensible to a loopback server).
	SecurityPlain Security = iota
	// SecurityStartTLS: STARTTLS on a plain connection.
	SecurityStartTLS
	// SecurityTLS: implicit TLS (993, 465).
	SecurityTLS
)

// Defaults of Config's zero fields.
const (
	DefaultPageSize      = 25
	DefaultSessionTTL    = 8 * time.Hour
	DefaultLoginFailures = 5 // per client address per LoginWindow
	DefaultLoginWindow   = time.Minute
	DefaultMaxUpload     = 20 << 20
	opTimeout            = 30 * time.Second
)

// Config configures a Server.
type Config struct {
	// Addr is the HTTP listen address.
	Addr string
	// TLS, when set, serves HTTPS (and cookies get the Secure flag).
	TLS *tls.Config
	// IMAPAddr and IMAPSecurity: the IMAP server read through.
	IMAPAddr     string
	IMAPSecurity Security
	// SMTPAddr and SMTPSecurity: the submission server sent through.
	SMTPAddr     string
	SMTPSecurity Security
	// RootCAs verify the IMAP and SMTP servers (nil: the system's);
	// ServerName, when set, is the name checked (else the address's host).
	RootCAs    *x509.CertPool
	ServerName string
	// Hostname is this server's name (Message-IDs, EHLO).
	Hostname string
	// PageSize is how many messages a list page shows.
	PageSize int
	// SessionTTL ends idle sessions.
	SessionTTL time.Duration
	// LoginFailures failed logins from one address within LoginWindow
	// make further attempts wait (429) until the window passes.
	LoginFailures int
	LoginWindow   time.Duration
	// MaxUpload bounds a compose form with its attachments.
	MaxUpload int64
}

// Server is the web mail server, a service.Service.
type Server struct {
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	trace *trace.Bus
	tmpl  *template.Template
	m     metrics

	mu       sync.Mutex
	sessions map[string]*session
	failures map[netip.Addr][]time.Time
	ln       net.Listener
	ts       *transport.Front
	http     *http.Server
	served   chan struct{}
}

type metrics struct {
	logins   *prometheus.CounterVec
	sent     prometheus.Counter
	requests *prometheus.CounterVec
}

// session is a logged-in user. The password is kept in memory only, to
// open IMAP and SMTP sessions on the user's behalf.
type session struct {
	user, password string
	csrf           string
	expires        time.Time
}

//go:embed templates/*.html
var templates embed.FS

// New returns a web mail server.
func New(cfg Config, d service.Deps) (*Server, error) {
	d = d.Defaults()
	if cfg.Addr == "" || cfg.IMAPAddr == "" || cfg.SMTPAddr == "" {
		return nil, errors.New("webmail: listen, IMAP and SMTP addresses are needed")
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = DefaultPageSize
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.LoginFailures <= 0 {
		cfg.LoginFailures = DefaultLoginFailures
	}
	if cfg.LoginWindow <= 0 {
		cfg.LoginWindow = DefaultLoginWindow
	}
	if cfg.MaxUpload <= 0 {
		cfg.MaxUpload = DefaultMaxUpload
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "localhost"
	}
	t, err := template.New("").Funcs(funcs).ParseFS(templates, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("webmail: templates: %w", err)
	}
	s := &Server{cfg: cfg, log: d.Logger, now: d.Now, trace: d.Trace, tmpl: t, sessions: map[string]*session{}, failures: map[netip.Addr][]time.Time{}}
	s.m.logins = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "mail", Name: "webmail_logins_total", Help: "Web mail logins, by result (ok, fail, limited)."}, []string{"result"})
	s.m.sent = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "mail", Name: "webmail_sent_total", Help: "Messages sent from the web mail."})
	s.m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "mail", Name: "webmail_requests_total", Help: "Web mail requests, by page."}, []string{"page"})
	for _, c := range []prometheus.Collector{s.m.logins, s.m.sent, s.m.requests} {
		if err := d.Metrics.Register(c); err != nil {
			return nil, fmt.Errorf("webmail: metrics: %w", err)
		}
	}
	return s, nil
}

// Name implements service.Service.
func (s *Server) Name() string { return "webmail" }

// Addrs implements service.Addresser.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return []net.Addr{s.ln.Addr()}
}

// Start binds the listener and starts serving.
func (s *Server) Start(ctx context.Context) error {
	ln, err := transport.ListenConfig{}.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("webmail: %w", err)
	}
	ts := transport.NewFront(transport.StreamConfig{MaxConns: 1000, MaxConnsPerIP: 100, Logger: s.log}, ln.Addr())
	hs := &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	served := make(chan struct{})
	s.mu.Lock()
	s.ln, s.ts, s.http, s.served = ln, ts, hs, served
	s.mu.Unlock()
	go func() {
		defer close(served)
		if s.cfg.TLS != nil {
			hs.TLSConfig = s.cfg.TLS
			hs.ServeTLS(ts.Listener(), "", "")
		} else {
			hs.Serve(ts.Listener())
		}
	}()
	if err := ts.Start(ln); err != nil {
		hs.Close()
		return fmt.Errorf("webmail: %w", err)
	}
	return nil
}

// Shutdown stops accepting and lets requests finish until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	ts, hs, served := s.ts, s.http, s.served
	s.ts = nil
	s.mu.Unlock()
	if ts == nil {
		return nil
	}
	ts.Shutdown(ctx)
	err := hs.Shutdown(ctx)
	if err != nil {
		hs.Close()
	}
	<-served
	if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("webmail: shutdown: %w", err)
	}
	return nil
}

func token() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

const cookieName = "applayer_webmail"

// sessionOf returns the request's live session, if any.
func (s *Server) sessionOf(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[c.Value]
	if ss == nil {
		return nil
	}
	now := s.now()
	if now.After(ss.expires) {
		delete(s.sessions, c.Value)
		return nil
	}
	ss.expires = now.Add(s.cfg.SessionTTL)
	return ss
}

func (s *Server) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, Secure: s.cfg.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: maxAge})
}

// newSession logs a user in: a fresh session id (no fixation) and CSRF
// token.
func (s *Server) newSession(w http.ResponseWriter, user, password string) {
	id := token()
	s.mu.Lock()
	now := s.now()
	for k, v := range s.sessions { // drop expired ones
		if now.After(v.expires) {
			delete(s.sessions, k)
		}
	}
	s.sessions[id] = &session{user: user, password: password, csrf: token(), expires: now.Add(s.cfg.SessionTTL)}
	s.mu.Unlock()
	s.setCookie(w, cookieName, id, 0)
}

func (s *Server) endSession(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil {
		s.mu.Lock()
		delete(s.sessions, c.Value)
		s.mu.Unlock()
	}
	s.setCookie(w, cookieName, "", -1)
}

// limited reports whether the client has used up its failed logins.
func (s *Server) limited(ip netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	cut := s.now().Add(-s.cfg.LoginWindow)
	var keep []time.Time
	for _, t := range s.failures[ip] {
		if t.After(cut) {
			keep = append(keep, t)
		}
	}
	if len(keep) == 0 {
		delete(s.failures, ip)
	} else {
		s.failures[ip] = keep
	}
	return len(keep) >= s.cfg.LoginFailures
}

func (s *Server) failed(ip netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures[ip] = append(s.failures[ip], s.now())
}

func clientIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func csrfOK(ss *session, r *http.Request) bool {
	return subtle.ConstantTimeCompare([]byte(r.FormValue("csrf")), []byte(ss.csrf)) == 1
}
