package smtpd

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/mail/queue"
	"github.com/applayer/applayer/mail/store"
	"github.com/applayer/applayer/web/labca"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

type env struct {
	srv   *Server
	st    store.Store
	q     *queue.Queue
	addr  string
	certs *labca.CA
}

// start runs a store, a queue delivering into it and a server for
// hamburger.edu with the users bob and carol, on 127.0.0.1:0.
func start(t testing.TB, cfg Config, wrap func(store.Store) store.Store) *env {
	t.Helper()
	ctx := context.Background()
	dir, err := os.MkdirTemp(t.TempDir(), "env") // unique even for fuzz inputs
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "mail.db"), store.Options{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, u := range []string{"bob@hamburger.edu", "carol@hamburger.edu"} {
		if err := st.AddUser(ctx, u, "pw", 0); err != nil {
			t.Fatal(err)
		}
	}
	d := service.Deps{Logger: testkit.Logger(t)}
	q, err := queue.New(queue.Config{Dir: filepath.Join(dir, "spool")}, d, queue.Local{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, q)
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Domains == nil {
		cfg.Domains = []string{"hamburger.edu"}
	}
	cfg.Hostname = "mx.hamburger.edu"
	e := &env{st: st, q: q}
	if cfg.TLS == nil {
		ca, err := labca.LoadOrCreate(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ca.Issue("mx.hamburger.edu")
		if err != nil {
			t.Fatal(err)
		}
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		e.certs = ca
	}
	var sst store.Store = st
	if wrap != nil {
		sst = wrap(st)
	}
	srv, err := New(cfg, d, sst, q)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = testkit.Start(t, srv)
	e.addr = srv.Addrs()[0].String()
	return e
}

// inbox waits for the queue to drain and returns bob's messages.
func (e *env) inbox(t testing.TB, user string) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.q.Len() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("queue did not drain")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx := context.Background()
	msgs, err := e.st.Messages(ctx, user, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		b, err := e.st.Body(ctx, user, "INBOX", m.UID)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// client is a raw SMTP client: it writes exactly the bytes it is given.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	cl.expect(220)
	return cl
}

// reply reads one (multi-line) reply and returns its code and text.
func (cl *client) reply() (int, string) {
	cl.t.Helper()
	var text strings.Builder
	for {
		line, err := cl.r.ReadString('\n')
		if err != nil {
			return 0, text.String() + "<" + err.Error() + ">"
		}
		text.WriteString(line)
		if len(line) < 4 || line[3] != '-' {
			var code int
			fmt.Sscanf(line, "%d", &code)
			return code, text.String()
		}
	}
}

func (cl *client) expect(code int) string {
	cl.t.Helper()
	got, text := cl.reply()
	if got != code {
		cl.t.Fatalf("reply %d %q, want %d", got, text, code)
	}
	return text
}

func (cl *client) send(s string) {
	cl.t.Helper()
	if _, err := io.WriteString(cl.c, s); err != nil {
		cl.t.Fatal(err)
	}
}

// cmd sends a command line and checks the reply code.
func (cl *client) cmd(line string, code int) string {
	cl.t.Helper()
	cl.send(line + "\r\n")
	return cl.expect(code)
}

func TestDeliveryWithReceivedHeader(t *testing.T) {
	e := start(t, Config{}, nil)
	cl := dial(t, e.addr)
	ehlo := cl.cmd("EHLO client.crepes.fr", 250)
	for _, ext := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8", "STARTTLS", "CHUNKING", "SIZE 26214400"} {
		if !strings.Contains(ehlo, ext) {
			t.Errorf("EHLO does not offer %s: %q", ext, ehlo)
		}
	}
	cl.cmd("MAIL FROM:<alice@crepes.fr>", 250)
	cl.cmd("RCPT TO:<Bob@Hamburger.EDU>", 250)
	cl.cmd("DATA", 354)
	cl.send("Subject: hi\r\n\r\nHello Bob\r\n..leading dot\r\n.\r\n")
	if txt := cl.expect(250); !strings.Contains(txt, "queued as") {
		t.Errorf("DATA reply %q", txt)
	}
	cl.cmd("QUIT", 221)
	got := e.inbox(t, "bob@hamburger.edu")
	if len(got) != 1 {
		t.Fatalf("inbox = %q", got)
	}
	msg := got[0]
	if !strings.HasPrefix(msg, "Received: from client.crepes.fr ([127.0.0.1])\r\n\tby mx.hamburger.edu with ESMTP id ") ||
		!strings.Contains(msg, "\r\n\tfor <bob@hamburger.edu>;\r\n\t") ||
		!strings.HasSuffix(msg, "\r\nSubject: hi\r\n\r\nHello Bob\r\n.leading dot\r\n") {
		t.Errorf("stored message:\n%s", msg)
	}
}

// Pipelined commands in one write get their replies in order.
func TestPipelining(t *testing.T) {
	e := start(t, Config{}, nil)
	cl := dial(t, e.addr)
	cl.cmd("EHLO c", 250)
	cl.send("MAIL FROM:<a@crepes.fr>\r\nRCPT TO:<bob@hamburger.edu>\r\nRCPT TO:<nobody@hamburger.edu>\r\nRCPT TO:<carol@hamburger.edu>\r\nDATA\r\n")
	for _, code := range []int{250, 250, 550, 250, 354} {
		cl.expect(code)
	}
	cl.send("Subject: p\r\n\r\nx\r\n.\r\n")
	cl.expect(250)
	if len(e.inbox(t, "bob@hamburger.edu")) != 1 || len(e.inbox(t, "carol@hamburger.edu")) != 1 {
		t.Error("pipelined message not delivered to both")
	}
}

func TestReplyCodes(t *testing.T) {
	e := start(t, Config{MaxMessageBytes: 1000, MaxRecipients: 2}, nil)
	for _, tc := range []struct {
		name string
		cmds []string
		want []int
	}{
		{"relay refused", []string{"MAIL FROM:<a@crepes.fr>", "RCPT TO:<someone@elsewhere.org>"}, []int{250, 554}},
		{"relay refused with local sender", []string{"MAIL FROM:<bob@hamburger.edu>", "RCPT TO:<x@crepes.fr>"}, []int{250, 554}},
		{"relay by percent hack refused", []string{"MAIL FROM:<a@crepes.fr>", "RCPT TO:<x%crepes.fr@hamburger.edu>"}, []int{250, 550}},
		{"source route to elsewhere refused", []string{"MAIL FROM:<a@crepes.fr>", "RCPT TO:<@hamburger.edu:x@crepes.fr>"}, []int{250, 554}},
		{"unknown user", []string{"MAIL FROM:<a@crepes.fr>", "RCPT TO:<nobody@hamburger.edu>"}, []int{250, 550}},
		{"declared size too big", []string{"MAIL FROM:<a@crepes.fr> SIZE=5000"}, []int{552}},
		{"null sender accepted", []string{"MAIL FROM:<>", "RCPT TO:<bob@hamburger.edu>"}, []int{250, 250}},
		{"sender without domain", []string{"MAIL FROM:<no-domain>"}, []int{501}},
		{"bad sender domain", []string{"MAIL FROM:<a@-x.org>"}, []int{553}},
		{"bad recipient", []string{"MAIL FROM:<a@crepes.fr>", "RCPT TO:<bob@ham burger.edu>"}, []int{250, 501}},
		{"rcpt before mail", []string{"RCPT TO:<bob@hamburger.edu>"}, []int{502}},
		{"data without rcpt", []string{"MAIL FROM:<a@crepes.fr>", "DATA"}, []int{250, 502}},
		{"too many recipients", []string{"MAIL FROM:<a@crepes.fr>", "RCPT TO:<bob@hamburger.edu>", "RCPT TO:<carol@hamburger.edu>", "RCPT TO:<bob@hamburger.edu>"}, []int{250, 250, 250, 452}},
		{"unknown command", []string{"FROB"}, []int{500}},
		{"too long line", []string{"NOOP " + strings.Repeat("x", 3000)}, []int{500}},
		{"utf8 user unknown", []string{"MAIL FROM:<ålice@crepes.fr> SMTPUTF8", "RCPT TO:<bøb@hamburger.edu>"}, []int{250, 550}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := dial(t, e.addr)
			cl.cmd("EHLO c", 250)
			for i, c := range tc.cmds {
				cl.cmd(c, tc.want[i])
			}
		})
	}
	t.Run("message too big", func(t *testing.T) {
		cl := dial(t, e.addr)
		cl.cmd("EHLO c", 250)
		cl.cmd("MAIL FROM:<a@crepes.fr>", 250)
		cl.cmd("RCPT TO:<bob@hamburger.edu>", 250)
		cl.cmd("DATA", 354)
		cl.send(strings.Repeat("0123456789012345678901234567890123456789\r\n", 100) + ".\r\n")
		cl.expect(552)
		cl.cmd("NOOP", 250) // the session goes on
	})
	if got := e.inbox(t, "bob@hamburger.edu"); len(got) != 0 {
		t.Errorf("refused mail stored: %q", got)
	}
}

// SMTP smuggling (RFC 5321 2.3.8; the 2023 disclosures): an end of data
// spelt with a bare LF or CR must not end the message, and a message that
// holds one is refused whole, so nothing after it is taken for a second
// message either.
func TestSmugglingRefused(t *testing.T) {
	e := start(t, Config{}, nil)
	smuggled := "MAIL FROM:<admin@hamburger.edu>\r\nRCPT TO:<carol@hamburger.edu>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n"
	for _, tc := range []struct{ name, end string }{
		{"LF.LF", "\n.\n"},
		{"CR.CR", "\r.\r"},
		{"LF.CRLF", "\n.\r\n"},
		{"CRLF.LF", "\r\n.\n"},
		{"LF.CR", "\n.\r"},
		{"CR.LF", "\r.\n"},
		{"bare LF line", "\nmore\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := dial(t, e.addr)
			cl.cmd("EHLO c", 250)
			cl.cmd("MAIL FROM:<a@crepes.fr>", 250)
			cl.cmd("RCPT TO:<bob@hamburger.edu>", 250)
			cl.cmd("DATA", 354)
			cl.send("Subject: first\r\n\r\nhello" + tc.end + smuggled + ".\r\n")
			if txt := cl.expect(550); !strings.Contains(txt, "5.6.0") {
				t.Errorf("reply %q", txt)
			}
			cl.cmd("NOOP", 250)
		})
	}
	// CRLF "." CR: go-smtp's data reader (unlike net/textproto's) drops
	// the "." and the CR when a line starts ".\r" without "\n", so the
	// bare CR never reaches the session and cannot be refused; what is
	// stored is one message whose lines all end in CRLF, with the would-be
	// second message inside it, so nothing is smuggled.
	t.Run("CRLF.CR", func(t *testing.T) {
		cl := dial(t, e.addr)
		cl.cmd("EHLO c", 250)
		cl.cmd("MAIL FROM:<a@crepes.fr>", 250)
		cl.cmd("RCPT TO:<bob@hamburger.edu>", 250)
		cl.cmd("DATA", 354)
		cl.send("Subject: first\r\n\r\nhello\r\n.\r" + smuggled + ".\r\n")
		cl.expect(250)
		got := e.inbox(t, "bob@hamburger.edu")
		if len(got) != 1 || CheckLineEndings([]byte(got[0])) >= 0 || !strings.HasSuffix(got[0], "hello\r\n"+smuggled) {
			t.Errorf("stored %q", got)
		}
		e.st.Delete(context.Background(), "bob@hamburger.edu", "INBOX", 1)
	})
	// The BDAT path (CHUNKING) checks the same.
	cl := dial(t, e.addr)
	cl.cmd("EHLO c", 250)
	cl.cmd("MAIL FROM:<a@crepes.fr>", 250)
	cl.cmd("RCPT TO:<bob@hamburger.edu>", 250)
	chunk := "Subject: x\r\n\r\na\n.\nb\r\n"
	cl.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(chunk), chunk))
	cl.expect(550)
	for _, u := range []string{"bob@hamburger.edu", "carol@hamburger.edu"} {
		if got := e.inbox(t, u); len(got) != 0 {
			t.Errorf("%s got smuggled mail: %q", u, got)
		}
	}
}

func TestChunking(t *testing.T) {
	e := start(t, Config{}, nil)
	cl := dial(t, e.addr)
	cl.cmd("EHLO c", 250)
	cl.cmd("MAIL FROM:<a@crepes.fr>", 250)
	cl.cmd("RCPT TO:<bob@hamburger.edu>", 250)
	c1, c2 := "Subject: chunks\r\n\r\n", "first\r\n.second\r\n"
	cl.send(fmt.Sprintf("BDAT %d\r\n%s", len(c1), c1))
	cl.expect(250)
	cl.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(c2), c2))
	cl.expect(250)
	got := e.inbox(t, "bob@hamburger.edu")
	if len(got) != 1 || !strings.HasSuffix(got[0], "\r\nSubject: chunks\r\n\r\nfirst\r\n.second\r\n") {
		t.Errorf("inbox = %q", got)
	}
}

func TestTooManyErrors(t *testing.T) {
	e := start(t, Config{MaxErrors: 2}, nil)
	cl := dial(t, e.addr)
	cl.cmd("EHLO c", 250)
	cl.cmd("MAIL FROM:<a@crepes.fr>", 250)
	cl.cmd("RCPT TO:<x@elsewhere.org>", 554)
	cl.cmd("RCPT TO:<nobody@hamburger.edu>", 550)
	cl.cmd("RCPT TO:<y@elsewhere.org>", 421)
	if code, txt := cl.reply(); code != 0 {
		t.Errorf("connection still open after 421: %d %q", code, txt)
	}
}

// panicStore panics when asked for one user: a bug in the session.
type panicStore struct{ store.Store }

func (p panicStore) User(ctx context.Context, a string) (store.User, error) {
	if strings.HasPrefix(a, "boom@") {
		panic("test panic")
	}
	return p.Store.User(ctx, a)
}

func TestPanicAnswers421(t *testing.T) {
	e := start(t, Config{}, func(s store.Store) store.Store { return panicStore{s} })
	cl := dial(t, e.addr)
	cl.cmd("EHLO c", 250)
	cl.cmd("MAIL FROM:<a@crepes.fr>", 250)
	cl.cmd("RCPT TO:<boom@hamburger.edu>", 421)
	// The server keeps serving others.
	cl2 := dial(t, e.addr)
	cl2.cmd("EHLO c", 250)
	cl2.cmd("MAIL FROM:<a@crepes.fr>", 250)
	cl2.cmd("RCPT TO:<bob@hamburger.edu>", 250)
}

func TestSTARTTLS(t *testing.T) {
	e := start(t, Config{}, nil)
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
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered again inside TLS")
	}
	if err := c.SendMail("alice@crepes.fr", []string{"bob@hamburger.edu"}, strings.NewReader("Subject: tls\r\n\r\nsecret\r\n")); err != nil {
		t.Fatal(err)
	}
	if st, ok := c.TLSConnectionState(); !ok || !st.HandshakeComplete {
		t.Fatal("no TLS after STARTTLS")
	}
	c.Quit()
	got := e.inbox(t, "bob@hamburger.edu")
	if len(got) != 1 || !strings.Contains(got[0], " with ESMTPS id ") {
		t.Errorf("inbox = %q", got)
	}
}

func TestConnectionLimit(t *testing.T) {
	e := start(t, Config{MaxConnsPerIP: 1}, nil)
	cl := dial(t, e.addr)
	c2, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(c2).ReadString('\n')
	if !strings.HasPrefix(line, "421 ") {
		t.Errorf("second connection got %q, want 421", line)
	}
	cl.cmd("NOOP", 250)
}

func TestReadTimeout(t *testing.T) {
	e := start(t, Config{ReadTimeout: 200 * time.Millisecond}, nil)
	cl := dial(t, e.addr)
	if code, txt := cl.reply(); code != 421 {
		t.Errorf("idle client got %d %q, want 421", code, txt)
	}
}

func TestSplitAddress(t *testing.T) {
	for _, tc := range []struct {
		in, local, domain string
		ok                bool
	}{
		{"bob@hamburger.edu", "bob", "hamburger.edu", true},
		{"Bob@Hamburger.EDU.", "bob", "hamburger.edu", true},
		{"\"odd@local\"@x.org", "\"odd@local\"", "x.org", true},
		{"bøb@hamburger.edu", "bøb", "hamburger.edu", true},
		{"a@[127.0.0.1]", "a", "[127.0.0.1]", true},
		{"a@[ipv6:::1]", "a", "[ipv6:::1]", true},
		{"a@[999.1.1.1]", "", "", false},
		{"a@[1.2.3.4", "", "", false},
		{"nodomain", "", "", false},
		{"@x.org", "", "", false},
		{"a@", "", "", false},
		{"a@x..org", "", "", false},
		{"a@-x.org", "", "", false},
		{"a@x_y.org", "", "", false},
		{"a b@x.org", "", "", false},
		{"a\r\nb@x.org", "", "", false},
		{strings.Repeat("l", 65) + "@x.org", "", "", false},
		{"a@" + strings.Repeat("d", 64) + ".org", "", "", false},
	} {
		l, d, err := SplitAddress(tc.in)
		if (err == nil) != tc.ok || l != tc.local || d != tc.domain {
			t.Errorf("SplitAddress(%q) = %q, %q, %v; want %q, %q ok=%v", tc.in, l, d, err, tc.local, tc.domain, tc.ok)
		}
	}
}

func TestCheckLineEndings(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"", -1},
		{"a\r\nb\r\n", -1},
		{"a\nb", 1},
		{"a\rb", 1},
		{"\n", 0},
		{"a\r", 1},
		{"a\r\r\n", 1},
		{"a\r\n\n", 3},
	} {
		if got := CheckLineEndings([]byte(tc.in)); got != tc.want {
			t.Errorf("CheckLineEndings(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// Commands go-smtp refuses itself (unknown, bad syntax) have go-smtp's own
// limit: after the fourth the connection is closed.
func TestTooManySyntaxErrors(t *testing.T) {
	e := start(t, Config{}, nil)
	cl := dial(t, e.addr)
	for range 3 {
		cl.cmd("FROB", 500)
	}
	cl.send("FROB\r\n")
	cl.expect(500)
	if txt := cl.expect(500); !strings.Contains(txt, "Too many errors") {
		t.Errorf("reply %q", txt)
	}
	if code, txt := cl.reply(); code != 0 {
		t.Errorf("connection still open: %d %q", code, txt)
	}
}

// A recipient over quota gets 452 4.2.2 at RCPT (counting a declared
// SIZE), so the sender keeps the message and retries.
func TestQuotaAtRcpt(t *testing.T) {
	e := start(t, Config{}, nil)
	ctx := context.Background()
	if err := e.st.SetQuota(ctx, "bob@hamburger.edu", 1000); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Append(ctx, "bob@hamburger.edu", "INBOX", []byte(strings.Repeat("x", 600)), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	cl := dial(t, e.addr)
	cl.cmd("EHLO c", 250)
	cl.cmd("MAIL FROM:<a@crepes.fr> SIZE=300", 250)
	cl.cmd("RCPT TO:<bob@hamburger.edu>", 250)
	cl.cmd("RSET", 250)
	cl.cmd("MAIL FROM:<a@crepes.fr> SIZE=500", 250)
	if txt := cl.cmd("RCPT TO:<bob@hamburger.edu>", 452); !strings.Contains(txt, "4.2.2") {
		t.Errorf("reply %q", txt)
	}
	cl.cmd("RCPT TO:<carol@hamburger.edu>", 250)
	if _, err := e.st.Append(ctx, "bob@hamburger.edu", "INBOX", []byte(strings.Repeat("x", 400)), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	cl.cmd("RSET", 250)
	cl.cmd("MAIL FROM:<a@crepes.fr>", 250)
	cl.cmd("RCPT TO:<bob@hamburger.edu>", 452)
}
