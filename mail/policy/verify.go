package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"
)

// Resolver is the DNS a Verifier asks: *net.Resolver fits (one whose Dial
// points at applayer's resolver in the lab, or at a test's servers).
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// Dialer opens connections (service.Deps.Dialer: in the lab, from the
// host's own address).
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// NewResolver returns a *net.Resolver that sends every query to server
// (a host:port) through d (nil: a net.Dialer), whatever the system's
// configuration says.
func NewResolver(server string, d Dialer) *net.Resolver {
	if d == nil {
		d = &net.Dialer{}
	}
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, server)
		},
	}
}

// Mode is what a receiver does with a message that fails DMARC.
type Mode string

// Modes.
const (
	// ModeEnforce follows the sender domain's policy: p=reject is
	// refused with 550 5.7.1, p=quarantine goes to the Junk folder.
	ModeEnforce Mode = "enforce"
	// ModeMark refuses nothing: a failing message whose domain asks for
	// quarantine or reject goes to Junk.
	ModeMark Mode = "mark"
	// ModeOff checks nothing and adds no header.
	ModeOff Mode = "off"
)

// ParseMode parses a --dmarc flag value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(s)); m {
	case ModeEnforce, ModeMark, ModeOff:
		return m, nil
	case "":
		return ModeEnforce, nil
	}
	return "", fmt.Errorf("policy: unknown DMARC mode %q (enforce, mark or off)", s)
}

// Verifier checks incoming mail. The zero value is not usable: set
// Resolver and AuthServID.
type Verifier struct {
	// Resolver answers every DNS query of the checks.
	Resolver Resolver
	// AuthServID names this server in Authentication-Results (its host
	// name); incoming fields claiming it are removed as forgeries.
	AuthServID string
	// Mode is the DMARC policy mode (default ModeEnforce).
	Mode Mode
	// Timeout bounds the DNS work of one message (default 20 s).
	Timeout time.Duration
	// Percent draws the number DMARC's pct= is compared against,
	// 0 <= n < 100; nil is math/rand.
	Percent func() int
}

// Verdict is what the receiver does with a message.
type Verdict int

// Verdicts.
const (
	Accept Verdict = iota // deliver to INBOX
	Junk                  // deliver to the Junk folder
	Reject                // refuse: 550 5.7.1
)

func (v Verdict) String() string {
	return [...]string{"accept", "junk", "reject"}[v]
}

// DKIMResult is one signature's result.
type DKIMResult struct {
	Domain, Identifier string
	Result             authres.ResultValue
	Reason             string
}

// Results are the checks of one message.
type Results struct {
	SPF       authres.ResultValue // pass, fail, softfail, neutral, none, temperror, permerror
	SPFDomain string              // the domain SPF checked (MAIL FROM's, else HELO's)
	SPFReason string
	DKIM      []DKIMResult
	// From is the RFC5322.From domain ("" when there is not exactly one).
	From        string
	DMARC       authres.ResultValue // pass, fail, none, temperror, permerror
	DMARCPolicy dmarc.Policy        // the policy that applies (p or sp), "" without a record
	DMARCReason string
	Verdict     Verdict
}

// Message is an incoming message and how it came.
type Message struct {
	IP       netip.Addr // the SMTP client
	Helo     string
	MailFrom string // reverse path, "" for the null sender
	Body     []byte // the message as received (CRLF)
}

// Check runs SPF, DKIM and DMARC on m and decides the verdict by the
// Mode. DNS failures give temperror results, never an error: the message
// is then accepted with what could be learned.
func (v *Verifier) Check(ctx context.Context, m Message) Results {
	timeout := v.Timeout
	if timeout <= 0 {
		timeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var r Results
	res := rooted{v.Resolver}
	v.checkSPF(ctx, res, m, &r)
	v.checkDKIM(ctx, res, m, &r)
	v.checkDMARC(ctx, res, m, &r)
	return r
}

// rooted makes every name it is asked absolute (a final dot), so the
// resolver never tries it again with the host's search domains appended.
type rooted struct{ r Resolver }

func root(name string) string {
	if strings.HasSuffix(name, ".") || net.ParseIP(name) != nil {
		return name
	}
	return name + "."
}

func (r rooted) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return r.r.LookupTXT(ctx, root(name))
}

func (r rooted) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	return r.r.LookupMX(ctx, root(name))
}

func (r rooted) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	return r.r.LookupIPAddr(ctx, root(host))
}

func (r rooted) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	return r.r.LookupAddr(ctx, addr)
}

func (v *Verifier) checkSPF(ctx context.Context, res Resolver, m Message, r *Results) {
	sender := m.MailFrom
	if sender == "" {
		// RFC 7208 2.4: the null sender is checked as postmaster@HELO.
		sender = "postmaster@" + m.Helo
	}
	_, r.SPFDomain, _ = strings.Cut(sender, "@")
	r.SPFDomain = canonDomain(r.SPFDomain)
	if !m.IP.IsValid() {
		r.SPF, r.SPFReason = authres.ResultPermError, "no client address"
		return
	}
	result, err := spf.CheckHostWithSender(net.IP(m.IP.Unmap().AsSlice()), m.Helo, sender,
		spf.WithResolver(res), spf.WithContext(ctx))
	r.SPF = authres.ResultValue(result)
	if err != nil && result != spf.Pass {
		r.SPFReason = err.Error()
	}
}

func (v *Verifier) checkDKIM(ctx context.Context, res Resolver, m Message, r *Results) {
	verifs, err := dkim.VerifyWithOptions(bytes.NewReader(m.Body), &dkim.VerifyOptions{
		LookupTXT:        func(name string) ([]string, error) { return res.LookupTXT(ctx, name) },
		MaxVerifications: 5,
	})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		r.DKIM = append(r.DKIM, DKIMResult{Result: authres.ResultPermError, Reason: err.Error()})
		return
	}
	for _, vf := range verifs {
		d := DKIMResult{Domain: canonDomain(vf.Domain), Identifier: vf.Identifier, Result: authres.ResultPass}
		switch {
		case vf.Err == nil:
		case dkim.IsTempFail(vf.Err):
			d.Result, d.Reason = authres.ResultTempError, vf.Err.Error()
		case dkim.IsPermFail(vf.Err):
			d.Result, d.Reason = authres.ResultPermError, vf.Err.Error()
		default:
			d.Result, d.Reason = authres.ResultFail, vf.Err.Error()
		}
		r.DKIM = append(r.DKIM, d)
	}
}

// OrgDomain returns a domain's organizational domain (RFC 7489 3.2): the
// public suffix plus one label, by the Public Suffix List.
func OrgDomain(domain string) string {
	d := canonDomain(domain)
	org, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return org
}

// aligned reports identifier alignment (RFC 7489 3.1): strict is the same
// name, relaxed the same organizational domain.
func aligned(a, b string, mode dmarc.AlignmentMode) bool {
	a, b = canonDomain(a), canonDomain(b)
	if a == "" || b == "" {
		return false
	}
	if a == b {
		return true
	}
	return mode != dmarc.AlignmentStrict && OrgDomain(a) == OrgDomain(b)
}

func (v *Verifier) checkDMARC(ctx context.Context, res Resolver, m Message, r *Results) {
	h, _, err := parseHeader(m.Body)
	if err == nil {
		if n := countFields(h, "From"); n == 0 {
			r.DMARC = authres.ResultNone
			return
		} else if n > 1 {
			// RFC 7489 6.6.1: a second From is how a forger would slip
			// past the check; such a message is treated as failing.
			r.DMARC, r.DMARCReason, r.Verdict = authres.ResultPermError, fmt.Sprintf("%d From fields", n), Junk
			return
		}
		r.From, err = fromDomain(h)
	}
	if err != nil {
		r.DMARC, r.DMARCReason = authres.ResultPermError, err.Error()
		return
	}
	rec, policy, err := v.lookupDMARC(ctx, res, r.From)
	switch {
	case errors.Is(err, dmarc.ErrNoPolicy):
		r.DMARC = authres.ResultNone
		return
	case dmarc.IsTempFail(err):
		r.DMARC, r.DMARCReason = authres.ResultTempError, err.Error()
		return
	case err != nil:
		r.DMARC, r.DMARCReason = authres.ResultPermError, err.Error()
		return
	}
	r.DMARCPolicy = policy
	pass := r.SPF == authres.ResultPass && aligned(r.SPFDomain, r.From, rec.SPFAlignment)
	for _, d := range r.DKIM {
		if d.Result == authres.ResultPass && aligned(d.Domain, r.From, rec.DKIMAlignment) {
			pass = true
		}
	}
	if pass {
		r.DMARC = authres.ResultPass
		return
	}
	r.DMARC = authres.ResultFail
	// pct (RFC 7489 6.6.4): outside the sample, the next milder policy.
	if rec.Percent != nil && *rec.Percent < 100 && v.percent() >= *rec.Percent {
		switch policy {
		case dmarc.PolicyReject:
			policy = dmarc.PolicyQuarantine
		case dmarc.PolicyQuarantine:
			policy = dmarc.PolicyNone
		}
		r.DMARCReason = "outside pct sample"
	}
	switch {
	case v.mode() == ModeOff || policy == dmarc.PolicyNone:
	case policy == dmarc.PolicyReject && v.mode() == ModeEnforce:
		r.Verdict = Reject
	default:
		r.Verdict = Junk
	}
}

// lookupDMARC finds the record for a From domain (RFC 7489 6.6.3): the
// domain's own, else its organizational domain's, whose sp= (else p=)
// then applies.
func (v *Verifier) lookupDMARC(ctx context.Context, res Resolver, from string) (*dmarc.Record, dmarc.Policy, error) {
	opts := &dmarc.LookupOptions{LookupTXT: func(name string) ([]string, error) { return res.LookupTXT(ctx, name) }}
	rec, err := dmarc.LookupWithOptions(from, opts)
	if err == nil {
		return rec, rec.Policy, nil
	}
	org := OrgDomain(from)
	if !errors.Is(err, dmarc.ErrNoPolicy) || org == from {
		return nil, "", err
	}
	rec, err = dmarc.LookupWithOptions(org, opts)
	if err != nil {
		return nil, "", err
	}
	if rec.SubdomainPolicy != "" {
		return rec, rec.SubdomainPolicy, nil
	}
	return rec, rec.Policy, nil
}

func (v *Verifier) mode() Mode {
	if v.Mode == "" {
		return ModeEnforce
	}
	return v.Mode
}

func (v *Verifier) percent() int {
	if v.Percent != nil {
		return v.Percent()
	}
	return rand.IntN(100)
}

// Header returns the Authentication-Results field (RFC 8601) for r, with
// its name and final CRLF, folded at each result.
func (r Results) Header(authServID string) string {
	res := []authres.Result{&authres.SPFResult{Value: r.SPF, Reason: r.SPFReason, From: r.SPFDomain}}
	for _, d := range r.DKIM {
		res = append(res, &authres.DKIMResult{Value: d.Result, Reason: d.Reason, Domain: d.Domain, Identifier: d.Identifier})
	}
	if len(r.DKIM) == 0 {
		res = append(res, &authres.DKIMResult{Value: authres.ResultNone})
	}
	if r.DMARC != "" {
		res = append(res, &authres.DMARCResult{Value: r.DMARC, Reason: r.DMARCReason, From: r.From})
	}
	v := authres.Format(sanitizeID(authServID), res)
	// authres separates results with "; ": fold there.
	var b strings.Builder
	b.WriteString("Authentication-Results: ")
	for i, part := range strings.Split(v, "; ") {
		if i > 0 {
			b.WriteString(";\r\n\t")
		}
		b.WriteString(strings.TrimSpace(clean(part)))
	}
	b.WriteString("\r\n")
	return b.String()
}

// clean drops CR, LF and other controls a reason (from DNS or the
// message) might carry, so they cannot forge header structure.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func sanitizeID(s string) string {
	s = strings.Map(func(r rune) rune {
		if r <= ' ' || r >= 0x7f || r == ';' || r == '(' || r == ')' {
			return -1
		}
		return r
	}, s)
	if s == "" {
		return "localhost"
	}
	return s
}
