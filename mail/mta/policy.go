package mta

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/mail/policy"
	"github.com/applayer/applayer/mail/queue"
	"github.com/applayer/applayer/mail/smtpd"
)

// PolicyConfig configures message authentication (mail/policy).
type PolicyConfig struct {
	// DKIMDir keeps the local domains' DKIM keys (made when missing);
	// empty: outgoing mail is not signed.
	DKIMDir string
	// DMARC is what the SMTP port does with incoming mail failing DMARC
	// (enforce, mark, off). Every message received there gets an
	// Authentication-Results header unless it is off; "" is off.
	DMARC policy.Mode
}

// policyHooks sets cfg.Signer and cfg.Inbound from cfg.Policy, unless the
// caller set them. Incoming checks resolve through cfg.Resolver (the
// system's resolver only when none is given).
func policyHooks(cfg *Config, d service.Deps) error {
	if cfg.Signer == nil && cfg.Policy.DKIMDir != "" {
		s, err := policy.LoadOrCreateKeys(cfg.Policy.DKIMDir, cfg.SMTP.Domains)
		if err != nil {
			return fmt.Errorf("mta: %w", err)
		}
		cfg.Signer = DKIMSigner{s}
	}
	if cfg.Inbound == nil && cfg.Policy.DMARC != "" && cfg.Policy.DMARC != policy.ModeOff {
		var res policy.Resolver = net.DefaultResolver
		if cfg.Resolver != "" {
			res = policy.NewResolver(cfg.Resolver, d.Dialer)
		}
		host := cfg.SMTP.Hostname
		if host == "" {
			host = cfg.SMTP.Domains[0]
		}
		in, err := NewInboundPolicy(&policy.Verifier{Resolver: res, AuthServID: host, Mode: cfg.Policy.DMARC}, d)
		if err != nil {
			return err
		}
		cfg.Inbound = in
	}
	return nil
}

// DKIMSigner is the queue's signing hook: DKIM signatures for mail whose
// From domain has keys, nothing for other mail.
type DKIMSigner struct{ S *policy.Signer }

// Sign implements queue.Signer.
func (s DKIMSigner) Sign(_ context.Context, _ queue.Envelope, msg []byte) ([]byte, error) {
	return s.S.Header(msg)
}

// NewInboundPolicy returns the check hook for v, with its metrics
// (applayer_mail_auth_results_total{method,result},
// applayer_mail_auth_verdicts_total{verdict}) registered in d.Metrics and
// a log line per message in d.Logger.
func NewInboundPolicy(v *policy.Verifier, d service.Deps) (*InboundPolicy, error) {
	d = d.Defaults()
	in := &InboundPolicy{V: v, log: d.Logger, trace: d.Trace}
	in.results = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "mail", Name: "auth_results_total",
		Help: "Results of the checks of incoming mail, by method (spf, dkim, dmarc) and result."}, []string{"method", "result"})
	in.verdicts = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "mail", Name: "auth_verdicts_total",
		Help: "What became of incoming mail after the checks: accept, junk, reject."}, []string{"verdict"})
	for _, c := range []prometheus.Collector{in.results, in.verdicts} {
		if err := d.Metrics.Register(c); err != nil {
			return nil, fmt.Errorf("mta: metrics: %w", err)
		}
	}
	return in, nil
}

// InboundPolicy is the SMTP port's check hook: SPF, DKIM and DMARC, the
// Authentication-Results header, and the verdict (550 5.7.1 for Reject).
type InboundPolicy struct {
	V        *policy.Verifier
	results  *prometheus.CounterVec
	verdicts *prometheus.CounterVec
	log      interface {
		Info(msg string, args ...any)
	}
	trace *trace.Bus
}

// verdictWhere says where a verdict puts a message.
var verdictWhere = map[policy.Verdict]string{policy.Accept: "into INBOX", policy.Junk: "into Junk", policy.Reject: "refused with 550 5.7.1"}

// traceResults publishes r as the server's decision on m (a state event,
// proto mail/auth): the three results and where the message goes.
func (p *InboundPolicy) traceResults(m smtpd.InboundMessage, r policy.Results) {
	if !p.trace.Enabled() {
		return
	}
	dk := "none"
	if len(r.DKIM) > 0 {
		var ds []string
		for _, d := range r.DKIM {
			ds = append(ds, string(d.Result)+" (d="+d.Domain+")")
		}
		dk = strings.Join(ds, ", ")
	}
	pol := "no record"
	if r.DMARCPolicy != "" {
		pol = "p=" + string(r.DMARCPolicy)
	}
	from, to := p.V.AuthServID, ""
	if m.Local.IsValid() {
		from = m.Local.String()
	}
	if m.Peer.IsValid() {
		to = m.Peer.String()
	}
	p.trace.Publish(trace.Event{Type: trace.State, From: from, To: to, Proto: "mail/auth",
		Summary: fmt.Sprintf("From: %s checked: spf=%s (mailfrom %s) dkim=%s dmarc=%s (%s): verdict %s, %s", r.From, r.SPF, r.SPFDomain, dk, r.DMARC, pol, r.Verdict, verdictWhere[r.Verdict])})
}

var _ smtpd.BodyRewriter = (*InboundPolicy)(nil)

// Check implements smtpd.Inbound.
func (p *InboundPolicy) Check(ctx context.Context, m smtpd.InboundMessage) (string, error) {
	hdr, r := p.V.Inbound(ctx, policy.Message{IP: m.Remote, Helo: m.Helo, MailFrom: m.From, Body: m.Body})
	if p.results != nil {
		p.results.WithLabelValues("spf", string(r.SPF)).Inc()
		for _, d := range r.DKIM {
			p.results.WithLabelValues("dkim", string(d.Result)).Inc()
		}
		if len(r.DKIM) == 0 {
			p.results.WithLabelValues("dkim", "none").Inc()
		}
		p.results.WithLabelValues("dmarc", string(r.DMARC)).Inc()
		p.verdicts.WithLabelValues(r.Verdict.String()).Inc()
	}
	if p.log != nil {
		var dk []string
		for _, d := range r.DKIM {
			dk = append(dk, string(d.Result)+"/"+d.Domain)
		}
		p.log.Info("mta: inbound checks", "remote", m.Remote, "mail_from", m.From, "from_domain", r.From, "spf", r.SPF, "dkim", strings.Join(dk, ","), "dmarc", r.DMARC, "verdict", r.Verdict.String())
	}
	p.traceResults(m, r)
	if r.Verdict == policy.Reject {
		return "", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: r.RejectText()}
	}
	return hdr, nil
}

// Rewrite implements smtpd.BodyRewriter: Authentication-Results fields
// forged with our name are removed from what is queued.
func (p *InboundPolicy) Rewrite(body []byte) []byte { return p.V.StripForged(body) }
