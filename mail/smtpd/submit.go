package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/applayer/applayer/mail/store"
)

// Message submission (RFC 6409, RFC 8314): on a server with
// Config.Submission a client must authenticate with AUTH PLAIN or LOGIN
// (over TLS, or from loopback when Config.InsecureAuthLoopback) before
// MAIL; its envelope sender and every From address must be its own; it may
// then send to any domain, at most Config.RateLimit messages per
// Config.RateWindow.

// Defaults of the submission rate limit.
const (
	DefaultRateLimit  = 100
	DefaultRateWindow = time.Hour
)

// RateLimiter counts each user's messages over a sliding window. One
// limiter is shared by the submission listeners of a server (587 and 465),
// so a user cannot double the allowance by switching ports.
type RateLimiter struct {
	limit  int
	window time.Duration
	now    func() time.Time

	mu   sync.Mutex
	sent map[string][]time.Time
}

// NewRateLimiter allows limit messages per window per user (defaults
// DefaultRateLimit per DefaultRateWindow); now is the clock (nil: time.Now).
func NewRateLimiter(limit int, window time.Duration, now func() time.Time) *RateLimiter {
	if limit <= 0 {
		limit = DefaultRateLimit
	}
	if window <= 0 {
		window = DefaultRateWindow
	}
	if now == nil {
		now = time.Now
	}
	return &RateLimiter{limit: limit, window: window, now: now, sent: map[string][]time.Time{}}
}

// prune drops the times older than the window; the caller holds mu.
func (r *RateLimiter) prune(user string, now time.Time) []time.Time {
	ts := r.sent[user]
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= r.window {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(r.sent, user)
	} else {
		r.sent[user] = ts
	}
	return ts
}

// Allow reports whether user may send another message now.
func (r *RateLimiter) Allow(user string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.prune(user, r.now())) < r.limit
}

// Sent records a message sent by user.
func (r *RateLimiter) Sent(user string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	r.sent[user] = append(r.prune(user, now), now)
}

// authAllowed reports whether this connection may authenticate: over TLS,
// or from a loopback address when the server allows that.
func (ss *session) authAllowed() bool {
	if _, ok := ss.sc.TLSConnectionState(); ok {
		return true
	}
	return ss.s.cfg.InsecureAuthLoopback && ss.c.remote.Addr().Unmap().IsLoopback()
}

// AuthMechanisms implements smtp.AuthSession: PLAIN and LOGIN on a
// submission server where authentication is allowed, else none.
func (ss *session) AuthMechanisms() []string {
	if !ss.s.cfg.Submission || !ss.authAllowed() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

var (
	errAuthFailed   = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "authentication credentials invalid"}
	errAuthNeedsTLS = &smtp.SMTPError{Code: 523, EnhancedCode: smtp.EnhancedCode{5, 7, 10}, Message: "TLS is required for authentication"}
	errAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "authentication required"}
	errAuthTemp     = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "temporary authentication failure"}
	errRateLimited  = &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "too many messages, try again later"}
)

// Auth implements smtp.AuthSession.
func (ss *session) Auth(mech string) (sasl.Server, error) {
	if !ss.s.cfg.Submission {
		return nil, &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "no authentication on this port: use submission"}
	}
	if !ss.authAllowed() {
		return nil, errAuthNeedsTLS
	}
	check := func(identity, username, password string) error {
		if identity != "" && !strings.EqualFold(identity, username) {
			return ss.fail("auth", errAuthFailed)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		u, err := ss.s.store.Authenticate(ctx, username, password)
		switch {
		case err == nil:
			ss.user = u.Address
			ss.s.log.Info("smtpd: authenticated", "user", u.Address, "remote", ss.c.remote.String())
			return nil
		case errors.Is(err, store.ErrNoUser), errors.Is(err, store.ErrBadPassword), errors.Is(err, store.ErrBadAddress):
			ss.s.log.Warn("smtpd: authentication failed", "user", username, "remote", ss.c.remote.String())
			return ss.fail("auth", errAuthFailed)
		default:
			ss.s.log.Error("smtpd: authenticate", "user", username, "err", err)
			return errAuthTemp
		}
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(check), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, &smtp.SMTPError{Code: 504, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "unknown authentication mechanism"}
}

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login): the user name, then the password, each
// after its prompt.
type loginServer struct {
	check    func(identity, username, password string) error
	step     int
	username string
}

// Next implements sasl.Server.
func (l *loginServer) Next(response []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step++
		if response != nil { // initial response: the user name
			l.username = string(response)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.username = string(response)
		l.step++
		return []byte("Password:"), false, nil
	case 2:
		l.step++
		return nil, true, l.check("", l.username, string(response))
	}
	return nil, false, errors.New("smtpd: LOGIN: unexpected response")
}

// submissionMail checks MAIL FROM on a submission server: authenticated,
// the user's own address, within the rate limit.
func (ss *session) submissionMail(from string) error {
	if ss.user == "" {
		return ss.fail("auth_required", errAuthRequired)
	}
	if !strings.EqualFold(from, ss.user) {
		return ss.fail("sender_mismatch", &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: fmt.Sprintf("sender <%s> is not yours (%s)", from, ss.user)})
	}
	if !ss.s.limiter.Allow(ss.user) {
		ss.s.m.rejected.WithLabelValues("rate").Inc()
		return errRateLimited
	}
	return nil
}

// checkFrom verifies that every address of the message's From header is
// the authenticated user's and returns the header fields the submission
// server adds: Date and Message-ID when they are missing (RFC 6409 8.2,
// 8.3).
func (ss *session) checkFrom(body []byte) (string, error) {
	m, err := mail.ReadMessage(bufio.NewReader(bytes.NewReader(body)))
	if err != nil {
		return "", ss.fail("bad_header", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "message header unreadable"})
	}
	from, err := m.Header.AddressList("From")
	if err != nil || len(from) == 0 {
		return "", ss.fail("bad_header", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "no valid From header"})
	}
	for _, a := range from {
		if !strings.EqualFold(a.Address, ss.user) {
			return "", ss.fail("sender_mismatch", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: fmt.Sprintf("From <%s> is not yours (%s)", a.Address, ss.user)})
		}
	}
	var add strings.Builder
	if m.Header.Get("Date") == "" {
		fmt.Fprintf(&add, "Date: %s\r\n", ss.s.now().Format(time.RFC1123Z))
	}
	if m.Header.Get("Message-Id") == "" {
		fmt.Fprintf(&add, "Message-ID: <%s@%s>\r\n", newID(), ss.s.cfg.Hostname)
	}
	return add.String(), nil
}
