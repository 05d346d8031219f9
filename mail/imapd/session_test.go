package imapd

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/mail/mailtest"
)

const msgAlice = "From: Alice <alice@crepes.fr>\r\nTo: Bob <bob@hamburger.edu>\r\nSubject: Crepes tonight\r\nDate: Thu, 03 Dec 2026 12:00:00 +0000\r\nMessage-ID: <1@crepes.fr>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBring the batter.\r\n--XX\r\nContent-Type: application/octet-stream; name=recipe.bin\r\nContent-Disposition: attachment; filename=recipe.bin\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--XX--\r\n"

func TestAuthNeedsTLS(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.InsecureAuthLoopback = false })
	c := dial(t, e.plain)
	caps := c.must("CAPABILITY")
	contains(t, "plain capabilities", caps, "STARTTLS", "LOGINDISABLED")
	if _, st := c.cmd("LOGIN bob@hamburger.edu s3cret"); !strings.HasPrefix(st, "NO") && !strings.HasPrefix(st, "BAD") {
		t.Errorf("LOGIN without TLS: %s, want refused", st)
	}
	c.startTLS(e.ca)
	contains(t, "TLS capabilities", c.must("CAPABILITY"), "AUTH=PLAIN")
	if _, st := c.cmd("LOGIN bob@hamburger.edu wrong"); !strings.HasPrefix(st, "NO [AUTHENTICATIONFAILED]") {
		t.Errorf("wrong password: %s", st)
	}
	c.must("LOGIN bob@hamburger.edu s3cret")

	// 993: implicit TLS, AUTHENTICATE PLAIN with an initial response.
	tc := dialTLS(t, e)
	if caps := joined(tc.must("CAPABILITY")); !strings.Contains(caps, "AUTH=PLAIN") || strings.Contains(caps, "STARTTLS") || strings.Contains(caps, "LOGINDISABLED") {
		t.Errorf("993 capabilities: %s", caps)
	}
	tc.must("AUTHENTICATE PLAIN AGJvYkBoYW1idXJnZXIuZWR1AHMzY3JldA==") // \0bob@hamburger.edu\0s3cret
	contains(t, "after auth", tc.must("CAPABILITY"), "IMAP4rev2", "MOVE", "UIDPLUS", "SPECIAL-USE", "LIST-STATUS", "IDLE", "NAMESPACE", "ESEARCH", "APPENDLIMIT=")
}

func TestMailboxCommands(t *testing.T) {
	e := newEnv(t, nil)
	c := dial(t, e.plain)
	c.must("LOGIN bob@hamburger.edu s3cret")
	contains(t, "LIST special-use", c.must(`LIST "" "*" RETURN (SPECIAL-USE)`), `"Sent"`, `\Sent`, `\Trash`, `\Drafts`, `\Junk`, `INBOX`)
	only := c.must(`LIST (SPECIAL-USE) "" "*"`)
	if strings.Contains(joined(only), "INBOX") || len(only) != 4 {
		t.Errorf("LIST (SPECIAL-USE): %q", only)
	}
	c.must("CREATE Lists/go") // creates Lists too
	c.must("CREATE Archive (USE (\\Archive))")
	contains(t, "created", c.must(`LIST "" "*"`), `"Lists/go"`, `\Archive`)
	c.must("RENAME Lists Groups")
	contains(t, "renamed", c.must(`LIST "" "Groups*"`), `"Groups/go"`)
	if _, st := c.cmd("DELETE INBOX"); !strings.HasPrefix(st, "NO") {
		t.Errorf("DELETE INBOX: %s", st)
	}
	if _, st := c.cmd("CREATE Sent"); !strings.HasPrefix(st, "NO [ALREADYEXISTS]") {
		t.Errorf("CREATE Sent: %s", st)
	}
	c.must("SUBSCRIBE Groups/go")
	c.must("UNSUBSCRIBE Junk")
	lsub := joined(c.must(`LSUB "" "*"`))
	if !strings.Contains(lsub, "Groups/go") || strings.Contains(lsub, "Junk") {
		t.Errorf("LSUB: %s", lsub)
	}
	c.must("DELETE Groups/go")
	if st := c.appendMsg("INBOX", `\Seen`, msgAlice); !strings.HasPrefix(st, "OK [APPENDUID ") {
		t.Errorf("APPEND: %s", st)
	}
	if st := c.appendMsg("Nope", "", msgAlice); !strings.HasPrefix(st, "NO [TRYCREATE]") {
		t.Errorf("APPEND to missing: %s", st)
	}
	contains(t, "STATUS", c.must("STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN SIZE)"), "MESSAGES 1", "UIDNEXT 2", "UNSEEN 0", fmt.Sprintf("SIZE %d", len(msgAlice)))
	contains(t, "LIST-STATUS", c.must(`LIST "" "INBOX" RETURN (STATUS (MESSAGES))`), `STATUS INBOX (MESSAGES 1)`)
	contains(t, "NAMESPACE", c.must("NAMESPACE"), `NAMESPACE (("" "/")) NIL NIL`)
}

func TestFetchStoreSearch(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	date := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	size := len(msgAlice) - len("tonight") + 1
	for i := range 3 {
		m := strings.Replace(msgAlice, "Crepes tonight", fmt.Sprintf("Crepes %d", i), 1)
		if _, err := e.st.Append(ctx, "bob@hamburger.edu", "INBOX", []byte(m), nil, date.AddDate(0, 0, i)); err != nil {
			t.Fatal(err)
		}
	}
	c := dial(t, e.plain)
	c.must("LOGIN bob@hamburger.edu s3cret")
	contains(t, "SELECT", c.must("SELECT INBOX"), "* 3 EXISTS", "UIDVALIDITY", "UIDNEXT 4", "PERMANENTFLAGS")
	contains(t, "FETCH meta", c.must("FETCH 1 (FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)"),
		fmt.Sprintf("RFC822.SIZE %d", size), `"Crepes 0"`, `" 1-Dec-2026 10:00:00 +0000"`, `(("Alice" NIL "alice" "crepes.fr"))`)
	contains(t, "BODYSTRUCTURE", c.must("FETCH 1 BODYSTRUCTURE"), `("text" "plain" ("charset" "utf-8")`, `"application" "octet-stream"`, `"mixed"`)
	// PEEK leaves \Seen alone, BODY[] sets it.
	peek := c.must("FETCH 1 (BODY.PEEK[])")
	contains(t, "BODY.PEEK[]", peek, "Bring the batter.")
	if strings.Contains(joined(peek), `\Seen`) {
		t.Errorf("PEEK set \\Seen: %q", peek)
	}
	contains(t, "BODY[]", c.must("FETCH 1 BODY[]"), `\Seen`)
	contains(t, "section 1", c.must("FETCH 2 BODY.PEEK[1]"), "BODY[1] {17}", "Bring the batter.")
	contains(t, "section 2 MIME", c.must("FETCH 2 BODY.PEEK[2.MIME]"), "Content-Disposition: attachment")
	contains(t, "header fields", c.must("FETCH 2 BODY.PEEK[HEADER.FIELDS (SUBJECT)]"), "Subject: Crepes 1")
	contains(t, "partial", c.must("FETCH 2 BODY.PEEK[]<6.5>"), "BODY[]<6> {5}Alice")
	contains(t, "binary", c.must("FETCH 2 BINARY.PEEK[2]"), "BINARY[2] ~{4}\x00\x01\x02\x03")

	contains(t, "STORE", c.must(`STORE 2 +FLAGS (\Flagged $Important)`), `FLAGS ($Important \Flagged)`)
	if lines := c.must(`STORE 2 -FLAGS.SILENT (\Flagged)`); len(lines) != 0 {
		t.Errorf("STORE .SILENT answered %q", lines)
	}
	contains(t, "UID STORE", c.must(`UID STORE 3 FLAGS (\Answered)`), `UID 3 FLAGS (\Answered)`)

	for _, tc := range []struct{ q, want string }{
		{"SEARCH SEEN", "* SEARCH 1"},
		{"SEARCH UNSEEN", "* SEARCH 2 3"},
		{`SEARCH SUBJECT "crepes 1"`, "* SEARCH 2"},
		{`SEARCH FROM alice`, "* SEARCH 1 2 3"},
		{`SEARCH TEXT "BATTER"`, "* SEARCH 1 2 3"},
		{`SEARCH BODY "batter" NOT SUBJECT "2"`, "* SEARCH 1 2"},
		{"SEARCH KEYWORD $Important", "* SEARCH 2"},
		{"SEARCH SINCE 2-Dec-2026", "* SEARCH 2 3"},
		{"SEARCH BEFORE 2-Dec-2026", "* SEARCH 1"},
		{"SEARCH SENTON 3-Dec-2026", "* SEARCH 1 2 3"},
		{fmt.Sprintf("SEARCH LARGER %d", size-1), "* SEARCH 1 2 3"},
		{"SEARCH OR ANSWERED SEEN", "* SEARCH 1 3"},
		{"UID SEARCH 2:*", "* SEARCH 2 3"},
		{"SEARCH RETURN (COUNT MIN) ALL", "* ESEARCH (TAG"},
		{"SEARCH HEADER Message-ID <1@crepes.fr>", "* SEARCH 1 2 3"},
	} {
		contains(t, tc.q, c.must("%s", tc.q), tc.want)
	}

	if l := c.must("SEARCH SMALLER %d", size); len(l) != 1 || l[0] != "* SEARCH" {
		t.Errorf("SEARCH SMALLER: %q, want none", l)
	}
	// COPY, MOVE, EXPUNGE, UID EXPUNGE.
	contains(t, "COPY", []string{c.must1("COPY 1:2 Trash")}, "[COPYUID ")
	contains(t, "MOVE", c.must("MOVE 1 Junk"), "[COPYUID ", "* 1 EXPUNGE")
	c.must(`STORE 1:2 +FLAGS (\Deleted)`)
	contains(t, "UID EXPUNGE", c.must("UID EXPUNGE 3"), "* 2 EXPUNGE")
	contains(t, "EXPUNGE", c.must("EXPUNGE"), "* 1 EXPUNGE")
	contains(t, "after", c.must("STATUS Trash (MESSAGES)"), "MESSAGES 2")
	contains(t, "after", c.must("STATUS Junk (MESSAGES)"), "MESSAGES 1")
	if st := c.must("SELECT INBOX"); !strings.Contains(joined(st), "* 0 EXISTS") {
		t.Errorf("INBOX after expunges: %q", st)
	}
	// EXAMINE is read-only.
	c.must("EXAMINE Trash")
	if _, st := c.cmd(`STORE 1 +FLAGS (\Deleted)`); !strings.HasPrefix(st, "NO") {
		t.Errorf("STORE in EXAMINE: %s", st)
	}
}

// must1 returns the tagged line of a command that must succeed.
func (c *client) must1(format string, args ...any) string {
	c.t.Helper()
	lines, st := c.cmd(format, args...)
	if !strings.HasPrefix(st, "OK") {
		c.t.Fatalf("%s: %s (%q)", fmt.Sprintf(format, args...), st, lines)
	}
	return st
}

func TestQuotaOnAppend(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.st.SetQuota(context.Background(), "bob@hamburger.edu", int64(len(msgAlice))+10); err != nil {
		t.Fatal(err)
	}
	c := dial(t, e.plain)
	c.must("LOGIN bob@hamburger.edu s3cret")
	if st := c.appendMsg("INBOX", "", msgAlice); !strings.HasPrefix(st, "OK") {
		t.Fatalf("first APPEND: %s", st)
	}
	if st := c.appendMsg("INBOX", "", msgAlice); !strings.HasPrefix(st, "NO [OVERQUOTA]") {
		t.Errorf("APPEND over quota: %s", st)
	}
	c.must("NOOP")
}

// Two sessions on one mailbox: an EXPUNGE and flags in one reach the other.
func TestConcurrentSessions(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	for range 3 {
		e.st.Append(ctx, "bob@hamburger.edu", "INBOX", []byte(msgAlice), nil, time.Now())
	}
	a, b := dial(t, e.plain), dial(t, e.plain)
	for _, c := range []*client{a, b} {
		c.must("LOGIN bob@hamburger.edu s3cret")
		c.must("SELECT INBOX")
	}
	a.must(`STORE 2 +FLAGS.SILENT (\Deleted)`)
	contains(t, "B sees the flag", b.must("NOOP"), `* 2 FETCH (UID 2 FLAGS (\Deleted))`)
	a.must("EXPUNGE")
	// FETCH must not announce the expunge (RFC 3501 7.4.1); NOOP does.
	if f := b.must("FETCH 1:* (UID)"); strings.Contains(joined(f), "EXPUNGE") {
		t.Errorf("EXPUNGE during FETCH: %q", f)
	}
	contains(t, "B sees the expunge", b.must("NOOP"), "* 2 EXPUNGE")
	contains(t, "B's view", b.must("FETCH 1:* (UID)"), "* 1 FETCH (UID 1)", "* 2 FETCH (UID 3)")
	a.appendMsg("INBOX", "", msgAlice)
	contains(t, "B sees the new one", b.must("NOOP"), "* 3 EXISTS")
}

// IDLE: a delivery through the hub-wrapped store (as the queue does) is
// pushed to the idling client within a second.
func TestIdleNotifiedOnDelivery(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Rescan = time.Hour })
	c := dial(t, e.plain)
	c.must("LOGIN bob@hamburger.edu s3cret")
	c.must("SELECT INBOX")
	fmt.Fprintf(c.c, "i1 IDLE\r\n")
	if l := c.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE: %q", l)
	}
	start := time.Now()
	if _, err := e.st.Append(context.Background(), "bob@hamburger.edu", "INBOX", []byte(msgAlice), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	c.c.SetReadDeadline(time.Now().Add(time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil || !strings.HasPrefix(l, "* 1 EXISTS") {
		t.Fatalf("pushed %q, %v; want * 1 EXISTS within 1s", l, err)
	}
	t.Logf("EXISTS pushed %v after delivery", time.Since(start))
	fmt.Fprintf(c.c, "DONE\r\n")
	if l := c.line(); !strings.HasPrefix(l, "i1 OK") {
		t.Errorf("after DONE: %q", l)
	}
}

// Bad input gets BAD (or NO) and the session goes on.
func TestBadInputSessionSurvives(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxMessageBytes = 1000 })
	c := dial(t, e.plain)
	c.must("LOGIN bob@hamburger.edu s3cret")
	for _, tc := range []struct{ cmd, want string }{
		{"FROBNICATE", "BAD"},
		{"FETCH 1 (FLAGS)", "BAD"}, // not selected
		{"SELECT", "BAD"},
		{"LIST (((", "BAD"},
		{"STATUS INBOX (BOGUS)", "BAD"},
		{"APPEND INBOX {5000}", "NO"}, // over APPENDLIMIT
		{"SEARCH CHARSET KOI8-R TEXT x", "NO"},
		{"UID FETCH 1:* BODY[", "BAD"},
	} {
		_, st := c.cmd("%s", tc.cmd)
		if !strings.HasPrefix(st, tc.want) {
			t.Errorf("%s: %s, want %s", tc.cmd, st, tc.want)
		}
		c.must("NOOP")
	}
	// An overlong command line (beyond go-imap's 50 KiB, where its
	// decoder gives up) is refused by the guard; the session goes on.
	if _, st := c.cmd("NOOP %s", strings.Repeat("x", 100_000)); !strings.HasPrefix(st, "BAD [TOOBIG]") {
		t.Errorf("overlong line: %s, want BAD [TOOBIG]", st)
	}
	c.must("NOOP")
}

// A FETCH of many messages (written corked, see conn.Write) arrives
// whole and in order over plain TCP and implicit TLS, and its envelopes
// (stored at delivery) read as go-imap's parse of the header would:
// from the store and then the envelope cache (plain, then TLS), and with
// the cache off (more than one batch each way).
func TestFetchMany(t *testing.T) {
	for name, cache := range map[string]int64{"cache": 0, "no cache": -1} {
		t.Run(name, func(t *testing.T) { testFetchMany(t, cache) })
	}
}

func testFetchMany(t *testing.T, cacheBytes int64) {
	e := newEnv(t, func(c *Config) { c.EnvelopeCacheBytes = cacheBytes })
	ctx := context.Background()
	const n = 300
	for i := range n {
		if _, err := e.st.Append(ctx, "bob@hamburger.edu", "INBOX", mailtest.BenchMessage(i, 0), nil, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	for name, c := range map[string]*client{"plain": dial(t, e.plain), "tls": dialTLS(t, e)} {
		c.must("LOGIN bob@hamburger.edu s3cret")
		c.must("EXAMINE INBOX")
		full := c.must("FETCH 1:* BODY.PEEK[]")
		env := c.must("UID FETCH 1:* (UID ENVELOPE)")
		if len(full) != n || len(env) != n {
			t.Fatalf("%s: %d and %d FETCH responses, want %d", name, len(full), len(env), n)
		}
		for i := range n {
			body := string(mailtest.BenchMessage(i, 0))
			if want := fmt.Sprintf("* %d FETCH (UID %d BODY[] {%d}%s)", i+1, i+1, len(body), body); full[i] != want {
				t.Fatalf("%s: response %d:\n%q\nwant\n%q", name, i+1, full[i], want)
			}
			want := fmt.Sprintf(`* %d FETCH (UID %d ENVELOPE ("Thu, 03 Dec 2026 12:%02d:%02d +0000" "Benchmark message %d" (("Alice" NIL "alice" "crepes.fr"))`, i+1, i+1, (i/60)%60, i%60, i)
			if !strings.HasPrefix(env[i], want) || !strings.HasSuffix(env[i], fmt.Sprintf(`NIL "<%d.bench@crepes.fr>"))`, i)) {
				t.Fatalf("%s: envelope %d: %s", name, i+1, env[i])
			}
		}
	}
}
