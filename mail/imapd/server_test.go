package imapd

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/mail/mailhub"
	"github.com/applayer/applayer/mail/store"
	"github.com/applayer/applayer/web/labca"
)

// env is a store with Bob (password s3cret), a hub and an IMAP server on
// loopback: Addr plain with STARTTLS, TLSAddr implicit TLS.
type env struct {
	st        store.Store // through the hub, as the queue delivers
	hub       *mailhub.Hub
	srv       *Server
	plain, tl string
	ca        *labca.CA
	caDir     string
}

func newEnv(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	ctx := context.Background()
	raw, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "mail.db"), store.Options{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	for _, u := range []string{"bob@hamburger.edu", "alice@hamburger.edu"} {
		if err := raw.AddUser(ctx, u, "s3cret", 0); err != nil {
			t.Fatal(err)
		}
	}
	caDir := t.TempDir()
	ca, err := labca.LoadOrCreate(caDir)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("imap.hamburger.edu", "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	hub := mailhub.New()
	cfg := Config{Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, InsecureAuthLoopback: true, AuthFailDelay: time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg, service.Deps{Logger: testkit.Logger(t)}, hub.Wrap(raw), hub)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, srv)
	e := &env{st: hub.Wrap(raw), hub: hub, srv: srv, ca: ca, caDir: caDir}
	addrs := srv.Addrs()
	e.plain = addrs[0].String()
	if len(addrs) > 1 {
		e.tl = addrs[1].String()
	}
	return e
}

// client is a raw IMAP client: commands in, lines out (literals inlined).
type client struct {
	t   *testing.T
	c   net.Conn
	r   *bufio.Reader
	tag int
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	if g := cl.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q", g)
	}
	return cl
}

func (c *client) startTLS(ca *labca.CA) {
	c.t.Helper()
	c.must("STARTTLS")
	tc := tls.Client(c.c, &tls.Config{RootCAs: ca.Pool(), ServerName: "imap.hamburger.edu"})
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.c, c.r = tc, bufio.NewReader(tc)
}

var literal = regexp.MustCompile(`~?\{(\d+)\}$`)

// line reads one response line, literals included.
func (c *client) line() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v (after %q)", err, b.String()+l)
		}
		l = strings.TrimSuffix(l, "\r\n")
		b.WriteString(l)
		m := literal.FindStringSubmatch(l)
		if m == nil {
			return b.String()
		}
		n, _ := strconv.Atoi(m[1])
		buf := make([]byte, n)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			c.t.Fatal(err)
		}
		b.Write(buf)
	}
}

// cmd sends a command and returns the untagged lines and the tagged one.
func (c *client) cmd(format string, args ...any) ([]string, string) {
	c.t.Helper()
	c.tag++
	tag := fmt.Sprintf("a%d", c.tag)
	if _, err := fmt.Fprintf(c.c, tag+" "+format+"\r\n", args...); err != nil {
		c.t.Fatal(err)
	}
	var lines []string
	for {
		l := c.line()
		if strings.HasPrefix(l, tag+" ") {
			return lines, strings.TrimPrefix(l, tag+" ")
		}
		lines = append(lines, l)
	}
}

// must runs a command that must succeed.
func (c *client) must(format string, args ...any) []string {
	c.t.Helper()
	lines, st := c.cmd(format, args...)
	if !strings.HasPrefix(st, "OK") {
		c.t.Fatalf("%s: %s (untagged %q)", fmt.Sprintf(format, args...), st, lines)
	}
	return lines
}

// appendMsg APPENDs with a synchronizing literal.
func (c *client) appendMsg(box, flags, msg string) string {
	c.t.Helper()
	c.tag++
	tag := fmt.Sprintf("a%d", c.tag)
	fmt.Fprintf(c.c, "%s APPEND %s (%s) {%d}\r\n", tag, box, flags, len(msg))
	if l := c.line(); !strings.HasPrefix(l, "+") {
		return l
	}
	fmt.Fprintf(c.c, "%s\r\n", msg)
	for {
		l := c.line()
		if strings.HasPrefix(l, tag+" ") {
			return strings.TrimPrefix(l, tag+" ")
		}
	}
}

func joined(lines []string) string { return strings.Join(lines, "\n") }

func contains(t *testing.T, what string, lines []string, want ...string) {
	t.Helper()
	all := joined(lines)
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("%s: want %q in\n%s", what, w, all)
		}
	}
}

func dialTLS(t *testing.T, e *env) *client {
	t.Helper()
	nc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.tl, &tls.Config{RootCAs: e.ca.Pool(), ServerName: "imap.hamburger.edu"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &client{t: t, c: nc, r: bufio.NewReader(nc)}
	if g := c.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q", g)
	}
	return c
}
