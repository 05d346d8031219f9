package mta

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/mail/imapd"
	"github.com/applayer/applayer/mail/mailhub"
	"github.com/applayer/applayer/mail/pop3d"
	"github.com/applayer/applayer/mail/store"
	"github.com/applayer/applayer/mail/webmail"
	"github.com/applayer/applayer/web/labca"
)

// Access configures the mail readers served beside SMTP, each only when
// given an address: IMAP (Addr 143 with STARTTLS, TLSAddr 993) and POP3
// (110 with STLS, 995). Their TLS certificate is the SMTP server's.
type Access struct {
	IMAP imapd.Config
	POP3 pop3d.Config
	// Webmail is served when Webmail.Addr is set. Unless given, it reads
	// through this server's IMAP listener and sends through its SMTP one.
	Webmail webmail.Config
}

// readers builds the access servers over st (the hub-wrapped store).
func (a Access) readers(d service.Deps, st store.Store, hub *mailhub.Hub, tc *tls.Config, cfg Config) ([]service.Service, error) {
	host, roots := hostname(cfg), labRoots(cfg)
	a.IMAP.InsecureAuthLoopback = a.IMAP.InsecureAuthLoopback || cfg.InsecureAuthLoopback
	a.POP3.InsecureAuthLoopback = a.POP3.InsecureAuthLoopback || cfg.InsecureAuthLoopback
	var out []service.Service
	if a.IMAP.Addr != "" || a.IMAP.TLSAddr != "" {
		a.IMAP.TLS = tc
		s, err := imapd.New(a.IMAP, d, st, hub)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if a.POP3.Addr != "" || a.POP3.TLSAddr != "" {
		a.POP3.TLS = tc
		if a.POP3.Hostname == "" {
			a.POP3.Hostname = host
		}
		s, err := pop3d.New(a.POP3, d, st)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if w := a.Webmail; w.Addr != "" {
		if w.IMAPAddr == "" {
			switch {
			case a.IMAP.Addr != "" && (tc == nil || a.IMAP.InsecureAuthLoopback) && isLoopback(a.IMAP.Addr):
				w.IMAPAddr, w.IMAPSecurity = a.IMAP.Addr, webmail.SecurityPlain
			case a.IMAP.TLSAddr != "":
				w.IMAPAddr, w.IMAPSecurity = a.IMAP.TLSAddr, webmail.SecurityTLS
			case a.IMAP.Addr != "":
				w.IMAPAddr, w.IMAPSecurity = a.IMAP.Addr, webmail.SecurityStartTLS
			default:
				return nil, errors.New("mta: web mail needs --imap or --imaps (or its own IMAP server)")
			}
		}
		if w.SMTPAddr == "" {
			// Submission (587 with AUTH) when served, else 465, else the
			// receiver (local domains only, no AUTH).
			switch {
			case cfg.SubmissionAddr != "":
				w.SMTPAddr, w.SMTPSecurity = cfg.SubmissionAddr, webmail.SecurityStartTLS
				if tc == nil || (cfg.InsecureAuthLoopback && isLoopback(cfg.SubmissionAddr)) {
					w.SMTPSecurity = webmail.SecurityPlain
				}
			case cfg.SubmissionsAddr != "":
				w.SMTPAddr, w.SMTPSecurity = cfg.SubmissionsAddr, webmail.SecurityTLS
			default:
				w.SMTPAddr, w.SMTPSecurity = cfg.SMTP.Addr, webmail.SecurityPlain
				if tc != nil && !isLoopback(cfg.SMTP.Addr) {
					w.SMTPSecurity = webmail.SecurityStartTLS
				}
			}
		}
		if w.RootCAs == nil {
			w.RootCAs = roots
		}
		if w.ServerName == "" {
			w.ServerName = host
		}
		if w.Hostname == "" {
			w.Hostname = host
		}
		s, err := webmail.New(w, d)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// labRoots is the lab CA's pool when the certificate comes from it (the
// web mail checks this server's certificate with it), else nil (the
// system's roots).
func labRoots(cfg Config) *x509.CertPool {
	if cfg.CertFile != "" || cfg.CADir == "" {
		return nil
	}
	ca, err := labca.LoadOrCreate(cfg.CADir)
	if err != nil {
		return nil
	}
	return ca.Pool()
}

func hostname(cfg Config) string {
	if cfg.SMTP.Hostname != "" {
		return cfg.SMTP.Hostname
	}
	return cfg.SMTP.Domains[0]
}

func isLoopback(addr string) bool {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func startAll(ctx context.Context, ss []service.Service) error {
	for i, s := range ss {
		if err := s.Start(ctx); err != nil {
			shutdownAll(context.WithoutCancel(ctx), ss[:i])
			return err
		}
	}
	return nil
}

func shutdownAll(ctx context.Context, ss []service.Service) error {
	var err error
	for _, s := range ss {
		err = errors.Join(err, s.Shutdown(ctx))
	}
	return err
}

// ReaderAddrs returns each access server's bound addresses, by name
// ("imap", "pop3": the plain listener first, then the TLS one;
// "webmail").
func (s *Server) ReaderAddrs() map[string][]net.Addr {
	out := map[string][]net.Addr{}
	for _, r := range s.readers {
		if a, ok := r.(service.Addresser); ok {
			out[r.Name()] = a.Addrs()
		}
	}
	return out
}
