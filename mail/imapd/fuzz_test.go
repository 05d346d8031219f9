package imapd

import (
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// FuzzSession feeds untrusted client input, after a login and a SELECT of
// a mailbox with messages, through go-imap's server and our session: no
// panic (imap_panics_total stays 0), every command answered or the
// connection closed within the deadline, and the server still serves a
// new session afterwards.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"a FETCH 1:* (FLAGS BODY[] BODYSTRUCTURE ENVELOPE)\r\n",
		"a UID FETCH 1:* BODY.PEEK[1.2.MIME]<0.10>\r\n",
		"a STORE 1 +FLAGS (\\Deleted)\r\nb EXPUNGE\r\n",
		"a SEARCH OR (TEXT x) NOT (LARGER 5) SINCE 1-Jan-2020\r\n",
		"a COPY 1:* Trash\r\nb MOVE * Junk\r\n",
		"a APPEND INBOX {3+}\r\nabc\r\n",
		"a CREATE a/b/c\r\nb RENAME a z\r\nc DELETE z/b\r\n",
		"a LIST \"\" * RETURN (STATUS (MESSAGES UNSEEN SIZE) SPECIAL-USE)\r\n",
		"a IDLE\r\nDONE\r\n",
		"a FETCH 0:4294967295 BINARY[3]\r\n",
		"a UID SEARCH RETURN (SAVE) ALL\r\nb FETCH $ FLAGS\r\n",
		"\x00\xff{99}\r\n",
		"a ID (\"name\" \"fuzz\")\r\nb ID NIL\r\n",
		"a APPEND INBOX {99999999+}\r\nb NOOP\r\n",
		"a LOGIN {5000}\r\n\r\n",
		"a STARTTLS\r\n",
	} {
		f.Add([]byte(s))
	}
	e := newEnv(f, nil)
	f.Fuzz(func(t *testing.T, in []byte) {
		runFuzz(t, e, in)
	})
}

func runFuzz(t *testing.T, e *env, in []byte) {
	c, err := net.DialTimeout("tcp", e.plain, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	pre := "p1 LOGIN bob@hamburger.edu s3cret\r\np2 APPEND INBOX {" + itoa(len(msgAlice)) + "+}\r\n" + msgAlice + "\r\np3 SELECT INBOX\r\n"
	go func() {
		c.Write([]byte(pre))
		c.Write(in)
		c.Write([]byte("\r\nzz LOGOUT\r\n"))
	}()
	out, _ := io.ReadAll(c) // until the server closes (LOGOUT, or it gave up)
	if !strings.HasPrefix(string(out), "* OK") {
		t.Fatalf("no greeting: %q", out)
	}
	if n := testutil.ToFloat64(e.srv.m.panics); n != 0 {
		t.Fatalf("%v panics serving %q", n, in)
	}
	// The server still serves.
	d, err := net.DialTimeout("tcp", e.plain, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(d, buf); err != nil || string(buf) != "* OK" {
		t.Fatalf("server gone after %q: %q %v", in, buf, err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
