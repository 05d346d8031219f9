// Package mua is applayer's mail user agent, behind `applayer mail send`:
// it composes a message (text, attachments as MIME multipart/mixed with
// github.com/emersion/go-message) and submits it to a submission server
// with AUTH over STARTTLS (or implicit TLS), optionally printing the
// dialogue as swaks does.
package mua

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Attachment is a file to attach.
type Attachment struct {
	Name        string // file name shown to the recipient
	ContentType string // empty: guessed from the name's extension
	Data        []byte
}

// Message is what Compose writes.
type Message struct {
	From        string
	To, Cc      []string
	Subject     string
	Text        string // the body; LF line endings become CRLF
	Attachments []Attachment
	Date        time.Time // zero: now
	Hostname    string    // the Message-ID's right side (default: From's domain)
}

// ReadAttachment reads a file to attach.
func ReadAttachment(path string) (Attachment, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Attachment{}, fmt.Errorf("mua: attachment: %w", err)
	}
	return Attachment{Name: filepath.Base(path), Data: data}, nil
}

func addressList(list []string) ([]*mail.Address, error) {
	var out []*mail.Address
	for _, s := range list {
		as, err := mail.ParseAddressList(s)
		if err != nil {
			return nil, fmt.Errorf("mua: address %q: %w", s, err)
		}
		out = append(out, as...)
	}
	return out, nil
}

// Compose writes m as an RFC 5322 message with CRLF line endings: a
// single text/plain part (quoted-printable) without attachments, else
// multipart/mixed with the text first and each attachment in base64.
func Compose(m Message) ([]byte, error) {
	from, err := mail.ParseAddress(m.From)
	if err != nil {
		return nil, fmt.Errorf("mua: From %q: %w", m.From, err)
	}
	to, err := addressList(m.To)
	if err != nil {
		return nil, err
	}
	cc, err := addressList(m.Cc)
	if err != nil {
		return nil, err
	}
	var h mail.Header
	h.SetAddressList("From", []*mail.Address{from})
	if len(to) > 0 {
		h.SetAddressList("To", to)
	}
	if len(cc) > 0 {
		h.SetAddressList("Cc", cc)
	}
	h.SetSubject(m.Subject)
	date := m.Date
	if date.IsZero() {
		date = time.Now()
	}
	h.SetDate(date)
	host := m.Hostname
	if host == "" {
		host = from.Address[strings.LastIndexByte(from.Address, '@')+1:]
	}
	if err := h.GenerateMessageIDWithHostname(host); err != nil {
		return nil, fmt.Errorf("mua: %w", err)
	}
	text := strings.ReplaceAll(strings.ReplaceAll(m.Text, "\r\n", "\n"), "\n", "\r\n")
	var buf bytes.Buffer
	var th mail.InlineHeader
	th.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	if len(m.Attachments) == 0 {
		h.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
		h.Set("Content-Transfer-Encoding", "quoted-printable")
		w, err := mail.CreateSingleInlineWriter(&buf, h)
		if err != nil {
			return nil, fmt.Errorf("mua: %w", err)
		}
		io.WriteString(w, text)
		if err := w.Close(); err != nil {
			return nil, fmt.Errorf("mua: %w", err)
		}
		return buf.Bytes(), nil
	}
	mw, err := mail.CreateWriter(&buf, h)
	if err != nil {
		return nil, fmt.Errorf("mua: %w", err)
	}
	tw, err := mw.CreateSingleInline(th)
	if err != nil {
		return nil, fmt.Errorf("mua: %w", err)
	}
	io.WriteString(tw, text)
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("mua: %w", err)
	}
	for _, a := range m.Attachments {
		var ah mail.AttachmentHeader
		ct := a.ContentType
		if ct == "" {
			ct = mime.TypeByExtension(filepath.Ext(a.Name))
		}
		if ct == "" {
			ct = "application/octet-stream"
		}
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil {
			return nil, fmt.Errorf("mua: attachment %s: %w", a.Name, err)
		}
		ah.SetContentType(mt, params)
		ah.SetFilename(a.Name)
		aw, err := mw.CreateAttachment(ah)
		if err != nil {
			return nil, fmt.Errorf("mua: %w", err)
		}
		aw.Write(a.Data)
		if err := aw.Close(); err != nil {
			return nil, fmt.Errorf("mua: %w", err)
		}
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("mua: %w", err)
	}
	return buf.Bytes(), nil
}

// Submission says where and how to submit.
type Submission struct {
	// Server is host:port.
	Server string
	// ImplicitTLS: TLS from the first byte (port 465); else STARTTLS.
	ImplicitTLS bool
	// NoTLS skips STARTTLS (the server must allow AUTH in plain text,
	// as applayer does on loopback with --insecure-auth-loopback).
	NoTLS bool
	// TLS is the client's TLS configuration (ServerName defaults to
	// Server's host).
	TLS *tls.Config
	// Username and Password for AUTH PLAIN; no AUTH when Username is "".
	Username, Password string
	// HelloName is the EHLO name (default "localhost").
	HelloName string
	// Timeout bounds connecting and each command (default 30s).
	Timeout time.Duration
	// Dialer, when set, makes the connection (e.g. from a lab client's
	// address); default a net.Dialer.
	Dialer interface {
		DialContext(ctx context.Context, network, address string) (net.Conn, error)
	}
	// Transcript, when set, gets the dialogue as swaks prints it: " -> "
	// for the client, "<-  " for the server ("~>", "<~" inside TLS); AUTH
	// secrets are masked.
	Transcript io.Writer
}

// Send submits msg from `from` (the envelope sender) to the recipients and
// returns the server's final reply text.
func Send(ctx context.Context, s Submission, from string, to []string, msg []byte) (string, error) {
	if len(to) == 0 {
		return "", errors.New("mua: no recipients")
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	host, _, err := net.SplitHostPort(s.Server)
	if err != nil {
		return "", fmt.Errorf("mua: server %q: %w", s.Server, err)
	}
	tc := &tls.Config{ServerName: host}
	if s.TLS != nil {
		tc = s.TLS.Clone()
		if tc.ServerName == "" {
			tc.ServerName = host
		}
	}
	d := s.Dialer
	if d == nil {
		d = &net.Dialer{}
	}
	dctx, dcancel := context.WithTimeout(ctx, timeout)
	raw, err := d.DialContext(dctx, "tcp", s.Server)
	dcancel()
	if err != nil {
		return "", fmt.Errorf("mua: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	tr := &transcript{w: s.Transcript}
	var conn net.Conn = raw
	if s.Transcript != nil {
		conn = &tapConn{Conn: raw, t: tr}
		tr.printf("=== Connected to %s.\n", s.Server)
	}
	var c *smtp.Client
	switch {
	case s.ImplicitTLS:
		tr.startTLS()
		c = smtp.NewClient(tls.Client(conn, tc))
	case s.NoTLS:
		c = smtp.NewClient(conn)
	default:
		c, err = smtp.NewClientStartTLS(conn, tc)
		if err != nil {
			conn.Close()
			return "", fmt.Errorf("mua: STARTTLS: %w", err)
		}
	}
	defer c.Close()
	c.CommandTimeout, c.SubmissionTimeout = timeout, 2*timeout
	if s.Transcript != nil {
		c.DebugWriter = tr
	}
	name := s.HelloName
	if name == "" {
		name = "localhost"
	}
	if err := c.Hello(name); err != nil {
		return "", fmt.Errorf("mua: EHLO: %w", err)
	}
	if st, ok := c.TLSConnectionState(); ok {
		tr.printf("=== TLS started with cipher %s\n", tls.CipherSuiteName(st.CipherSuite))
	}
	if s.Username != "" {
		if err := c.Auth(sasl.NewPlainClient("", s.Username, s.Password)); err != nil {
			return "", fmt.Errorf("mua: AUTH: %w", err)
		}
	}
	if err := c.Mail(from, nil); err != nil {
		return "", fmt.Errorf("mua: MAIL FROM: %w", err)
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return "", fmt.Errorf("mua: RCPT TO:<%s>: %w", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", fmt.Errorf("mua: DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return "", fmt.Errorf("mua: DATA: %w", err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", fmt.Errorf("mua: end of DATA: %w", err)
	}
	c.Quit()
	tr.printf("=== Connection closed with remote host.\n")
	return resp.StatusText, nil
}

// transcript prints the dialogue line by line with swaks' arrows. Before
// TLS it is fed by tapConn, which knows each byte's direction; inside TLS
// by go-smtp's DebugWriter (plain text both ways), where the direction is
// the last one tapConn saw on the wire beneath: a reply is read after
// the command is written, and go-smtp does not pipeline.
type transcript struct {
	w io.Writer

	mu       sync.Mutex
	inTLS    bool
	lastRead bool
	pending  [2]bytes.Buffer // partial lines: [0] client, [1] server
	lastCmd  string
	inData   bool
	authNext bool // the next client line is a SASL response: mask it
}

func (t *transcript) printf(format string, args ...any) {
	if t == nil || t.w == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(t.w, format, args...)
}

func (t *transcript) startTLS() {
	t.mu.Lock()
	t.inTLS = true
	t.mu.Unlock()
}

// feed takes bytes seen in one direction and prints complete lines.
func (t *transcript) feed(server bool, b []byte) {
	i := 0
	if server {
		i = 1
	}
	buf := &t.pending[i]
	buf.Write(b)
	for {
		line, err := buf.ReadString('\n')
		if err != nil {
			buf.Reset()
			buf.WriteString(line)
			return
		}
		t.line(server, strings.TrimRight(line, "\r\n"))
	}
}

func (t *transcript) line(server bool, l string) {
	arrow := " -> "
	if server {
		arrow = "<-  "
	}
	if t.inTLS {
		arrow = strings.ReplaceAll(arrow, "-", "~")
	}
	shown := l
	if server {
		if strings.HasPrefix(l, "220 ") && t.lastCmd == "STARTTLS" {
			defer func() { t.inTLS = true }()
		}
		if strings.HasPrefix(l, "354") {
			t.inData = true
		}
		t.authNext = strings.HasPrefix(l, "334")
	} else {
		switch {
		case t.inData:
			if l == "." {
				t.inData = false
			}
		case t.authNext:
			shown = "****"
			t.authNext = false
		default:
			verb, rest, _ := strings.Cut(l, " ")
			t.lastCmd = strings.ToUpper(verb)
			if t.lastCmd == "AUTH" {
				if mech, _, ok := strings.Cut(rest, " "); ok {
					shown = "AUTH " + mech + " ****"
				}
			}
		}
	}
	fmt.Fprintf(t.w, "%s%s\n", arrow, shown)
}

// Write implements io.Writer for go-smtp's DebugWriter (inside TLS only:
// before, tapConn prints).
func (t *transcript) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.inTLS {
		t.feed(t.lastRead, b)
	}
	return len(b), nil
}

// tapConn shows the plain-text part of the dialogue and tells the
// transcript which way bytes last moved.
type tapConn struct {
	net.Conn
	t *transcript
}

func (c *tapConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.t.mu.Lock()
	c.t.lastRead = true
	if !c.t.inTLS && n > 0 {
		c.t.feed(true, b[:n])
	}
	c.t.mu.Unlock()
	return n, err
}

func (c *tapConn) Write(b []byte) (int, error) {
	c.t.mu.Lock()
	c.t.lastRead = false
	if !c.t.inTLS {
		c.t.feed(false, b)
	}
	c.t.mu.Unlock()
	return c.Conn.Write(b)
}
