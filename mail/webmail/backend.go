package webmail

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// dialIMAP opens an IMAP session for user: implicit TLS, STARTTLS or (to
// a loopback server that allows it) plain, as configured.
func (s *Server) dialIMAP(ctx context.Context, user, password string) (*imapclient.Client, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", s.cfg.IMAPAddr)
	if err != nil {
		return nil, fmt.Errorf("webmail: imap: %w", err)
	}
	nc.SetDeadline(time.Now().Add(opTimeout))
	var c *imapclient.Client
	switch s.cfg.IMAPSecurity {
	case SecurityTLS:
		c = imapclient.New(tls.Client(nc, s.tlsFor(s.cfg.IMAPAddr)), nil)
	case SecurityStartTLS:
		c, err = imapclient.NewStartTLS(nc, &imapclient.Options{TLSConfig: s.tlsFor(s.cfg.IMAPAddr)})
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("webmail: imap starttls: %w", err)
		}
	default:
		c = imapclient.New(nc, nil)
	}
	if err := c.Login(user, password).Wait(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (s *Server) tlsFor(addr string) *tls.Config {
	host, _, _ := net.SplitHostPort(addr)
	cfg := &tls.Config{RootCAs: s.cfg.RootCAs, ServerName: host}
	if s.cfg.ServerName != "" {
		cfg.ServerName = s.cfg.ServerName
	}
	return cfg
}

// folder is a mailbox in the navigation.
type folder struct {
	Name   string
	Use    string
	Unseen uint32
	Total  uint32
}

func folders(c *imapclient.Client) ([]folder, error) {
	list, err := c.List("", "*", &imap.ListOptions{ReturnSpecialUse: true, ReturnStatus: &imap.StatusOptions{NumMessages: true, NumUnseen: true}}).Collect()
	if err != nil {
		return nil, err
	}
	var out []folder
	for _, l := range list {
		if slices.Contains(l.Attrs, imap.MailboxAttrNoSelect) || slices.Contains(l.Attrs, imap.MailboxAttrNonExistent) {
			continue
		}
		f := folder{Name: l.Mailbox}
		for _, a := range l.Attrs {
			switch a {
			case imap.MailboxAttrSent, imap.MailboxAttrDrafts, imap.MailboxAttrTrash, imap.MailboxAttrJunk, imap.MailboxAttrArchive:
				f.Use = string(a)
			}
		}
		if l.Status != nil {
			if l.Status.NumUnseen != nil {
				f.Unseen = *l.Status.NumUnseen
			}
			if l.Status.NumMessages != nil {
				f.Total = *l.Status.NumMessages
			}
		}
		out = append(out, f)
	}
	slices.SortStableFunc(out, func(a, b folder) int {
		if a.Name == "INBOX" {
			return -1
		}
		if b.Name == "INBOX" {
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out, nil
}

// specialFolder returns the mailbox with a special use (\Sent, \Trash), or
// fallback.
func specialFolder(fs []folder, use, fallback string) string {
	for _, f := range fs {
		if f.Use == use {
			return f.Name
		}
	}
	return fallback
}

// summary is a row of the message list.
type summary struct {
	UID     imap.UID
	From    string
	Subject string
	Date    time.Time
	Size    int64
	Seen    bool
	Flagged bool
}

func addrString(as []imap.Address) string {
	var out []string
	for _, a := range as {
		if a.Name != "" {
			out = append(out, a.Name)
		} else {
			out = append(out, a.Addr())
		}
	}
	return strings.Join(out, ", ")
}

// listPage returns one page of a mailbox, newest first, and the total;
// with a query, the messages matching it (IMAP SEARCH TEXT).
func listPage(c *imapclient.Client, box, query string, page, size int) ([]summary, int, error) {
	sel, err := c.Select(box, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil, 0, err
	}
	var uids []imap.UID
	if query != "" {
		data, err := c.UIDSearch(&imap.SearchCriteria{Text: []string{query}}, nil).Wait()
		if err != nil {
			return nil, 0, err
		}
		uids = data.AllUIDs()
	} else if sel.NumMessages > 0 {
		data, err := c.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
		if err != nil {
			return nil, 0, err
		}
		uids = data.AllUIDs()
	}
	total := len(uids)
	slices.Reverse(uids)
	lo, hi := page*size, min((page+1)*size, total)
	if lo >= total {
		return nil, total, nil
	}
	msgs, err := c.Fetch(imap.UIDSetNum(uids[lo:hi]...), &imap.FetchOptions{UID: true, Flags: true, Envelope: true, RFC822Size: true, InternalDate: true}).Collect()
	if err != nil {
		return nil, 0, err
	}
	out := make([]summary, 0, len(msgs))
	for _, m := range msgs {
		sm := summary{UID: m.UID, Size: m.RFC822Size, Date: m.InternalDate, Seen: slices.Contains(m.Flags, imap.FlagSeen), Flagged: slices.Contains(m.Flags, imap.FlagFlagged)}
		if e := m.Envelope; e != nil {
			sm.From, sm.Subject = addrString(e.From), e.Subject
			if !e.Date.IsZero() {
				sm.Date = e.Date
			}
		}
		out = append(out, sm)
	}
	slices.SortFunc(out, func(a, b summary) int { return int(b.UID) - int(a.UID) })
	return out, total, nil
}

// fetchRaw returns a message's bytes; peek leaves \Seen alone.
func fetchRaw(c *imapclient.Client, box string, uid imap.UID, peek bool) ([]byte, error) {
	if _, err := c.Select(box, nil).Wait(); err != nil {
		return nil, err
	}
	msgs, err := c.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: peek}}}).Collect()
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 || len(msgs[0].BodySection) == 0 {
		return nil, errNoMessage
	}
	return msgs[0].BodySection[0].Bytes, nil
}

var errNoMessage = errors.New("no such message")

// parsed is a message read for display.
type parsed struct {
	From, To, Cc, Subject, MessageID, References string
	Date                                         time.Time
	Text                                         string
	HTML                                         string // unsanitised
	Attachments                                  []attachment
}

type attachment struct {
	Index int
	Name  string
	Type  string
	Size  int64
	data  []byte
}

// parse walks a message: the first text/plain and text/html parts are
// its text, every other leaf part (or one with a file name) an attachment.
func parse(raw []byte) (*parsed, error) {
	mr, err := mail.CreateReader(bytes.NewReader(raw))
	if mr == nil {
		return nil, fmt.Errorf("webmail: parse: %w", err)
	}
	defer mr.Close()
	p := &parsed{}
	h := mr.Header
	p.Subject, _ = h.Subject()
	p.Date, _ = h.Date()
	p.MessageID = h.Get("Message-Id")
	p.References = h.Get("References")
	for k, dst := range map[string]*string{"From": &p.From, "To": &p.To, "Cc": &p.Cc} {
		if as, err := h.AddressList(k); err == nil {
			var ss []string
			for _, a := range as {
				ss = append(ss, a.String())
			}
			*dst = strings.Join(ss, ", ")
		} else {
			*dst = h.Get(k)
		}
	}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			if p.Text == "" && p.HTML == "" {
				return p, nil // malformed: show what we have
			}
			break
		}
		body, _ := io.ReadAll(io.LimitReader(part.Body, 32<<20))
		switch ph := part.Header.(type) {
		case *mail.InlineHeader:
			t, _, _ := ph.ContentType()
			switch {
			case t == "text/html" && p.HTML == "":
				p.HTML = string(body)
			case (t == "text/plain" || t == "") && p.Text == "":
				p.Text = string(body)
			default:
				p.Attachments = append(p.Attachments, attachment{Index: len(p.Attachments), Name: "part." + extFor(t), Type: t, Size: int64(len(body)), data: body})
			}
		case *mail.AttachmentHeader:
			name, _ := ph.Filename()
			t, _, _ := ph.ContentType()
			if name == "" {
				name = "attachment." + extFor(t)
			}
			p.Attachments = append(p.Attachments, attachment{Index: len(p.Attachments), Name: name, Type: t, Size: int64(len(body)), data: body})
		}
	}
	return p, nil
}

func extFor(t string) string {
	if exts, _ := mime.ExtensionsByType(t); len(exts) > 0 {
		return strings.TrimPrefix(exts[0], ".")
	}
	return "bin"
}

// outgoing is a message to send.
type outgoing struct {
	From, To, Cc, Subject, Body string
	InReplyTo, References       string
	Attachments                 []attachment
}

func splitAddrs(s string) ([]*mail.Address, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	return mail.ParseAddressList(s)
}

// build renders the message (multipart/mixed with attachments).
func (o *outgoing) build(now time.Time, host string) ([]byte, []string, error) {
	to, err := splitAddrs(o.To)
	if err != nil {
		return nil, nil, fmt.Errorf("To: %w", err)
	}
	cc, err := splitAddrs(o.Cc)
	if err != nil {
		return nil, nil, fmt.Errorf("Cc: %w", err)
	}
	if len(to)+len(cc) == 0 {
		return nil, nil, errors.New("no recipient")
	}
	var h mail.Header
	h.SetDate(now)
	h.SetAddressList("From", []*mail.Address{{Address: o.From}})
	h.SetAddressList("To", to)
	if len(cc) > 0 {
		h.SetAddressList("Cc", cc)
	}
	h.SetSubject(o.Subject)
	if err := h.GenerateMessageIDWithHostname(host); err != nil {
		return nil, nil, err
	}
	if o.InReplyTo != "" {
		h.Set("In-Reply-To", o.InReplyTo)
		h.Set("References", strings.TrimSpace(o.References+" "+o.InReplyTo))
	}
	var buf bytes.Buffer
	mw, err := mail.CreateWriter(&buf, h)
	if err != nil {
		return nil, nil, err
	}
	var th mail.InlineHeader
	th.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	th.Set("Content-Transfer-Encoding", "quoted-printable")
	tw, err := mw.CreateSingleInline(th)
	if err != nil {
		return nil, nil, err
	}
	io.WriteString(tw, strings.ReplaceAll(o.Body, "\r\n", "\n"))
	tw.Close()
	for _, a := range o.Attachments {
		var ah mail.AttachmentHeader
		ah.SetContentType(a.Type, nil)
		ah.SetFilename(a.Name)
		ah.Set("Content-Transfer-Encoding", "base64")
		aw, err := mw.CreateAttachment(ah)
		if err != nil {
			return nil, nil, err
		}
		aw.Write(a.data)
		aw.Close()
	}
	if err := mw.Close(); err != nil {
		return nil, nil, err
	}
	var rcpts []string
	for _, a := range append(to, cc...) {
		rcpts = append(rcpts, a.Address)
	}
	return buf.Bytes(), rcpts, nil
}

// send submits a message: STARTTLS when offered (required for AUTH
// unless the server is on loopback), AUTH PLAIN when offered.
func (s *Server) send(ctx context.Context, user, password string, rcpts []string, msg []byte) error {
	d := net.Dialer{Timeout: 10 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", s.cfg.SMTPAddr)
	if err != nil {
		return fmt.Errorf("submission: %w", err)
	}
	nc.SetDeadline(time.Now().Add(opTimeout))
	var c *smtp.Client
	switch s.cfg.SMTPSecurity {
	case SecurityTLS:
		c = smtp.NewClient(tls.Client(nc, s.tlsFor(s.cfg.SMTPAddr)))
	case SecurityStartTLS:
		c, err = smtp.NewClientStartTLS(nc, s.tlsFor(s.cfg.SMTPAddr))
		if err != nil {
			nc.Close()
			return fmt.Errorf("submission: starttls: %w", err)
		}
	default:
		c = smtp.NewClient(nc)
	}
	defer c.Close()
	if err := c.Hello(s.cfg.Hostname); err != nil && s.cfg.SMTPSecurity != SecurityStartTLS {
		return fmt.Errorf("submission: %w", err)
	}
	if ok, _ := c.Extension("AUTH"); ok {
		if err := c.Auth(sasl.NewPlainClient("", user, password)); err != nil {
			return fmt.Errorf("submission: auth: %w", err)
		}
	}
	if err := c.SendMail(user, rcpts, bytes.NewReader(msg)); err != nil {
		return fmt.Errorf("submission: %w", err)
	}
	return c.Quit()
}
