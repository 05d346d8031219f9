// Package mailexp is the mail system's security lesson in the lab: a
// message forged as alice@crepes.fr sent straight to Bob's server over
// SMTP, beside Alice's genuine one, and what SPF, DKIM and DMARC make of
// each (mail/policy). The forged-mail scenario narrates it as the
// chapter's Alice-to-Bob figure with an attacker added; the forged-mail
// experiment runs it under each DMARC policy crepes.fr can publish.
package mailexp

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/mail/mua"
)

// The lesson's cast: Alice's domain and server, Bob's, and the attacker's
// host (a lab address outside crepes.fr's SPF, "v=spf1 mx -all").
const (
	aliceServer = "mail.crepes.fr"
	bobServer   = "mail.hamburger.edu"
	attacker    = "attacker.lab"
	alice       = "alice@crepes.fr"
	bob         = "bob@hamburger.edu"
)

// forgedText is the text of every forged message.
const forgedText = "Bob, please wire the money to the account below today. Alice"

// forgery is one way the attacker sends mail "From: alice@crepes.fr".
type forgery struct {
	// Name is the message's subject and the table's case.
	Name string
	// MailFrom is the envelope sender the attacker gives.
	MailFrom string
	// Copy: the message is Alice's genuine one (as Bob's server stored
	// it, DKIM signature and all) with its text changed.
	Copy bool
}

// forgeries are the attacker's attempts: forging envelope and header
// (SPF fails, no signature); its own envelope with Alice's From (SPF
// says nothing about crepes.fr, and DMARC wants an aligned pass); and
// Alice's signed message replayed with new text (the signature no longer
// verifies).
var forgeries = []forgery{
	{Name: "forged: MAIL FROM and From alice@crepes.fr", MailFrom: alice},
	{Name: "forged: MAIL FROM the attacker's, From alice@crepes.fr", MailFrom: "mallory@" + attacker},
	{Name: "forged: Alice's signed message with new text", MailFrom: alice, Copy: true},
}

// labAddr returns host's address with the lab port of standard port.
func labAddr(plan *lab.Plan, host string, port int) (string, error) {
	h, ok := plan.Lookup(host)
	if !ok {
		return "", fmt.Errorf("mailexp: the topology has no host %s", host)
	}
	return net.JoinHostPort(h.Addr.String(), strconv.Itoa(plan.Port(port))), nil
}

// labTLS trusts the lab's mail CA (STATE/mail/ca/ca.pem) for name.
func labTLS(plan *lab.Plan, name string) (*tls.Config, error) {
	pem, err := os.ReadFile(filepath.Join(plan.StateDir, "mail", "ca", "ca.pem"))
	if err != nil {
		return nil, fmt.Errorf("mailexp: the lab's mail CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("mailexp: no certificate in the lab's mail CA file")
	}
	return &tls.Config{RootCAs: pool, ServerName: name}, nil
}

// sendGenuine is Alice's user agent: the message submitted to
// mail.crepes.fr on 587 (STARTTLS, AUTH), which signs it and relays it to
// hamburger.edu's MX. It returns the submission server's reply.
func sendGenuine(ctx context.Context, d service.Dialer, plan *lab.Plan, password, subject, text string) (string, error) {
	server, err := labAddr(plan, aliceServer, 587)
	if err != nil {
		return "", err
	}
	tc, err := labTLS(plan, aliceServer)
	if err != nil {
		return "", err
	}
	msg, err := mua.Compose(mua.Message{From: "Alice <" + alice + ">", To: []string{bob}, Subject: subject, Text: text})
	if err != nil {
		return "", err
	}
	return mua.Send(ctx, mua.Submission{Server: server, TLS: tc, Username: alice, Password: password, HelloName: "alice-laptop.crepes.fr", Timeout: 30 * time.Second, Dialer: d}, alice, []string{bob}, msg)
}

// sendForged is the attacker's SMTP session: straight to Bob's server on
// port 25 (no TLS, no AUTH: an MX takes mail from anyone for its own
// users), with msg. It returns the server's reply to the end of data:
// "OK queued as ..." or the refusal.
func sendForged(ctx context.Context, d service.Dialer, plan *lab.Plan, mailFrom string, msg []byte) (reply string, refused *smtp.SMTPError, err error) {
	server, err := labAddr(plan, bobServer, 25)
	if err != nil {
		return "", nil, err
	}
	reply, err = mua.Send(ctx, mua.Submission{Server: server, NoTLS: true, HelloName: attacker, Timeout: 30 * time.Second, Dialer: d}, mailFrom, []string{bob}, msg)
	if errors.As(err, &refused) {
		return fmt.Sprintf("%d %d.%d.%d %s", refused.Code, refused.EnhancedCode[0], refused.EnhancedCode[1], refused.EnhancedCode[2], refused.Message), refused, nil
	}
	return reply, nil, err
}

// forge returns the attacker's message for f; genuine is Alice's
// message as Bob's server stored it (for a copy).
func forge(f forgery, genuine []byte) ([]byte, error) {
	if !f.Copy {
		return mua.Compose(mua.Message{From: "Alice <" + alice + ">", To: []string{bob}, Subject: f.Name,
			Text: forgedText + "\n", Hostname: "crepes.fr"})
	}
	if genuine == nil {
		return nil, errors.New("mailexp: no genuine message to copy")
	}
	// The header as Alice's server signed it (the receiver's own fields,
	// Received and Authentication-Results, dropped), the text replaced.
	head, _, ok := bytes.Cut(genuine, []byte("\r\n\r\n"))
	if !ok {
		return nil, errors.New("mailexp: the genuine message has no body")
	}
	var out bytes.Buffer
	skip := false
	for _, l := range strings.SplitAfter(string(head), "\r\n") {
		if l == "" {
			continue
		}
		if l[0] != ' ' && l[0] != '\t' {
			name, _, _ := strings.Cut(l, ":")
			skip = strings.EqualFold(name, "Received") || strings.EqualFold(name, "Authentication-Results")
		}
		if !skip {
			out.WriteString(strings.TrimSuffix(l, "\r\n") + "\r\n")
		}
	}
	out.WriteString("\r\n" + forgedText + "\r\n")
	return out.Bytes(), nil
}

// stored is a message in Bob's mailbox.
type stored struct {
	Box, Subject string
	// AuthResults is the Authentication-Results field Bob's server
	// added, unfolded.
	AuthResults string
	Raw         []byte
}

// readMailbox is Bob's user agent: IMAP over TLS (993) to his server,
// every message of INBOX and Junk.
func readMailbox(ctx context.Context, d service.Dialer, plan *lab.Plan, password string) ([]stored, error) {
	server, err := labAddr(plan, bobServer, 993)
	if err != nil {
		return nil, err
	}
	tc, err := labTLS(plan, bobServer)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	raw, err := d.DialContext(dctx, "tcp", server)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("mailexp: imap: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	raw.SetDeadline(time.Now().Add(30 * time.Second))
	c := imapclient.New(tls.Client(raw, tc), nil)
	defer c.Close()
	if err := c.Login(bob, password).Wait(); err != nil {
		return nil, fmt.Errorf("mailexp: imap login: %w", err)
	}
	boxes, err := c.List("", "*", nil).Collect()
	if err != nil {
		return nil, fmt.Errorf("mailexp: imap list: %w", err)
	}
	var out []stored
	for _, want := range []string{"INBOX", "Junk"} {
		found := false
		for _, b := range boxes {
			found = found || strings.EqualFold(b.Mailbox, want)
		}
		if !found {
			continue
		}
		sel, err := c.Select(want, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			return nil, fmt.Errorf("mailexp: imap select %s: %w", want, err)
		}
		if sel.NumMessages == 0 {
			continue
		}
		var all imap.SeqSet
		all.AddRange(1, sel.NumMessages)
		msgs, err := c.Fetch(all, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
		if err != nil {
			return nil, fmt.Errorf("mailexp: imap fetch %s: %w", want, err)
		}
		for _, m := range msgs {
			if len(m.BodySection) == 0 {
				continue
			}
			body := m.BodySection[0].Bytes
			s := stored{Box: want, Raw: body}
			if pm, err := mail.ReadMessage(bytes.NewReader(body)); err == nil {
				s.Subject = pm.Header.Get("Subject")
				s.AuthResults = unfold(pm.Header.Get("Authentication-Results"))
			}
			out = append(out, s)
		}
	}
	c.Logout().Wait()
	return out, nil
}

// unfold joins a folded field's lines with single spaces.
func unfold(v string) string { return strings.Join(strings.Fields(v), " ") }

// authResult returns the result of method (spf, dkim, dmarc) in an
// unfolded Authentication-Results value, "" when absent.
func authResult(ar, method string) string {
	for _, part := range strings.Split(ar, ";") {
		f := strings.Fields(part)
		if len(f) > 0 {
			if m, v, ok := strings.Cut(f[0], "="); ok && strings.EqualFold(m, method) {
				return v
			}
		}
	}
	return ""
}
