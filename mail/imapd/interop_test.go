package imapd

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/web/labca"
)

// curl reads the mailbox over imap:// (LOGIN on loopback) and imaps://.
func TestCurlInterop(t *testing.T) {
	curl := testkit.Peer(t, "curl")
	e := newEnv(t, nil)
	ctx := context.Background()
	if _, err := e.st.Append(ctx, "bob@hamburger.edu", "INBOX", []byte(msgAlice), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, caPEM(t, e), 0o600)
	_, tlsPort, _ := strings.Cut(e.tl, ":")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"imap search", []string{"imap://" + e.plain + "/INBOX", "-X", "SEARCH SUBJECT crepes"}, "* SEARCH 1"},
		{"imap fetch", []string{"imap://" + e.plain + "/INBOX;UID=1"}, "Bring the batter."},
		{"imap list", []string{"imap://" + e.plain + "/"}, `"Sent"`},
		{"imap id", []string{"imap://" + e.plain + "/", "-X", `ID ("name" "curl")`}, `* ID ("name" "applayer"`},
		{"imaps fetch section", []string{"--cacert", caFile, "--resolve", "imap.hamburger.edu:" + tlsPort + ":127.0.0.1", "imaps://imap.hamburger.edu:" + tlsPort + "/INBOX;UID=1;SECTION=1"}, "Bring the batter."},
		{"imap starttls", []string{"--ssl-reqd", "--cacert", caFile, "--resolve", "imap.hamburger.edu:" + strings.Split(e.plain, ":")[1] + ":127.0.0.1", "imap://imap.hamburger.edu:" + strings.Split(e.plain, ":")[1] + "/INBOX", "-X", "STATUS INBOX (MESSAGES)"}, "MESSAGES 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(curl, append([]string{"-sS", "--max-time", "20", "-u", "bob@hamburger.edu:s3cret"}, tc.args...)...).CombinedOutput()
			if err != nil || !strings.Contains(string(out), tc.want) {
				t.Errorf("curl %v: %v\n%s\nwant %q", tc.args, err, out, tc.want)
			}
		})
	}
}

func caPEM(t *testing.T, e *env) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.caDir, labca.CertFileName))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// python3's imaplib over IMAP4_SSL: list, append, select, fetch, store,
// search, copy, expunge, as a script of assertions.
func TestPythonImaplib(t *testing.T) {
	py := testkit.Peer(t, "python3")
	e := newEnv(t, nil)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, caPEM(t, e), 0o600)
	_, port, _ := strings.Cut(e.tl, ":")
	script := `
import imaplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.check_hostname = False
M = imaplib.IMAP4_SSL("127.0.0.1", int(sys.argv[1]), ssl_context=ctx)
M.login("bob@hamburger.edu", "s3cret")
typ, boxes = M.list()
assert typ == "OK" and any(b'"Sent"' in b or b' Sent' in b for b in boxes), boxes
assert "ID" in M.capabilities, M.capabilities
typ, data = M.xatom("ID", '("name" "imaplib")')
assert typ == "OK", data
typ, data = M.response("ID")
assert data == [b'("name" "applayer" "vendor" "applayer")'], data
# An overlong command is refused (BAD) and the session goes on.
try:
    M.xatom("NOOP", "x" * 40000)
    raise SystemExit("overlong NOOP accepted")
except M.error as err:
    assert "TOOBIG" in str(err), err
assert M.noop()[0] == "OK"
msg = b"From: alice@crepes.fr\r\nSubject: py test\r\n\r\nhello from python\r\n"
typ, data = M.append("INBOX", r"(\Flagged)", imaplib.Time2Internaldate(1700000000), msg)
assert typ == "OK" and b"APPENDUID" in data[0], data
typ, data = M.select("INBOX")
assert typ == "OK" and data[0] == b"1", data
typ, data = M.fetch("1", "(FLAGS RFC822)")
assert typ == "OK" and data[0][1] == msg and b"\\Flagged" in data[0][0] and b"\\Seen" in data[0][0], data
typ, data = M.search(None, "FLAGGED", 'SUBJECT "py test"')
assert data == [b"1"], data
typ, data = M.uid("STORE", "1", "+FLAGS", r"(\Deleted)")
assert typ == "OK", data
typ, data = M.copy("1", "Trash")
assert typ == "OK", data
typ, data = M.expunge()
assert data == [b"1"], data
typ, data = M.status("Trash", "(MESSAGES)")
assert b"MESSAGES 1" in data[0], data
M.logout()
print("imaplib ok")
`
	out, err := exec.Command(py, "-c", script, port, caFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "imaplib ok") {
		t.Fatalf("imaplib: %v\n%s", err, out)
	}
}

// mbsync (isync): a full two-way sync of INBOX with flags, both ways.
func TestMbsyncTwoWay(t *testing.T) {
	mbsync := testkit.Peer(t, "mbsync")
	e := newEnv(t, nil)
	ctx := context.Background()
	const u = "bob@hamburger.edu"
	for i := range 3 {
		m := strings.Replace(msgAlice, "Crepes tonight", fmt.Sprintf("Server %d", i), 1)
		if _, err := e.st.Append(ctx, u, "INBOX", []byte(m), nil, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, caPEM(t, e), 0o600)
	_, port, _ := strings.Cut(e.tl, ":") // Host localhost: the name mbsync checks
	maildir := filepath.Join(dir, "mail")
	os.MkdirAll(maildir, 0o700)
	conf := fmt.Sprintf(`IMAPAccount bob
Host localhost
Port %s
User %s
Pass s3cret
SSLType IMAPS
CertificateFile %s
AuthMechs LOGIN PLAIN

IMAPStore remote
Account bob

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel bob
Far :remote:
Near :local:
Patterns INBOX
Create Both
Expunge Both
SyncState *
Sync All
`, port, u, caFile, maildir, maildir)
	confFile := filepath.Join(dir, "mbsyncrc")
	os.WriteFile(confFile, []byte(conf), 0o600)
	run := func() {
		t.Helper()
		cmd := exec.Command(mbsync, "-c", confFile, "-a")
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("mbsync: %v\n%s", err, out)
		}
	}
	run()
	cur, _ := filepath.Glob(filepath.Join(maildir, "INBOX", "cur", "*"))
	nw, _ := filepath.Glob(filepath.Join(maildir, "INBOX", "new", "*"))
	if len(cur)+len(nw) != 3 {
		t.Fatalf("after first sync: %d+%d local messages, want 3", len(cur), len(nw))
	}
	// Local: flag one (F) and mark one seen (S); add a new message.
	local := append(cur, nw...)
	slices.Sort(local)
	flag := func(p, fl string) {
		base := filepath.Base(p)
		if i := strings.Index(base, ":2,"); i >= 0 {
			base = base[:i]
		}
		os.Rename(p, filepath.Join(maildir, "INBOX", "cur", base+":2,"+fl))
	}
	flag(local[0], "FS")
	os.WriteFile(filepath.Join(maildir, "INBOX", "new", "1700000000.local.host"), []byte("From: bob@hamburger.edu\r\nSubject: from maildir\r\n\r\nlocal\r\n"), 0o600)
	// Server: mark the last one answered.
	msgs, _ := e.st.Messages(ctx, u, "INBOX")
	e.st.SetFlags(ctx, u, "INBOX", msgs[2].UID, []string{`\Answered`})
	run()
	msgs, _ = e.st.Messages(ctx, u, "INBOX")
	if len(msgs) != 4 {
		t.Fatalf("server after sync: %d messages, want 4", len(msgs))
	}
	flagged := 0
	for _, m := range msgs {
		if slices.Contains(m.Flags, `\Flagged`) && slices.Contains(m.Flags, `\Seen`) {
			flagged++
		}
	}
	if flagged != 1 {
		t.Errorf("server flags after sync: %+v, want one \\Flagged \\Seen", msgs)
	}
	all, _ := filepath.Glob(filepath.Join(maildir, "INBOX", "*", "*"))
	answered := 0
	for _, p := range all {
		if i := strings.Index(p, ":2,"); i >= 0 && strings.Contains(p[i:], "R") {
			answered++
		}
	}
	if answered != 1 || len(all) != 4 {
		t.Errorf("maildir after sync: %q, want 4 with one R (answered)", all)
	}
	// Delete on the server, expunge: gone locally too.
	e.st.Delete(ctx, u, "INBOX", msgs[0].UID)
	run()
	all, _ = filepath.Glob(filepath.Join(maildir, "INBOX", "*", "*"))
	if len(all) != 3 {
		t.Errorf("maildir after server delete: %d, want 3", len(all))
	}
}
