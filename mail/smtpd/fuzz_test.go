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
		c, err := net.Dial("tcp", e.addr)
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
				break
			}
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("server did not end the session")
				}
				break
			}
			if !replyLine.MatchString(line) {
				t.Fatalf("malformed reply %q", line)
			}
		}
		for _, u := range []string{"bob@hamburger.edu", "carol@hamburger.edu"} {
			for _, m := range e.inbox(t, u) {
				if i := CheckLineEndings([]byte(m)); i >= 0 {
					t.Fatalf("stored message with a bare CR/LF at %d: %q", i, m)
				}
			}
		}
	})
}
