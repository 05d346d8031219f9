package mta

import (
	"context"
	"crypto/tls"
	"errors"
	"net"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/mail/imapd"
	"github.com/applayer/applayer/mail/mailhub"
	"github.com/applayer/applayer/mail/pop3d"
	"github.com/applayer/applayer/mail/store"
)

// Access configures the mail readers served beside SMTP, each only when
// given an address: IMAP (Addr 143 with STARTTLS, TLSAddr 993) and POP3
// (110 with STLS, 995). Their TLS certificate is the SMTP server's.
type Access struct {
	IMAP imapd.Config
	POP3 pop3d.Config
}

// readers builds the access servers over st (the hub-wrapped store).
func (a Access) readers(d service.Deps, st store.Store, hub *mailhub.Hub, tc *tls.Config, host string) ([]service.Service, error) {
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
	return out, nil
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
// ("imap", "pop3": the plain listener first, then the TLS one).
func (s *Server) ReaderAddrs() map[string][]net.Addr {
	out := map[string][]net.Addr{}
	for _, r := range s.readers {
		if a, ok := r.(service.Addresser); ok {
			out[r.Name()] = a.Addrs()
		}
	}
	return out
}
