package queue

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
)

// Signer signs an outgoing message just before it is relayed (DKIM): it
// returns the header fields to prepend, each ending in CRLF. An error
// defers the delivery.
type Signer interface {
	Sign(ctx context.Context, env Envelope, msg []byte) (header []byte, err error)
}

// SignerFunc adapts a function to Signer.
type SignerFunc func(ctx context.Context, env Envelope, msg []byte) ([]byte, error)

// Sign calls f.
func (f SignerFunc) Sign(ctx context.Context, env Envelope, msg []byte) ([]byte, error) {
	return f(ctx, env, msg)
}

// Remote relays a message to another domain's mail servers: the domain's
// MX records in preference order (equal preferences shuffled), or its own
// A/AAAA records when it has no MX (RFC 5321 5.1); a null MX (RFC 7505)
// fails at once. Each host's addresses are tried in turn until one
// accepts or refuses for good; STARTTLS is used whenever a server offers
// it, without certificate checks (opportunistic, RFC 7435), and a failed
// handshake is retried in plain text. At most PerDestination deliveries
// to one domain run at once; a delivery that waits longer than a minute
// (or Timeout) for its turn is deferred (4.4.5).
type Remote struct {
	// Resolver answers the MX and address lookups.
	Resolver Resolver
	// Hostname is this MTA's name in EHLO.
	Hostname string
	// Port is the destination servers' SMTP port (default 25; the lab
	// adds its port offset).
	Port int
	// Dialer opens the connections (nil: a net.Dialer).
	Dialer service.Dialer
	// NoTLS turns opportunistic STARTTLS off.
	NoTLS bool
	// PerDestination bounds concurrent deliveries per domain (default 5).
	PerDestination int
	// Timeout bounds connecting and each command (default 5 minutes as
	// RFC 5321 4.5.3.2 recommends; the lab shortens it).
	Timeout time.Duration
	// Signer, when set, signs each message before it is sent (DKIM).
	Signer Signer
	// Logger and Trace observe deliveries.
	Logger *slog.Logger
	Trace  *trace.Bus

	mu    sync.Mutex
	dests map[string]*dest
	noTLS map[netip.Addr]time.Time // servers whose STARTTLS failed, until when to skip it
}

type dest struct {
	sem  chan struct{}
	refs int
}

// acquire takes one of domain's delivery slots.
func (r *Remote) acquire(ctx context.Context, domain string) (func(), error) {
	r.mu.Lock()
	if r.dests == nil {
		r.dests = map[string]*dest{}
	}
	d := r.dests[domain]
	if d == nil {
		n := r.PerDestination
		if n <= 0 {
			n = 5
		}
		d = &dest{sem: make(chan struct{}, n)}
		r.dests[domain] = d
	}
	d.refs++
	r.mu.Unlock()
	unref := func() {
		r.mu.Lock()
		if d.refs--; d.refs == 0 {
			delete(r.dests, domain)
		}
		r.mu.Unlock()
	}
	// A worker waits at most a minute (or Timeout) for a slot, so a slow
	// destination cannot hold every worker: past that the recipient is
	// deferred like any temporary failure.
	t := time.NewTimer(min(r.timeout(), time.Minute))
	defer t.Stop()
	select {
	case d.sem <- struct{}{}:
		return func() { <-d.sem; unref() }, nil
	case <-t.C:
		unref()
		return nil, &DeliveryError{Status: "4.4.5", Diagnostic: "x-applayer; too many deliveries to " + domain + " at once", Err: fmt.Errorf("queue: %s: every delivery slot busy", domain)}
	case <-ctx.Done():
		unref()
		return nil, ctx.Err()
	}
}

func (r *Remote) timeout() time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return 5 * time.Minute
}

func (r *Remote) log() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

// Hosts returns the hosts to try for domain, in order: the MX targets by
// preference, or the domain itself when it has no MX. A null MX is a
// permanent failure.
func (r *Remote) Hosts(ctx context.Context, domain string) ([]string, error) {
	mxs, err := r.Resolver.LookupMX(ctx, domain)
	if errors.Is(err, ErrNoDomain) {
		return nil, Permanent(&DeliveryError{Status: "5.1.2", Diagnostic: "x-applayer; domain " + domain + " does not exist", Err: err})
	}
	if err != nil {
		return nil, &DeliveryError{Status: "4.4.3", Diagnostic: "x-applayer; MX lookup failed", Err: err}
	}
	if len(mxs) == 0 {
		return []string{domain}, nil // implicit MX (RFC 5321 5.1)
	}
	for _, m := range mxs {
		if m.Host == "." {
			// RFC 7505: a domain that accepts no mail.
			return nil, Permanent(&DeliveryError{Status: "5.1.10", Diagnostic: "x-applayer; 556 5.1.10 domain " + domain + " accepts no mail (null MX)", Err: fmt.Errorf("queue: %s has a null MX", domain)})
		}
	}
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	slices.SortStableFunc(mxs, func(a, b MX) int { return int(a.Pref) - int(b.Pref) })
	var out []string
	for _, m := range mxs {
		if !slices.Contains(out, m.Host) {
			out = append(out, m.Host)
		}
	}
	return out, nil
}

// Deliver implements Deliverer.
func (r *Remote) Deliver(ctx context.Context, env Envelope, rcpt string, body []byte) error {
	at := strings.LastIndexByte(rcpt, '@')
	if at < 0 {
		return Permanent(&DeliveryError{Status: "5.1.3", Diagnostic: "x-applayer; bad recipient address", Err: fmt.Errorf("queue: bad recipient %q", rcpt)})
	}
	domain := strings.ToLower(rcpt[at+1:])
	release, err := r.acquire(ctx, domain)
	if err != nil {
		return err
	}
	defer release()
	hosts, err := r.Hosts(ctx, domain)
	if err != nil {
		return err
	}
	if r.Signer != nil {
		hdr, err := r.Signer.Sign(ctx, env, body)
		if err != nil {
			return &DeliveryError{Status: "4.3.0", Diagnostic: "x-applayer; signing failed", Err: fmt.Errorf("queue: sign: %w", err)}
		}
		body = append(hdr[:len(hdr):len(hdr)], body...)
	}
	var lastErr error
	tried := 0
	for _, host := range hosts {
		addrs, err := r.Resolver.LookupAddr(ctx, host)
		if err != nil {
			if len(hosts) == 1 && host == domain && errors.Is(err, ErrNoDomain) {
				return Permanent(&DeliveryError{Status: "5.1.2", Diagnostic: "x-applayer; domain " + domain + " does not exist", Err: err})
			}
			lastErr = &DeliveryError{Status: "4.4.3", Diagnostic: "x-applayer; address lookup of " + host + " failed", Err: err}
			continue
		}
		for _, a := range addrs {
			if tried++; tried > 10 {
				break
			}
			err := r.sendTo(ctx, host, a, env, rcpt, body)
			if err == nil {
				return nil
			}
			if IsPermanent(err) {
				return err // a server's refusal is final: no other MX is asked
			}
			lastErr = err
			if ctx.Err() != nil {
				return lastErr
			}
		}
	}
	if lastErr == nil {
		lastErr = &DeliveryError{Status: "4.4.4", Diagnostic: "x-applayer; no usable mail server for " + domain, Err: fmt.Errorf("queue: no mail server for %s", domain)}
	}
	return lastErr
}

// sendTo runs one SMTP transaction with the server at addr, with STARTTLS
// when it offers it, and again in plain text if the TLS attempt failed.
func (r *Remote) sendTo(ctx context.Context, host string, addr netip.Addr, env Envelope, rcpt string, body []byte) error {
	useTLS := !r.NoTLS
	r.mu.Lock()
	if until, ok := r.noTLS[addr]; ok && time.Now().Before(until) {
		useTLS = false
	}
	r.mu.Unlock()
	err := r.transaction(ctx, host, addr, useTLS, env, rcpt, body)
	var te *tlsError
	if errors.As(err, &te) {
		r.log().Info("queue: STARTTLS failed, trying plain text", "host", host, "addr", addr, "err", te.err)
		r.mu.Lock()
		if r.noTLS == nil {
			r.noTLS = map[netip.Addr]time.Time{}
		}
		for a, until := range r.noTLS {
			if time.Now().After(until) {
				delete(r.noTLS, a)
			}
		}
		r.noTLS[addr] = time.Now().Add(time.Hour)
		r.mu.Unlock()
		err = r.transaction(ctx, host, addr, false, env, rcpt, body)
	}
	return err
}

// tlsError is a failure to set up STARTTLS (not offered, refused, or the
// handshake failed): the transaction is tried again in plain text.
type tlsError struct{ err error }

func (e *tlsError) Error() string { return "STARTTLS: " + e.err.Error() }

func (r *Remote) transaction(ctx context.Context, host string, addr netip.Addr, useTLS bool, env Envelope, rcpt string, body []byte) error {
	port := r.Port
	if port == 0 {
		port = 25
	}
	target := net.JoinHostPort(addr.String(), strconv.Itoa(port))
	d := r.Dialer
	if d == nil {
		d = &net.Dialer{}
	}
	dctx, cancel := context.WithTimeout(ctx, min(r.timeout(), 30*time.Second))
	conn, err := d.DialContext(dctx, "tcp", target)
	cancel()
	if err != nil {
		return &DeliveryError{Status: "4.4.1", Diagnostic: fmt.Sprintf("x-applayer; connect to %s[%s]: %v", host, target, err), RemoteMTA: host, Err: fmt.Errorf("queue: connect to %s[%s]: %w", host, target, err)}
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	local := conn.LocalAddr().String()
	var c *smtp.Client
	if useTLS {
		c, err = smtp.NewClientStartTLS(conn, &tls.Config{ServerName: host, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
		if err != nil {
			conn.Close()
			return &tlsError{err}
		}
	} else {
		c = smtp.NewClient(conn)
	}
	defer c.Close()
	c.CommandTimeout, c.SubmissionTimeout = r.timeout(), 2*r.timeout()
	fail := func(stage string, err error) error {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			status := fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
			if se.EnhancedCode == smtp.NoEnhancedCode || se.EnhancedCode[0] == 0 {
				status = fmt.Sprintf("%d.0.0", se.Code/100)
			}
			de := &DeliveryError{Status: status, Diagnostic: fmt.Sprintf("smtp; %d %s %s", se.Code, status, se.Message), RemoteMTA: host,
				Err: fmt.Errorf("queue: %s[%s] said after %s: %d %s", host, target, stage, se.Code, se.Message)}
			r.Trace.Publish(trace.Event{From: target, To: local, Proto: "smtp", Summary: fmt.Sprintf("%d %s (%s)", se.Code, se.Message, stage)})
			if se.Code >= 500 {
				return Permanent(de)
			}
			return de
		}
		return &DeliveryError{Status: "4.4.2", Diagnostic: fmt.Sprintf("x-applayer; %s[%s] during %s: %v", host, target, stage, err), RemoteMTA: host, Err: fmt.Errorf("queue: %s[%s] during %s: %w", host, target, stage, err)}
	}
	if err := c.Hello(r.Hostname); err != nil {
		if useTLS {
			return &tlsError{err} // the handshake happens here
		}
		return fail("EHLO", err)
	}
	_, isTLS := c.TLSConnectionState()
	r.Trace.Publish(trace.Event{From: local, To: target, Proto: "smtp", Summary: fmt.Sprintf("EHLO %s to %s (TLS %v)", r.Hostname, host, isTLS)})
	opts := &smtp.MailOptions{Size: int64(len(body))}
	if !isASCII(env.From) || !isASCII(rcpt) {
		opts.UTF8 = true
	}
	if err := c.Mail(env.From, opts); err != nil {
		return fail("MAIL FROM", err)
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return fail("RCPT TO", err)
	}
	w, err := c.Data()
	if err != nil {
		return fail("DATA", err)
	}
	if _, err := w.Write(body); err != nil {
		return fail("DATA", err)
	}
	// Published before the final "." goes out, so that it comes before
	// whatever the receiver traces of its checks and its reply (the
	// reply is the receiver's to trace; a refusal is traced by fail).
	r.Trace.Publish(trace.Event{From: local, To: target, Proto: "smtp", Summary: fmt.Sprintf("MAIL FROM:<%s> RCPT TO:<%s> DATA", env.From, rcpt), Bytes: len(body)})
	resp, err := w.CloseWithResponse()
	if err != nil {
		return fail("end of DATA", err)
	}
	c.Quit()
	r.log().Info("queue: relayed", "id", env.ID, "to", rcpt, "host", host, "addr", target, "tls", isTLS, "reply", resp.StatusText)
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
