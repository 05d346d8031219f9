package app

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/lab"
)

// bobReads is the end of the chapter's figure in the lab: with Alice's
// message in his INBOX, Bob reads it by IMAP (993), by POP3 (995) and in
// the web mail (80) of mail.hamburger.edu, each on the trace bus.
func bobReads(t *testing.T, plan *lab.Plan, events func() []trace.Event) {
	t.Helper()
	host, _ := plan.Lookup("mail.hamburger.edu")
	pem, err := os.ReadFile(filepath.Join(plan.StateDir, "mail", "ca", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tc := &tls.Config{RootCAs: pool, ServerName: "mail.hamburger.edu"}
	at := func(p int) string { return fmt.Sprintf("%s:%d", host.Addr, plan.Port(p)) }

	// IMAP over TLS.
	c, err := imapclient.DialTLS(at(993), &imapclient.Options{TLSConfig: tc})
	if err != nil {
		t.Fatalf("imap: %v", err)
	}
	defer c.Close()
	if err := c.Login("bob@hamburger.edu", "bob-pw").Wait(); err != nil {
		t.Fatalf("imap login: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true, BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].Envelope.Subject != "Hello from Paris" || !strings.Contains(string(msgs[0].BodySection[0].Bytes), "Bonjour Bob!") {
		t.Fatalf("imap fetch: %v %+v", err, msgs)
	}
	c.Logout().Wait()

	// POP3 over TLS.
	pc, err := tls.Dial("tcp", at(995), tc)
	if err != nil {
		t.Fatalf("pop3: %v", err)
	}
	defer pc.Close()
	pc.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(pc)
	fmt.Fprintf(pc, "USER bob@hamburger.edu\r\nPASS bob-pw\r\nRETR 1\r\nQUIT\r\n")
	all, _ := io.ReadAll(r)
	if !strings.Contains(string(all), "Bonjour Bob!") || !strings.Contains(string(all), "+OK bye") {
		t.Fatalf("pop3 session:\n%s", all)
	}

	// The web mail.
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	base := "http://" + at(80)
	get := func(path string) string {
		resp, err := hc.Get(base + path)
		if err != nil {
			t.Fatalf("webmail %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	tok := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(get("/login"))
	if tok == nil {
		t.Fatal("webmail: no login form")
	}
	resp, err := hc.PostForm(base+"/login", url.Values{"csrf": {tok[1]}, "user": {"bob@hamburger.edu"}, "password": {"bob-pw"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "Hello from Paris") {
		t.Fatalf("webmail inbox: %d\n%s", resp.StatusCode, b)
	}
	if page := get("/msg?box=INBOX&uid=1"); !strings.Contains(page, "Bonjour Bob!") {
		t.Fatalf("webmail message:\n%s", page)
	}

	for _, step := range []struct{ proto, has string }{
		{"imap", "LOGIN bob@hamburger.edu: OK"},
		{"imap", "FETCH INBOX UID 1 BODY[]"},
		{"pop3", "RETR 1 (bob@hamburger.edu UID 1)"},
		{"http/webmail", `GET /msg INBOX UID 1 for bob@hamburger.edu: "Hello from Paris"`},
	} {
		found := false
		for _, e := range events() {
			if e.Host == "mail.hamburger.edu" && e.Proto == step.proto && strings.Contains(e.Summary, step.has) {
				found = true
			}
		}
		if !found {
			t.Errorf("trace lacks %s %q on mail.hamburger.edu", step.proto, step.has)
		}
	}
}
