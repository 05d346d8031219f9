package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-message"
)

// Failure is a recipient the queue gave up on.
type Failure struct {
	Rcpt    string
	Err     error
	Expired bool // still failing temporarily when the message outlived Config.Lifetime
}

// DeliveryError is a delivery failure with what a DSN reports of it: the
// RFC 3463 status, the remote server's reply and its name.
type DeliveryError struct {
	Status     string // e.g. 5.1.1
	Diagnostic string // e.g. "smtp; 550 5.1.1 no such user"
	RemoteMTA  string // the server that answered, when one did
	Err        error
}

func (e *DeliveryError) Error() string { return e.Err.Error() }
func (e *DeliveryError) Unwrap() error { return e.Err }

// maxReturnedBody is how much of the original message a DSN returns in
// full; a larger one is returned as its header only (RFC 3462's
// text/rfc822-headers).
const maxReturnedBody = 256 << 10

// bounce reports the failed recipients to env's sender in a delivery
// status notification, queued with the null reverse path. A message that
// was itself a bounce (null sender) is not bounced again but kept in
// failed/ for the postmaster.
func (q *Queue) bounce(ctx context.Context, env Envelope, failed []Failure, body []byte) error {
	if env.From == "" {
		fenv := env
		fenv.To = nil
		for _, f := range failed {
			fenv.To = append(fenv.To, f.Rcpt)
		}
		return q.keepFailed(fenv, body)
	}
	dsn, err := BuildDSN(q.cfg.Hostname, env, failed, body, q.now())
	if err != nil {
		return err
	}
	id, err := q.Enqueue(ctx, "", []string{env.From}, dsn)
	if err != nil {
		return err
	}
	q.log.Info("queue: bounced", "id", env.ID, "dsn", id, "to", env.From, "recipients", len(failed))
	return nil
}

// BuildDSN writes an RFC 3464 delivery status notification: a
// multipart/report with a human-readable part, the message/delivery-status
// part (one per-recipient block per failure) and the original message (or
// its header when it is large).
func BuildDSN(reportingMTA string, env Envelope, failed []Failure, body []byte, now time.Time) ([]byte, error) {
	var h message.Header
	h.Set("From", fmt.Sprintf("Mail Delivery System <MAILER-DAEMON@%s>", reportingMTA))
	h.Set("To", "<"+env.From+">")
	h.Set("Subject", "Undelivered Mail Returned to Sender")
	h.Set("Date", now.Format(time.RFC1123Z))
	h.Set("Message-ID", fmt.Sprintf("<%s.dsn@%s>", env.ID, reportingMTA))
	h.Set("Auto-Submitted", "auto-replied") // RFC 3834: no replies to this
	h.SetContentType("multipart/report", map[string]string{"report-type": "delivery-status"})
	var out bytes.Buffer
	w, err := message.CreateWriter(&out, h)
	if err != nil {
		return nil, fmt.Errorf("queue: dsn: %w", err)
	}
	part := func(ct string, params map[string]string, content []byte) error {
		var ph message.Header
		ph.SetContentType(ct, params)
		pw, err := w.CreatePart(ph)
		if err != nil {
			return err
		}
		if _, err := pw.Write(content); err != nil {
			return err
		}
		return pw.Close()
	}

	var text strings.Builder
	fmt.Fprintf(&text, "This is the mail system at host %s.\r\n\r\n", reportingMTA)
	text.WriteString("Your message could not be delivered to one or more recipients.\r\nIt is attached below.\r\n\r\n")
	for _, f := range failed {
		fmt.Fprintf(&text, "<%s>: %s\r\n", f.Rcpt, oneLine(describe(f)))
	}
	if err := part("text/plain", map[string]string{"charset": "utf-8"}, []byte(text.String())); err != nil {
		return nil, fmt.Errorf("queue: dsn: %w", err)
	}

	var st strings.Builder
	fmt.Fprintf(&st, "Reporting-MTA: dns; %s\r\n", reportingMTA)
	fmt.Fprintf(&st, "X-Applayer-Queue-ID: %s\r\n", env.ID)
	fmt.Fprintf(&st, "Arrival-Date: %s\r\n", env.Received.Format(time.RFC1123Z))
	for _, f := range failed {
		status, diag, remote := "5.0.0", "", ""
		var de *DeliveryError
		if errors.As(f.Err, &de) {
			status, diag, remote = de.Status, de.Diagnostic, de.RemoteMTA
		}
		if f.Expired {
			status = "4.4.7" // delivery time expired (RFC 3463)
		}
		if diag == "" {
			diag = "x-applayer; " + oneLine(describe(f))
		}
		st.WriteString("\r\n")
		fmt.Fprintf(&st, "Final-Recipient: rfc822; %s\r\n", f.Rcpt)
		st.WriteString("Action: failed\r\n")
		fmt.Fprintf(&st, "Status: %s\r\n", status)
		if remote != "" {
			fmt.Fprintf(&st, "Remote-MTA: dns; %s\r\n", remote)
		}
		fmt.Fprintf(&st, "Diagnostic-Code: %s\r\n", oneLine(diag))
		fmt.Fprintf(&st, "Last-Attempt-Date: %s\r\n", now.Format(time.RFC1123Z))
		if f.Expired {
			fmt.Fprintf(&st, "Will-Retry-Until: %s\r\n", now.Format(time.RFC1123Z))
		}
	}
	if err := part("message/delivery-status", nil, []byte(st.String())); err != nil {
		return nil, fmt.Errorf("queue: dsn: %w", err)
	}

	if len(body) <= maxReturnedBody {
		err = part("message/rfc822", nil, body)
	} else {
		err = part("text/rfc822-headers", nil, headerOf(body))
	}
	if err != nil {
		return nil, fmt.Errorf("queue: dsn: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("queue: dsn: %w", err)
	}
	return out.Bytes(), nil
}

func describe(f Failure) string {
	if f.Expired {
		return "message expired in the queue; last error: " + f.Err.Error()
	}
	return f.Err.Error()
}

// oneLine keeps s to one printable line for a header field.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 900 {
		s = s[:900]
	}
	return s
}

// headerOf returns body's header section (up to and including the blank line).
func headerOf(body []byte) []byte {
	if i := bytes.Index(body, []byte("\r\n\r\n")); i >= 0 {
		return body[:i+4]
	}
	return body
}
