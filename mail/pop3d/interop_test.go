package pop3d

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/applayer/applayer/internal/testkit"
)

func TestCurlInterop(t *testing.T) {
	curl := testkit.Peer(t, "curl")
	e := newEnv(t, true, 2)
	_, tlsPort, _ := strings.Cut(e.tl, ":")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"pop3 list", []string{"pop3://" + e.plain + "/"}, "1 "},
		{"pop3 retr", []string{"pop3://" + e.plain + "/2"}, "Subject: 2"},
		{"pop3 uidl", []string{"pop3://" + e.plain + "/", "-X", "UIDL"}, ".2"},
		{"pop3s retr", []string{"--cacert", e.caFile, "pop3s://localhost:" + tlsPort + "/1"}, "\r\n.dot line\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(curl, append([]string{"-sS", "--max-time", "20", "-u", "bob@hamburger.edu:s3cret"}, tc.args...)...).CombinedOutput()
			if err != nil || !strings.Contains(string(out), tc.want) {
				t.Errorf("curl %v: %v\n%q\nwant %q", tc.args, err, out, tc.want)
			}
		})
	}
}

func TestPythonPoplib(t *testing.T) {
	py := testkit.Peer(t, "python3")
	e := newEnv(t, false, 3)
	_, port, _ := strings.Cut(e.plain, ":")
	script := `
import poplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
P = poplib.POP3("localhost", int(sys.argv[1]))
caps = P.capa()
assert "STLS" in caps and "USER" not in caps, caps
P.stls(context=ctx)
assert "USER" in P.capa()
P.user("bob@hamburger.edu"); P.pass_("s3cret")
n, size = P.stat()
assert n == 3, (n, size)
resp, lines, octets = P.retr(2)
assert lines[1] == b"Subject: 2" and b".dot line" in lines, lines
resp, lines, octets = P.top(1, 0)
assert lines[-1] == b"", lines
resp, uidl, _ = P.uidl()
assert len(uidl) == 3, uidl
P.dele(1)
P.quit()
P = poplib.POP3_SSL("localhost", int(sys.argv[3]), context=ctx)
P.user("bob@hamburger.edu"); P.pass_("s3cret")
assert P.stat()[0] == 2
P.quit()
print("poplib ok")
`
	_, tlsPort, _ := strings.Cut(e.tl, ":")
	out, err := exec.Command(py, "-c", script, port, e.caFile, tlsPort).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "poplib ok") {
		t.Fatalf("poplib: %v\n%s", err, out)
	}
}

// fetchmail, download-and-keep (keep) and then download-and-delete.
func TestFetchmail(t *testing.T) {
	fm := testkit.Peer(t, "fetchmail")
	e := newEnv(t, false, 3)
	dir := t.TempDir()
	_, port, _ := strings.Cut(e.tl, ":")
	out := filepath.Join(dir, "delivered")
	run := func(keep string) string {
		t.Helper()
		rc := filepath.Join(dir, "fetchmailrc")
		conf := fmt.Sprintf(`set no syslog
poll localhost protocol POP3 port %s uidl
  user "bob@hamburger.edu" password "s3cret" is "bob" here
  ssl sslcertck sslcertfile "%s"
  %s
  mda "/bin/sh -c 'cat >> %s; echo ==END== >> %s'"
`, port, e.caFile, keep, out, out)
		os.WriteFile(rc, []byte(conf), 0o600)
		cmd := exec.Command(fm, "-f", rc, "--nodetach", "-v", "--idfile", filepath.Join(dir, "ids"), "--pidfile", filepath.Join(dir, "pid"))
		cmd.Env = append(os.Environ(), "HOME="+dir, "FETCHMAILHOME="+dir)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("fetchmail %s: %v\n%s", keep, err, b)
		}
		return string(b)
	}
	count := func() int {
		b, _ := os.ReadFile(out)
		return strings.Count(string(b), "==END==")
	}
	run("keep")
	msgs, _ := e.st.Messages(context.Background(), "bob@hamburger.edu", "INBOX")
	if count() != 3 || len(msgs) != 3 {
		t.Fatalf("keep: delivered %d, server has %d; want 3 and 3", count(), len(msgs))
	}
	run("no keep fetchall") // fetchall: the ids file says all three were seen
	msgs, _ = e.st.Messages(context.Background(), "bob@hamburger.edu", "INBOX")
	if len(msgs) != 0 {
		t.Errorf("no keep: server still has %d messages", len(msgs))
	}
	if b, _ := os.ReadFile(out); !strings.Contains(string(b), "\n.dot line") {
		t.Errorf("delivered mail lost the dot line:\n%s", b)
	}
}
