package pop3d

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/mail/store"
	"github.com/applayer/applayer/web/labca"
)

type env struct {
	st        store.Store
	srv       *Server
	plain, tl string
	ca        *labca.CA
	caFile    string
}

const msg1 = "From: alice@crepes.fr\r\nSubject: one\r\n\r\nline 1\r\n.dot line\r\nline 3\r\n"

func newEnv(t testing.TB, loopbackAuth bool, n int) *env {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "mail.db"), store.Options{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.AddUser(ctx, "bob@hamburger.edu", "s3cret", 0); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := st.Append(ctx, "bob@hamburger.edu", "INBOX", []byte(strings.Replace(msg1, "one", fmt.Sprint(i+1), 1)), nil, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	caDir := t.TempDir()
	ca, err := labca.LoadOrCreate(caDir)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("pop.hamburger.edu", "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, InsecureAuthLoopback: loopbackAuth, AuthFailDelay: time.Millisecond}, service.Deps{Logger: testkit.Logger(t)}, st)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, srv)
	a := srv.Addrs()
	return &env{st: st, srv: srv, plain: a[0].String(), tl: a[1].String(), ca: ca, caFile: filepath.Join(caDir, labca.CertFileName)}
}

type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	if g := cl.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	return cl
}

func (c *client) line() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// cmd sends a command and returns its status line.
func (c *client) cmd(format string, args ...any) string {
	c.t.Helper()
	fmt.Fprintf(c.c, format+"\r\n", args...)
	return c.line()
}

// multi sends a command expecting a multi-line answer; it returns the
// status line and the lines (dot-unstuffed).
func (c *client) multi(format string, args ...any) (string, []string) {
	c.t.Helper()
	st := c.cmd(format, args...)
	if !strings.HasPrefix(st, "+OK") {
		return st, nil
	}
	var lines []string
	for {
		l := c.line()
		if l == "." {
			return st, lines
		}
		lines = append(lines, strings.TrimPrefix(l, "."))
	}
}

func (c *client) want(prefix, format string, args ...any) string {
	c.t.Helper()
	st := c.cmd(format, args...)
	if !strings.HasPrefix(st, prefix) {
		c.t.Errorf("%s: %q, want %s", fmt.Sprintf(format, args...), st, prefix)
	}
	return st
}

func TestSession(t *testing.T) {
	e := newEnv(t, true, 3)
	c := dial(t, e.plain)
	_, caps := c.multi("CAPA")
	for _, w := range []string{"TOP", "UIDL", "USER", "STLS", "RESP-CODES", "PIPELINING"} {
		if !strings.Contains(strings.Join(caps, " "), w) {
			t.Errorf("CAPA lacks %s: %q", w, caps)
		}
	}
	c.want("-ERR", "STAT")
	c.want("+OK", "USER bob@hamburger.edu")
	c.want("-ERR [AUTH]", "PASS wrong")
	c.want("+OK", "USER bob@hamburger.edu")
	c.want("+OK bob@hamburger.edu has 3 messages", "PASS s3cret")
	size := len(msg1) - len("one") + 1
	c.want(fmt.Sprintf("+OK 3 %d", 3*size), "STAT")
	if _, l := c.multi("LIST"); strings.Join(l, ",") != fmt.Sprintf("1 %d,2 %d,3 %d", size, size, size) {
		t.Errorf("LIST: %q", l)
	}
	c.want(fmt.Sprintf("+OK 2 %d", size), "LIST 2")
	_, uidl := c.multi("UIDL")
	if len(uidl) != 3 || !strings.HasPrefix(uidl[0], "1 ") || !strings.HasSuffix(uidl[2], ".3") {
		t.Errorf("UIDL: %q", uidl)
	}
	st, body := c.multi("RETR 1")
	if st != fmt.Sprintf("+OK %d octets", size) || strings.Join(body, "\n") != "From: alice@crepes.fr\nSubject: 1\n\nline 1\n.dot line\nline 3" {
		t.Errorf("RETR 1: %q %q", st, body)
	}
	if _, top := c.multi("TOP 2 1"); strings.Join(top, "\n") != "From: alice@crepes.fr\nSubject: 2\n\nline 1" {
		t.Errorf("TOP 2 1: %q", top)
	}
	c.want("+OK", "DELE 1")
	c.want("-ERR", "DELE 1")
	c.want("-ERR", "RETR 1")
	c.want(fmt.Sprintf("+OK 2 %d", 2*size), "STAT")
	c.want("+OK", "RSET")
	c.want(fmt.Sprintf("+OK 3 %d", 3*size), "STAT")
	c.want("-ERR", "RETR 9")
	c.want("-ERR", "RETR x")
	c.want("-ERR", "FROB")
	c.want("-ERR", "NOOP %s", strings.Repeat("x", 1000)) // overlong: -ERR, session goes on
	c.want("+OK", "NOOP")
	c.want("+OK", "DELE 2")

	// A second session gets -ERR [IN-USE] while the first holds the lock.
	d := dial(t, e.plain)
	d.want("+OK", "USER bob@hamburger.edu")
	d.want("-ERR [IN-USE]", "PASS s3cret")

	// Nothing is deleted before QUIT.
	if msgs, _ := e.st.Messages(context.Background(), "bob@hamburger.edu", "INBOX"); len(msgs) != 3 {
		t.Errorf("before QUIT: %d messages, want 3", len(msgs))
	}
	c.want("+OK", "QUIT")
	msgs, _ := e.st.Messages(context.Background(), "bob@hamburger.edu", "INBOX")
	if len(msgs) != 2 || msgs[0].UID != 1 || msgs[1].UID != 3 {
		t.Errorf("after QUIT: %+v, want UIDs 1 and 3", msgs)
	}
	// Now the lock is free.
	d.want("+OK", "USER bob@hamburger.edu")
	d.want("+OK bob@hamburger.edu has 2 messages", "PASS s3cret")
	d.want("+OK", "DELE 1")
	d.c.Close() // dropped without QUIT: nothing deleted
	// The lock goes when the server sees the connection end.
	for deadline := time.Now().Add(10 * time.Second); ; {
		f := dial(t, e.plain)
		f.want("+OK", "USER bob@hamburger.edu")
		st := f.cmd("PASS s3cret")
		if strings.HasPrefix(st, "+OK bob@hamburger.edu has 2 messages") {
			break
		}
		if !strings.HasPrefix(st, "-ERR [IN-USE]") || time.Now().After(deadline) {
			t.Fatalf("after a dropped session: %q", st)
		}
		f.c.Close()
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTLSRequired(t *testing.T) {
	e := newEnv(t, false, 1)
	c := dial(t, e.plain)
	if _, caps := c.multi("CAPA"); strings.Contains(strings.Join(caps, " "), "USER") {
		t.Errorf("USER offered without TLS: %q", caps)
	}
	c.want("-ERR [AUTH]", "USER bob@hamburger.edu")
	c.want("+OK", "STLS")
	tc := tls.Client(c.c, &tls.Config{RootCAs: e.ca.Pool(), ServerName: "pop.hamburger.edu"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.c, c.r = tc, bufio.NewReader(tc)
	c.want("+OK", "USER bob@hamburger.edu")
	c.want("+OK bob@hamburger.edu has 1 messages", "PASS s3cret")
	c.want("+OK", "QUIT")

	nc, err := tls.Dial("tcp", e.tl, &tls.Config{RootCAs: e.ca.Pool(), ServerName: "pop.hamburger.edu"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	d := &client{t: t, c: nc, r: bufio.NewReader(nc)}
	d.line()
	d.want("+OK", "USER bob@hamburger.edu")
	d.want("+OK", "PASS s3cret")
}

// Pipelined RETRs are answered in order with their sizes ("+OK n
// octets", written without fmt), and a command left half-sent after
// them still meets the read timeout (commands already buffered set no
// new deadline; a partial one does).
func TestPipelinedRETRThenStall(t *testing.T) {
	e := newEnv(t, true, 3)
	ctx := context.Background()
	srv, err := New(Config{Addr: "127.0.0.1:0", InsecureAuthLoopback: true, AuthFailDelay: time.Millisecond, Timeout: 300 * time.Millisecond}, service.Deps{Logger: testkit.Logger(t)}, e.st)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, srv)
	msgs, err := e.st.Messages(ctx, "bob@hamburger.edu", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, srv.Addrs()[0].String())
	c.cmd("USER bob@hamburger.edu")
	if st := c.cmd("PASS s3cret"); !strings.HasPrefix(st, "+OK") {
		t.Fatalf("PASS: %s", st)
	}
	fmt.Fprintf(c.c, "RETR 1\r\nRETR 2\r\nRETR 3\r\nNOO")
	for i, m := range msgs {
		if st := c.line(); st != fmt.Sprintf("+OK %d octets", m.Size) {
			t.Errorf("RETR %d: %q", i+1, st)
		}
		for c.line() != "." {
		}
	}
	start := time.Now()
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if l, err := c.r.ReadString('\n'); err == nil {
		t.Errorf("after a stalled command: %q, want the connection closed", l)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("closed after %v, want about the 300ms timeout", d)
	}
}
