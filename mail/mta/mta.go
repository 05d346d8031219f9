// Package mta puts applayer's mail server together: the mail store, the
// durable queue delivering into it (local domains) or relaying by MX
// (others), the SMTP receiver in front (port 25's role) and the submission
// listeners (587 with STARTTLS, 465 with implicit TLS), as one
// service.Service (what `applayer mail serve` runs).
package mta

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/mail/mailhub"
	"github.com/applayer/applayer/mail/queue"
	"github.com/applayer/applayer/mail/smtpd"
	"github.com/applayer/applayer/mail/store"
	"github.com/applayer/applayer/web/labca"
)

// Config configures a mail server.
type Config struct {
	// SMTP is the receiver's configuration (Domains required).
	SMTP smtpd.Config
	// DB is the store: an SQLite file, or a postgres:// URL (store.Open).
	DB string
	// Spool is the queue's directory.
	Spool string
	// Queue tunes delivery (its Dir is Spool).
	Queue queue.Config
	// CertFile and KeyFile give STARTTLS a certificate; else CADir, when
	// set, is the lab CA that issues one for the hostname; else no TLS.
	CertFile, KeyFile, CADir string
	// Store tunes the store (tests lower the bcrypt cost).
	Store store.Options
	// Policy makes Signer and Inbound (mail/policy) when they are unset.
	Policy PolicyConfig

	// SubmissionAddr (587, STARTTLS) and SubmissionsAddr (465, implicit
	// TLS), when set, serve message submission with AUTH for the users of
	// the store.
	SubmissionAddr, SubmissionsAddr string
	// InsecureAuthLoopback allows AUTH without TLS from loopback clients
	// on the submission listeners.
	InsecureAuthLoopback bool
	// RateLimit messages per RateWindow per user on submission (defaults
	// 100 per hour).
	RateLimit  int
	RateWindow time.Duration

	// Resolver is the DNS resolver (host:port) for MX lookups of remote
	// domains; empty: the system's.
	Resolver string
	// RelayPort is the remote servers' SMTP port (default 25).
	RelayPort int
	// RelayTimeout bounds connecting and each command when relaying.
	RelayTimeout time.Duration
	// NoRelayTLS turns off opportunistic STARTTLS when relaying.
	NoRelayTLS bool
	// Signer signs outgoing mail before it is relayed (DKIM), when set.
	Signer queue.Signer
	// Inbound checks mail received on the SMTP port (DKIM, SPF, DMARC),
	// when set.
	Inbound smtpd.Inbound

	// Access: IMAP, POP3 and web mail (access.go).
	Access Access
}

// Server is the mail server.
type Server struct {
	st     store.Store
	q      *queue.Queue
	smtp   *smtpd.Server
	submit []*smtpd.Server
	remote *queue.Remote
	// Deliveries and the readers' changes go through the hub, which
	// wakes IMAP IDLE.
	hub     *mailhub.Hub
	readers []service.Service
}

// New opens the store and the spool and builds the receiver.
func New(ctx context.Context, cfg Config, d service.Deps) (*Server, error) {
	d = d.Defaults()
	if cfg.DB == "" || cfg.Spool == "" {
		return nil, errors.New("mta: a store database and a spool directory are needed")
	}
	if len(cfg.SMTP.Domains) == 0 {
		return nil, errors.New("mta: no local domains")
	}
	if err := policyHooks(&cfg, d); err != nil {
		return nil, err
	}
	tc, err := tlsConfig(cfg)
	if err != nil {
		return nil, err
	}
	cfg.SMTP.TLS = tc
	if cfg.Store.Now == nil {
		cfg.Store.Now = d.Now
	}
	st, err := store.Open(ctx, cfg.DB, cfg.Store)
	if err != nil {
		return nil, err
	}
	if cfg.SMTP.Hostname == "" {
		cfg.SMTP.Hostname = cfg.SMTP.Domains[0]
	}
	cfg.Queue.Dir = cfg.Spool
	if cfg.Queue.Hostname == "" {
		cfg.Queue.Hostname = cfg.SMTP.Hostname
	}
	var res queue.Resolver = queue.SystemResolver{R: net.DefaultResolver}
	if cfg.Resolver != "" {
		res = &queue.DNSResolver{Server: cfg.Resolver, Dialer: d.Dialer, Trace: d.Trace}
	}
	remote := &queue.Remote{Resolver: res, Hostname: cfg.SMTP.Hostname, Port: cfg.RelayPort, Dialer: d.Dialer, NoTLS: cfg.NoRelayTLS,
		Timeout: cfg.RelayTimeout, Signer: cfg.Signer, Logger: d.Logger, Trace: d.Trace}
	hub := mailhub.New()
	q, err := queue.New(cfg.Queue, d, Router(cfg.SMTP.Domains, queue.Local{Store: hub.Wrap(st), Trace: d.Trace, Name: cfg.SMTP.Hostname}, remote))
	if err != nil {
		st.Close()
		return nil, err
	}
	s := &Server{st: st, q: q, remote: remote, hub: hub}
	cfg.SMTP.Inbound = cfg.Inbound
	if s.smtp, err = smtpd.New(cfg.SMTP, d, st, q); err != nil {
		st.Close()
		return nil, err
	}
	limiter := smtpd.NewRateLimiter(cfg.RateLimit, cfg.RateWindow, d.Now)
	for _, l := range []struct {
		addr, role string
		implicit   bool
	}{{cfg.SubmissionAddr, "submission", false}, {cfg.SubmissionsAddr, "submissions", true}} {
		if l.addr == "" {
			continue
		}
		sc := cfg.SMTP
		sc.Addr, sc.Role, sc.Submission, sc.ImplicitTLS = l.addr, l.role, true, l.implicit
		sc.InsecureAuthLoopback, sc.Limiter, sc.Inbound = cfg.InsecureAuthLoopback, limiter, nil
		srv, err := smtpd.New(sc, d, st, q)
		if err != nil {
			st.Close()
			return nil, err
		}
		s.submit = append(s.submit, srv)
	}
	if s.readers, err = cfg.Access.readers(d, hub.Wrap(st), hub, tc, cfg); err != nil {
		st.Close()
		return nil, err
	}
	return s, nil
}

// Router delivers mail for the local domains with local and everything
// else with remote.
func Router(domains []string, local, remote queue.Deliverer) queue.Deliverer {
	ours := map[string]bool{}
	for _, d := range domains {
		ours[strings.ToLower(strings.TrimSuffix(d, "."))] = true
	}
	return queue.DelivererFunc(func(ctx context.Context, env queue.Envelope, rcpt string, body []byte) error {
		at := strings.LastIndexByte(rcpt, '@')
		if at >= 0 && ours[strings.ToLower(rcpt[at+1:])] {
			return local.Deliver(ctx, env, rcpt, body)
		}
		return remote.Deliver(ctx, env, rcpt, body)
	})
}

func tlsConfig(cfg Config) (*tls.Config, error) {
	switch {
	case cfg.CertFile != "" || cfg.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mta: certificate: %w", err)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}}, nil
	case cfg.CADir != "":
		ca, err := labca.LoadOrCreate(cfg.CADir)
		if err != nil {
			return nil, fmt.Errorf("mta: lab CA: %w", err)
		}
		host := cfg.SMTP.Hostname
		if host == "" {
			host = cfg.SMTP.Domains[0]
		}
		names := append([]string{host}, cfg.SMTP.Domains...)
		// The listeners' addresses too, for clients that connect by IP.
		for _, a := range []string{cfg.SMTP.Addr, cfg.SubmissionAddr, cfg.SubmissionsAddr} {
			if h, _, err := net.SplitHostPort(a); err == nil {
				if ip := net.ParseIP(h); ip != nil && !ip.IsUnspecified() {
					names = append(names, h)
				}
			}
		}
		cert, err := ca.Issue(names...)
		if err != nil {
			return nil, fmt.Errorf("mta: lab CA: %w", err)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}}, nil
	}
	return nil, nil
}

// Name implements service.Service.
func (s *Server) Name() string { return "mail" }

// Store returns the mail store.
func (s *Server) Store() store.Store { return s.hub.Wrap(s.st) }

// Queue returns the queue.
func (s *Server) Queue() *queue.Queue { return s.q }

// Addrs implements service.Addresser: the SMTP listener, then the
// submission listeners (587's, 465's) that are configured.
func (s *Server) Addrs() []net.Addr {
	out := s.smtp.Addrs()
	for _, sub := range s.submit {
		out = append(out, sub.Addrs()...)
	}
	for _, r := range s.readers {
		if a, ok := r.(service.Addresser); ok {
			out = append(out, a.Addrs()...)
		}
	}
	return out
}

// Start starts delivering what the spool holds, then receiving.
func (s *Server) Start(ctx context.Context) error {
	if err := s.q.Start(ctx); err != nil {
		return err
	}
	started := []*smtpd.Server{}
	for _, srv := range append([]*smtpd.Server{s.smtp}, s.submit...) {
		if err := srv.Start(ctx); err != nil {
			for _, st := range started {
				st.Shutdown(ctx)
			}
			s.q.Shutdown(ctx)
			return err
		}
		started = append(started, srv)
	}
	if err := startAll(ctx, s.readers); err != nil {
		for _, st := range started {
			st.Shutdown(ctx)
		}
		s.q.Shutdown(ctx)
		return err
	}
	return nil
}

// Shutdown stops receiving, then delivering, and closes the store.
func (s *Server) Shutdown(ctx context.Context) error {
	errs := []error{shutdownAll(ctx, s.readers)}
	for _, srv := range append([]*smtpd.Server{s.smtp}, s.submit...) {
		errs = append(errs, srv.Shutdown(ctx))
	}
	errs = append(errs, s.q.Shutdown(ctx), s.st.Close())
	return errors.Join(errs...)
}
