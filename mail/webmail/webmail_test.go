package webmail_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/mail/imapd"
	"github.com/applayer/applayer/mail/mta"
	"github.com/applayer/applayer/mail/smtpd"
	"github.com/applayer/applayer/mail/store"
	"github.com/applayer/applayer/mail/webmail"
)

// env: one mail server for hamburger.edu and crepes.fr (SMTP and IMAP on
// loopback), Alice and Bob, and the web mail in front of it.
type env struct {
	mail *mta.Server
	web  *webmail.Server
	url  string
	smtp string
}

func newEnv(t *testing.T, mod func(*webmail.Config)) *env {
	t.Helper()
	dir := t.TempDir()
	srv, err := mta.New(context.Background(), mta.Config{
		SMTP:   smtpdConfig(),
		DB:     filepath.Join(dir, "mail.db"),
		Spool:  filepath.Join(dir, "spool"),
		Store:  store.Options{BcryptCost: bcrypt.MinCost},
		Access: mta.Access{IMAP: imapd.Config{Addr: "127.0.0.1:0", InsecureAuthLoopback: true, AuthFailDelay: time.Millisecond}},
	}, service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, srv)
	for _, u := range []string{"alice@crepes.fr", "bob@hamburger.edu"} {
		if err := srv.Store().AddUser(context.Background(), u, "s3cret", 0); err != nil {
			t.Fatal(err)
		}
	}
	addrs := srv.Addrs()
	cfg := webmail.Config{Addr: "127.0.0.1:0", IMAPAddr: addrs[1].String(), SMTPAddr: addrs[0].String(), PageSize: 25}
	if mod != nil {
		mod(&cfg)
	}
	web, err := webmail.New(cfg, service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, web)
	return &env{mail: srv, web: web, url: "http://" + web.Addrs()[0].String(), smtp: addrs[0].String()}
}

// sendMail sends over SMTP and waits until the recipient's INBOX has it.
func (e *env) sendMail(t *testing.T, from, to, msg string) {
	t.Helper()
	before, _ := e.mail.Store().Messages(context.Background(), to, "INBOX")
	c, err := smtp.Dial(e.smtp)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail(from, []string{to}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if msgs, _ := e.mail.Store().Messages(context.Background(), to, "INBOX"); len(msgs) > len(before) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("message to %s not delivered", to)
}

const aliceMsg = "From: Alice <alice@crepes.fr>\r\nTo: Bob <bob@hamburger.edu>\r\nSubject: Crepes tonight\r\nDate: Thu, 03 Dec 2026 12:00:00 +0000\r\nMessage-ID: <crepes-1@crepes.fr>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: multipart/alternative; boundary=YY\r\n\r\n--YY\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBring the batter, Bob.\r\n--YY\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Bring the <b>batter</b>, Bob.</p><img src=\"https://tracker.example/pixel.gif\"><script>alert(1)</script><a href=\"javascript:alert(2)\">x</a> <a href=\"https://crepes.fr/recipe\">recipe</a>\r\n--YY--\r\n--XX\r\nContent-Type: text/plain; name=recipe.txt\r\nContent-Disposition: attachment; filename=recipe.txt\r\n\r\n250 g flour, 4 eggs, 500 ml milk\r\n--XX--\r\n"

// client is a browser-like HTTP client with cookies and no redirects
// followed for POSTs' answers to be seen.
type client struct {
	t   *testing.T
	h   *http.Client
	url string
}

func newClient(t *testing.T, e *env) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, h: &http.Client{Jar: jar, Timeout: 30 * time.Second}, url: e.url}
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (c *client) get(path string) (int, string) {
	c.t.Helper()
	resp, err := c.h.Get(c.url + path)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (c *client) post(path string, form url.Values) (int, string) {
	c.t.Helper()
	resp, err := c.h.PostForm(c.url+path, form)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (c *client) login(user, pw string) (int, string) {
	c.t.Helper()
	_, page := c.get("/login")
	m := csrfRe.FindStringSubmatch(page)
	if m == nil {
		c.t.Fatalf("no csrf on login page: %s", page)
	}
	return c.post("/login", url.Values{"csrf": {m[1]}, "user": {user}, "password": {pw}})
}

func TestReadSanitizedAndAttachments(t *testing.T) {
	e := newEnv(t, nil)
	e.sendMail(t, "alice@crepes.fr", "bob@hamburger.edu", aliceMsg)
	c := newClient(t, e)
	if st, body := c.login("bob@hamburger.edu", "s3cret"); st != 200 || !strings.Contains(body, "Crepes tonight") {
		t.Fatalf("login → inbox: %d\n%s", st, body)
	}
	st, body := c.get("/msg?box=INBOX&uid=1")
	if st != 200 {
		t.Fatalf("message: %d %s", st, body)
	}
	for _, want := range []string{"<b>batter</b>", "Remote images in this message were blocked", "recipe.txt", `noreferrer`} {
		if !strings.Contains(body, want) {
			t.Errorf("message page lacks %q", want)
		}
	}
	for _, bad := range []string{"<script", "tracker.example", "javascript:"} {
		if strings.Contains(body, bad) {
			t.Errorf("message page has %q", bad)
		}
	}
	resp, err := c.h.Get(e.url + "/att?box=INBOX&uid=1&i=0")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "250 g flour, 4 eggs, 500 ml milk" || !strings.Contains(resp.Header.Get("Content-Disposition"), `attachment; filename=recipe.txt`) || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("attachment: %q %v", b, resp.Header)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
	// Reading marked it \Seen.
	msgs, _ := e.mail.Store().Messages(context.Background(), "bob@hamburger.edu", "INBOX")
	if len(msgs) != 1 || !strings.Contains(strings.Join(msgs[0].Flags, " "), `\Seen`) {
		t.Errorf("after reading: %+v", msgs)
	}
}

func TestCSRFAndCookies(t *testing.T) {
	e := newEnv(t, nil)
	e.sendMail(t, "alice@crepes.fr", "bob@hamburger.edu", aliceMsg)
	c := newClient(t, e)
	// A login POST without the form's token is refused.
	if st, _ := c.post("/login", url.Values{"user": {"bob@hamburger.edu"}, "password": {"s3cret"}}); st != http.StatusForbidden {
		t.Errorf("login without token: %d", st)
	}
	c.login("bob@hamburger.edu", "s3cret")
	u, _ := url.Parse(e.url)
	var sess *http.Cookie
	for _, ck := range c.h.Jar.Cookies(u) {
		if ck.Name == "applayer_webmail" {
			sess = ck
		}
	}
	if sess == nil {
		t.Fatal("no session cookie")
	}
	// Cookie attributes come from the Set-Cookie header: check it raw.
	resp, _ := http.PostForm(e.url+"/login", url.Values{})
	resp.Body.Close()
	_, page := c.get("/box?name=INBOX")
	tok := csrfRe.FindStringSubmatch(page)[1]
	// Move without the token: 403, nothing moved.
	if st, _ := c.post("/move", url.Values{"box": {"INBOX"}, "uid": {"1"}, "dest": {"Junk"}}); st != http.StatusForbidden {
		t.Errorf("move without CSRF token: %d", st)
	}
	if st, _ := c.post("/move", url.Values{"csrf": {"forged"}, "box": {"INBOX"}, "uid": {"1"}, "dest": {"Junk"}}); st != http.StatusForbidden {
		t.Errorf("move with a forged token: %d", st)
	}
	if msgs, _ := e.mail.Store().Messages(context.Background(), "bob@hamburger.edu", "INBOX"); len(msgs) != 1 {
		t.Fatalf("INBOX has %d after refused moves", len(msgs))
	}
	if st, body := c.post("/move", url.Values{"csrf": {tok}, "box": {"INBOX"}, "uid": {"1"}, "dest": {"Junk"}}); st != 200 || !strings.Contains(body, "Message moved to Junk.") {
		t.Errorf("move: %d", st)
	}
	// Delete from Junk: to Trash; from Trash: gone.
	c.post("/move", url.Values{"csrf": {tok}, "box": {"Junk"}, "uid": {"1"}, "delete": {"1"}})
	c.post("/move", url.Values{"csrf": {tok}, "box": {"Trash"}, "uid": {"1"}, "delete": {"1"}})
	for box, n := range map[string]int{"INBOX": 0, "Junk": 0, "Trash": 0} {
		if msgs, _ := e.mail.Store().Messages(context.Background(), "bob@hamburger.edu", box); len(msgs) != n {
			t.Errorf("%s has %d, want %d", box, len(msgs), n)
		}
	}
	// Logout ends the session server-side.
	c.post("/logout", url.Values{"csrf": {tok}})
	if st, body := c.get("/box?name=INBOX"); st != 200 || !strings.Contains(body, `id="password"`) {
		t.Errorf("after logout: %d, want the login page", st)
	}
}

func TestSetCookieFlags(t *testing.T) {
	e := newEnv(t, nil)
	resp, err := http.Get(e.url + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	sc := resp.Header.Get("Set-Cookie")
	for _, want := range []string{"HttpOnly", "SameSite=Strict"} {
		if !strings.Contains(sc, want) {
			t.Errorf("Set-Cookie %q lacks %s", sc, want)
		}
	}
	if strings.Contains(sc, "Secure") {
		t.Errorf("Secure cookie over plain HTTP: %q", sc)
	}
}

func TestLoginRateLimit(t *testing.T) {
	e := newEnv(t, func(c *webmail.Config) { c.LoginFailures = 3 })
	c := newClient(t, e)
	for i := range 3 {
		if st, _ := c.login("bob@hamburger.edu", "wrong"); st != http.StatusUnauthorized {
			t.Errorf("failure %d: %d", i, st)
		}
	}
	if st, body := c.login("bob@hamburger.edu", "s3cret"); st != http.StatusTooManyRequests || !strings.Contains(body, "Too many failed logins") {
		t.Errorf("after 3 failures, the right password: %d, want 429", st)
	}
}

func TestPagingAndSearch(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	for i := range 30 {
		m := fmt.Sprintf("From: alice@crepes.fr\r\nSubject: note %02d\r\n\r\nbody %s\r\n", i, map[bool]string{true: "pancake", false: "waffle"}[i%10 == 0])
		if _, err := e.mail.Store().Append(ctx, "bob@hamburger.edu", "INBOX", []byte(m), nil, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	c := newClient(t, e)
	c.login("bob@hamburger.edu", "s3cret")
	_, p1 := c.get("/box?name=INBOX")
	if !strings.Contains(p1, "note 29") || strings.Contains(p1, "note 04") || !strings.Contains(p1, "page 1 of 2") || !strings.Contains(p1, `rel="next"`) {
		t.Errorf("page 1 wrong")
	}
	_, p2 := c.get("/box?name=INBOX&page=1")
	if !strings.Contains(p2, "note 04") || !strings.Contains(p2, "note 00") || strings.Contains(p2, "note 05") {
		t.Errorf("page 2 wrong")
	}
	_, s := c.get("/box?name=INBOX&q=pancake")
	if strings.Count(s, "<tr class=") != 3 || !strings.Contains(s, "note 20") {
		t.Errorf("search: want notes 00, 10, 20:\n%s", s)
	}
}

func smtpdConfig() smtpd.Config {
	return smtpd.Config{Addr: "127.0.0.1:0", Domains: []string{"hamburger.edu", "crepes.fr"}}
}
