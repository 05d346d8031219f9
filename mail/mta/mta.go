// Package mta puts applayer's mail server together: the mail store, the
// durable queue delivering into it, and the SMTP receiver in front, as one
// service.Service (what `applayer mail serve` runs).
package mta

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

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
	// DB is the SQLite store's file.
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
	// Access: IMAP and POP3 (access.go).
	Access Access
}

// Server is the mail server.
type Server struct {
	st   *store.SQLite
	q    *queue.Queue
	smtp *smtpd.Server
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
	tc, err := tlsConfig(cfg)
	if err != nil {
		return nil, err
	}
	cfg.SMTP.TLS = tc
	if cfg.Store.Now == nil {
		cfg.Store.Now = d.Now
	}
	st, err := store.OpenSQLite(ctx, cfg.DB, cfg.Store)
	if err != nil {
		return nil, err
	}
	cfg.Queue.Dir = cfg.Spool
	hub := mailhub.New()
	q, err := queue.New(cfg.Queue, d, queue.Local{Store: hub.Wrap(st)})
	if err != nil {
		st.Close()
		return nil, err
	}
	srv, err := smtpd.New(cfg.SMTP, d, st, q)
	if err != nil {
		st.Close()
		return nil, err
	}
	readers, err := cfg.Access.readers(d, hub.Wrap(st), hub, tc, labRoots(cfg), hostname(cfg), cfg.SMTP.Addr)
	if err != nil {
		st.Close()
		return nil, err
	}
	return &Server{st: st, q: q, smtp: srv, hub: hub, readers: readers}, nil
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
		cert, err := ca.Issue(append([]string{host}, cfg.SMTP.Domains...)...)
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
// readers' (IMAP, POP3) in that order.
func (s *Server) Addrs() []net.Addr {
	out := s.smtp.Addrs()
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
	if err := s.smtp.Start(ctx); err != nil {
		s.q.Shutdown(ctx)
		return err
	}
	if err := startAll(ctx, s.readers); err != nil {
		s.smtp.Shutdown(ctx)
		s.q.Shutdown(ctx)
		return err
	}
	return nil
}

// Shutdown stops receiving, then delivering, and closes the store.
func (s *Server) Shutdown(ctx context.Context) error {
	err := errors.Join(shutdownAll(ctx, s.readers), s.smtp.Shutdown(ctx), s.q.Shutdown(ctx))
	return errors.Join(err, s.st.Close())
}
