package smtpd

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/applayer/applayer/internal/testkit"
)

// starttls upgrades a raw client with STARTTLS, trusting the lab CA.
func (e *env) starttls(cl *client) {
	cl.t.Helper()
	cl.cmd("STARTTLS", 220)
	tc := tls.Client(cl.c, &tls.Config{RootCAs: e.certs.Pool(), ServerName: "mx.hamburger.edu"})
	if err := tc.Handshake(); err != nil {
		cl.t.Fatal(err)
	}
	cl.c = tc
	cl.r.Reset(tc)
}

func plain(user, pw string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pw))
}

// The submission port: AUTH only over TLS, refused credentials, MAIL
// before AUTH, a sender or From that is not the user's, relay to another
// domain for the user, Date and Message-ID added, ESMTPSA in Received.
func TestSubmission(t *testing.T) {
	e := start(t, Config{Submission: true, Role: "submission"}, nil)
	cl := dial(t, e.addr)
	if ehlo := cl.cmd("EHLO client.crepes.fr", 250); strings.Contains(ehlo, "AUTH") || !strings.Contains(ehlo, "STARTTLS") {
		t.Fatalf("EHLO before TLS: %q (want STARTTLS, no AUTH)", ehlo)
	}
	cl.cmd("AUTH PLAIN "+plain("bob@hamburger.edu", "pw"), 523)
	cl.cmd("MAIL FROM:<bob@hamburger.edu>", 530)
	e.starttls(cl)
	if ehlo := cl.cmd("EHLO client.crepes.fr", 250); !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
		t.Fatalf("EHLO over TLS: %q", ehlo)
	}
	cl.cmd("MAIL FROM:<bob@hamburger.edu>", 530)
	cl.cmd("AUTH PLAIN "+plain("bob@hamburger.edu", "wrong"), 535)
	cl.cmd("AUTH PLAIN "+plain("nobody@hamburger.edu", "pw"), 535)
	cl.cmd("AUTH PLAIN "+plain("bob@hamburger.edu", "pw"), 235)
	cl.cmd("MAIL FROM:<carol@hamburger.edu>", 553)
	cl.cmd("MAIL FROM:<>", 553)
	cl.cmd("MAIL FROM:<Bob@Hamburger.edu>", 250)
	cl.cmd("RCPT TO:<alice@crepes.fr>", 250) // relayed for the user
	cl.cmd("RCPT TO:<nobody@hamburger.edu>", 550)
	cl.cmd("DATA", 354)
	cl.send("From: Carol <carol@hamburger.edu>\r\nSubject: forged\r\n\r\nx\r\n.\r\n")
	cl.expect(550)
	cl.cmd("MAIL FROM:<bob@hamburger.edu>", 250)
	cl.cmd("RCPT TO:<carol@hamburger.edu>", 250)
	cl.cmd("DATA", 354)
	cl.send("From: Bob <bob@hamburger.edu>\r\nTo: carol@hamburger.edu\r\nSubject: hi\r\n\r\nhello\r\n.\r\n")
	cl.expect(250)
	cl.cmd("QUIT", 221)
	got := e.inbox(t, "carol@hamburger.edu")
	if len(got) != 1 || !strings.Contains(got[0], " with ESMTPSA id ") || !strings.Contains(got[0], "\r\nMessage-ID: <") || !strings.Contains(got[0], "\r\nDate: ") {
		t.Errorf("carol's inbox = %q", got)
	}
}

// AUTH LOGIN through go-smtp's client, and the rate limit per user.
func TestSubmissionLoginAndRateLimit(t *testing.T) {
	clock := testkit.NewClock(time.Unix(1_800_000_000, 0))
	e := start(t, Config{Submission: true, Limiter: NewRateLimiter(2, time.Hour, clock.Now)}, nil)
	send := func() error {
		nc, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		c, err := smtp.NewClientStartTLS(nc, &tls.Config{RootCAs: e.certs.Pool(), ServerName: "mx.hamburger.edu"})
		if err != nil {
			nc.Close()
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Auth(sasl.NewLoginClient("bob@hamburger.edu", "pw")); err != nil {
			t.Fatalf("AUTH LOGIN: %v", err)
		}
		return c.SendMail("bob@hamburger.edu", []string{"carol@hamburger.edu"}, strings.NewReader("From: bob@hamburger.edu\r\nSubject: n\r\n\r\nx\r\n"))
	}
	for i := range 2 {
		if err := send(); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	var se *smtp.SMTPError
	if err := send(); !errors.As(err, &se) || se.Code != 450 {
		t.Fatalf("third message in the hour: %v, want 450", err)
	}
	clock.Advance(time.Hour)
	if err := send(); err != nil {
		t.Fatalf("after an hour: %v", err)
	}
	if got := e.inbox(t, "carol@hamburger.edu"); len(got) != 3 {
		t.Errorf("carol has %d messages, want 3", len(got))
	}
}

// Port 465: TLS from the first byte.
func TestSubmissionImplicitTLS(t *testing.T) {
	e := start(t, Config{Submission: true, ImplicitTLS: true}, nil)
	tc, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: e.certs.Pool(), ServerName: "mx.hamburger.edu"})
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(tc)
	defer c.Close()
	if err := c.Hello("client"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered on implicit TLS")
	}
	if err := c.Auth(sasl.NewPlainClient("", "carol@hamburger.edu", "pw")); err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("carol@hamburger.edu", []string{"bob@hamburger.edu"}, strings.NewReader("From: carol@hamburger.edu\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	if got := e.inbox(t, "bob@hamburger.edu"); len(got) != 1 || !strings.Contains(got[0], "with ESMTPSA") {
		t.Errorf("bob's inbox = %q", got)
	}
}

// The MX port offers no AUTH, even over TLS; the submission port offers
// it in plain text to loopback clients only when told to.
func TestAuthWhere(t *testing.T) {
	mx := start(t, Config{}, nil)
	cl := dial(t, mx.addr)
	mx.starttls(cl)
	if ehlo := cl.cmd("EHLO c", 250); strings.Contains(ehlo, "AUTH") {
		t.Errorf("MX port offers AUTH: %q", ehlo)
	}
	cl.cmd("AUTH PLAIN "+plain("bob@hamburger.edu", "pw"), 503)

	sub := start(t, Config{Submission: true, InsecureAuthLoopback: true}, nil)
	cl = dial(t, sub.addr)
	if ehlo := cl.cmd("EHLO c", 250); !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
		t.Errorf("loopback submission without TLS: %q", ehlo)
	}
	cl.cmd("AUTH PLAIN "+plain("bob@hamburger.edu", "pw"), 235)
}

func TestRateLimiter(t *testing.T) {
	clock := testkit.NewClock(time.Unix(0, 0))
	r := NewRateLimiter(3, time.Minute, clock.Now)
	for i := range 3 {
		if !r.Allow("a") {
			t.Fatalf("message %d refused", i)
		}
		r.Sent("a")
		clock.Advance(10 * time.Second)
	}
	if r.Allow("a") || !r.Allow("b") {
		t.Fatal("a over the limit allowed, or b refused")
	}
	clock.Advance(31 * time.Second) // the first send is now a minute old
	if !r.Allow("a") {
		t.Fatal("a refused after the window slid")
	}
	clock.Advance(time.Hour)
	r.Allow("a")
	if len(r.sent) != 0 {
		t.Errorf("old entries kept: %v", r.sent)
	}
}
