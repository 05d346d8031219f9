package smtpd

import (
	"bufio"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

func FuzzSplitAddress(f *testing.F) {
	for _, s := range []string{"bob@hamburger.edu", "a@[127.0.0.1]", "a@[ipv6:::1]", "\"x@y\"@z.org", "bøb@x.org", "@", "a@b@c", "a@.", "a@x..y", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, a string) {
		local, domain, err := SplitAddress(a)
		if err != nil {
			return
		}
		if local == "" || domain == "" || strings.ContainsAny(local+domain, " \r\n<>") || domain != strings.ToLower(domain) {
			t.Fatalf("SplitAddress(%q) = %q, %q", a, local, domain)
		}
		// Idempotent: the canonical form splits to itself.
		l2, d2, err := SplitAddress(local + "@" + domain)
		if err != nil || l2 != local || d2 != domain {
			t.Fatalf("SplitAddress(%q@%q) = %q, %q, %v", local, domain, l2, d2, err)
		}
	})
}

var replyLine = regexp.MustCompile(`^[2-5][0-9][0-9][ -]`)

// FuzzSession sends arbitrary bytes as a client's whole side of a session:
// every reply must be a well-formed SMTP reply line, and whatever the
// server accepted and stored must have CRLF line endings only.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"EHLO c\r\nMAIL FROM:<a@crepes.fr>\r\nRCPT TO:<bob@hamburger.edu>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
		"EHLO c\r\nMAIL FROM:<a@crepes.fr>\r\nRCPT TO:<bob@hamburger.edu>\r\nDATA\r\nhi\n.\nMAIL FROM:<x@y.z>\r\n.\r\n",
		"EHLO c\r\nMAIL FROM:<a@crepes.fr>\r\nRCPT TO:<bob@hamburger.edu>\r\nDATA\r\nhi\r\n.\rRCPT TO:<carol@hamburger.edu>\r\n.\r\n",
		"EHLO c\r\nMAIL FROM:<a@crepes.fr>\r\nRCPT TO:<bob@hamburger.edu>\r\nBDAT 4 LAST\r\nhi\r\n",
		"EHLO c\r\nMAIL FROM:<a@crepes.fr>\r\nRCPT TO:<bob@hamburger.edu>\r\nBDAT 99999999999 LAST\r\nhi\r\n",
		"HELO c\nMAIL FROM:<a@crepes.fr> SIZE=1\nRCPT TO:<x@elsewhere.org>\n",
		"EHLO c\r\nSTARTTLS\r\n\x16\x03\x01\x00\x05hello",
		"EHLO c\r\nAUTH PLAIN AGJvYgBwdw==\r\n",
		"EHLO " + strings.Repeat("x", 3000) + "\r\n",
		"\x00\xff\r\n\r\n",
		"EHLO c\r\nMAIL FROM:<ålice@crepes.fr> SMTPUTF8 BODY=8BITMIME\r\nRCPT TO:<bob@hamburger.edu>\r\nDATA\r\nSubject: é\r\n\r\nü\r\n.\r\n",
	} {
		f.Add([]byte(s))
	}
	// One server for every input: the property checked (nothing stored
	// with a bare CR or LF) holds for the whole store.
	e := start(f, Config{ReadTimeout: time.Second, MaxMessageBytes: 4096, MaxConnsPerIP: 1000}, nil)
	f.Fuzz(func(t *testing.T, in []byte) {
		playSession(t, e.addr, in)
		for _, u := range []string{"bob@hamburger.edu", "carol@hamburger.edu"} {
			for _, m := range e.inbox(t, u) {
				if i := CheckLineEndings([]byte(m)); i >= 0 {
					t.Fatalf("stored message with a bare CR/LF at %d: %q", i, m)
				}
			}
		}
	})
}

// playSession plays in as the client's side of a session and checks that
// every reply is a well-formed reply line and that the server ends it.
func playSession(t *testing.T, addr string, in []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	go func() {
		c.Write(in)
		c.(*net.TCPConn).CloseWrite()
	}()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF && line == "" {
			return
		}
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("server did not end the session")
			}
			return
		}
		if !replyLine.MatchString(line) {
			t.Fatalf("malformed reply %q", line)
		}
	}
}

// FuzzSubmissionSession is FuzzSession on a submission server (AUTH
// allowed in plain text from loopback, so the fuzzer reaches it): replies
// well formed, and nothing is accepted without authentication: every
// stored message but the bounces was received with ESMTPA (RFC 3848) and
// is From its authenticated sender.
func FuzzSubmissionSession(f *testing.F) {
	bob := "AUTH PLAIN " + plain("bob@hamburger.edu", "pw") + "\r\n"
	for _, s := range []string{
		"EHLO c\r\n" + bob + "MAIL FROM:<bob@hamburger.edu>\r\nRCPT TO:<carol@hamburger.edu>\r\nDATA\r\nFrom: bob@hamburger.edu\r\n\r\nhi\r\n.\r\nQUIT\r\n",
		"EHLO c\r\nAUTH LOGIN\r\nYm9iQGhhbWJ1cmdlci5lZHU=\r\ncHc=\r\nMAIL FROM:<bob@hamburger.edu>\r\nRCPT TO:<x@elsewhere.org>\r\nDATA\r\nFrom: carol@hamburger.edu\r\n\r\nx\r\n.\r\n",
		"EHLO c\r\nMAIL FROM:<bob@hamburger.edu>\r\nRCPT TO:<carol@hamburger.edu>\r\nDATA\r\nFrom: bob@hamburger.edu\r\n\r\nx\r\n.\r\n",
		"EHLO c\r\nAUTH PLAIN =\r\nAUTH PLAIN *\r\nAUTH LOGIN\r\n*\r\n",
		"EHLO c\r\n" + bob + bob + "RSET\r\nMAIL FROM:<carol@hamburger.edu>\r\n",
		"EHLO c\r\n" + bob + "MAIL FROM:<bob@hamburger.edu>\r\nRCPT TO:<carol@hamburger.edu>\r\nBDAT 30 LAST\r\nFrom: bob@hamburger.edu\r\n\r\nx\r\n",
	} {
		f.Add([]byte(s))
	}
	e := start(f, Config{Submission: true, InsecureAuthLoopback: true, ReadTimeout: time.Second, MaxMessageBytes: 4096, MaxConnsPerIP: 1000}, nil)
	from := regexp.MustCompile(`(?mi)^From: *<?([^>\r]*)>?\r$`)
	authed := regexp.MustCompile(` with (ESMTP|UTF8SMTP)S?A id `)
	f.Fuzz(func(t *testing.T, in []byte) {
		playSession(t, e.addr, in)
		for _, u := range []string{"bob@hamburger.edu", "carol@hamburger.edu"} {
			for _, m := range e.inbox(t, u) {
				if strings.Contains(m, "MAILER-DAEMON@") {
					continue // a bounce of a relayed message
				}
				f := from.FindStringSubmatch(m)
				if !authed.MatchString(m) || f == nil || (f[1] != "bob@hamburger.edu" && f[1] != "carol@hamburger.edu") {
					t.Fatalf("stored without authentication or from someone else: %q", m)
				}
			}
		}
	})
}
