package mta

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/mail/mailtest"
	"github.com/applayer/applayer/mail/queue"
	"github.com/applayer/applayer/mail/smtpd"
	"github.com/applayer/applayer/mail/store"
)

func addUsers(t *testing.T, db string, users ...string) {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), db, store.Options{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, u := range users {
		if err := st.AddUser(context.Background(), u, "pw", 0); err != nil {
			t.Fatal(err)
		}
	}
}

// subjects returns the Subject of every message in user's INBOX.
func subjects(t *testing.T, st store.Store, user string) []string {
	t.Helper()
	ctx := context.Background()
	msgs, err := st.Messages(ctx, user, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	re := regexp.MustCompile(`(?m)^Subject: (.*)\r$`)
	for _, m := range msgs {
		b, err := st.Body(ctx, user, "INBOX", m.UID)
		if err != nil {
			t.Fatal(err)
		}
		if s := re.FindSubmatch(b); s != nil {
			out = append(out, string(s[1]))
		}
	}
	return out
}

// startInProcess runs a server for hamburger.edu with bob and carol.
func startInProcess(t *testing.T, max int64) *Server {
	t.Helper()
	dir := t.TempDir()
	addUsers(t, filepath.Join(dir, "mail.db"), "bob@hamburger.edu", "carol@hamburger.edu")
	srv, err := New(context.Background(), Config{
		SMTP:  smtpd.Config{Addr: "127.0.0.1:0", Domains: []string{"hamburger.edu"}, Hostname: "mx.hamburger.edu", MaxMessageBytes: max},
		DB:    filepath.Join(dir, "mail.db"),
		Spool: filepath.Join(dir, "spool"),
		CADir: filepath.Join(dir, "ca"),
		Store: store.Options{BcryptCost: bcrypt.MinCost},
	}, service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return testkit.Start(t, srv)
}

func waitDelivered(t *testing.T, srv *Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for srv.Queue().Len() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("queue did not drain")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// swaks (Debian's swaks): STARTTLS with pipelining, a big message, a
// refused relay and an over-size message.
func TestSwaks(t *testing.T) {
	swaks := testkit.Peer(t, "swaks")
	srv := startInProcess(t, 2<<20)
	addr := srv.Addrs()[0].(*net.TCPAddr)
	run := func(args ...string) (string, error) {
		base := []string{"--server", "127.0.0.1", "--port", fmt.Sprint(addr.Port), "--from", "alice@crepes.fr", "--helo", "client.crepes.fr", "--timeout", "10"}
		out, err := exec.Command(swaks, append(base, args...)...).CombinedOutput()
		return string(out), err
	}
	out, err := run("--to", "bob@hamburger.edu", "--tls", "--pipeline", "--header", "Subject: swaks-tls")
	if err != nil || !strings.Contains(out, "250 2.0.0 OK queued as") || !strings.Contains(out, "TLS started") {
		t.Errorf("swaks STARTTLS+PIPELINING: %v\n%s", err, out)
	}
	big := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n", 24_000) // ~1.5 MB
	bodyFile := filepath.Join(t.TempDir(), "body")
	os.WriteFile(bodyFile, []byte(big), 0o600)
	out, err = run("--to", "carol@hamburger.edu", "--header", "Subject: swaks-big", "--body", "@"+bodyFile)
	if err != nil || !strings.Contains(out, "250 2.0.0 OK queued as") {
		t.Errorf("swaks big message: %v\n%s", err, clip(out))
	}
	out, err = run("--to", "someone@elsewhere.org")
	if err == nil || !strings.Contains(out, "554 5.7.1") {
		t.Errorf("swaks relay: %v (want a failure with 554 5.7.1)\n%s", err, out)
	}
	os.WriteFile(bodyFile, []byte(big+big), 0o600) // ~3 MB > 2 MiB
	out, err = run("--to", "bob@hamburger.edu", "--body", "@"+bodyFile)
	if err == nil || !strings.Contains(out, "552") {
		t.Errorf("swaks over-size: %v (want 552)\n%s", err, clip(out))
	}
	waitDelivered(t, srv)
	if got := subjects(t, srv.Store(), "bob@hamburger.edu"); strings.Join(got, ",") != "swaks-tls" {
		t.Errorf("bob's inbox: %q", got)
	}
	if got := subjects(t, srv.Store(), "carol@hamburger.edu"); strings.Join(got, ",") != "swaks-big" {
		t.Errorf("carol's inbox: %q", got)
	}
}

func clip(s string) string {
	if len(s) > 3000 {
		return s[:1500] + "\n...\n" + s[len(s)-1500:]
	}
	return s
}

// python3's smtplib: a message with STARTTLS, a refused relay, an unknown
// user, and SMTPUTF8.
func TestPythonSmtplib(t *testing.T) {
	py := testkit.Peer(t, "python3")
	srv := startInProcess(t, 0)
	script := `
import smtplib, ssl, sys
host, port = "127.0.0.1", int(sys.argv[1])
s = smtplib.SMTP(host, port, local_hostname="client.crepes.fr", timeout=10)
s.ehlo()
print("starttls", s.has_extn("starttls"), "smtputf8", s.has_extn("smtputf8"), "pipelining", s.has_extn("pipelining"))
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
print("tls", s.starttls(context=ctx)[0])
s.ehlo()
print("send", s.sendmail("alice@crepes.fr", ["bob@hamburger.edu"], b"Subject: py-tls\r\n\r\nhi\r\n"))
try:
    s.sendmail("alice@crepes.fr", ["x@elsewhere.org"], b"Subject: relay\r\n\r\nhi\r\n")
except smtplib.SMTPRecipientsRefused as e:
    print("relay", e.recipients["x@elsewhere.org"][0])
try:
    s.sendmail("alice@crepes.fr", ["nobody@hamburger.edu"], b"Subject: unknown\r\n\r\nhi\r\n")
except smtplib.SMTPRecipientsRefused as e:
    print("unknown", e.recipients["nobody@hamburger.edu"][0])
print("utf8", s.sendmail("älice@crepes.fr", ["carol@hamburger.edu"], "Subject: py-ütf8\r\n\r\nhï\r\n".encode(), mail_options=["SMTPUTF8"]))
s.quit()
`
	out, err := exec.Command(py, "-c", script, fmt.Sprint(srv.Addrs()[0].(*net.TCPAddr).Port)).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	want := "starttls True smtputf8 True pipelining True\ntls 220\nsend {}\nrelay 554\nunknown 550\nutf8 {}\n"
	if string(out) != want {
		t.Errorf("python smtplib said:\n%s\nwant:\n%s", out, want)
	}
	waitDelivered(t, srv)
	if got := subjects(t, srv.Store(), "bob@hamburger.edu"); strings.Join(got, ",") != "py-tls" {
		t.Errorf("bob's inbox: %q", got)
	}
	if got := subjects(t, srv.Store(), "carol@hamburger.edu"); strings.Join(got, ",") != "py-ütf8" {
		t.Errorf("carol's inbox: %q", got)
	}
}

// kill -9 while a burst is being accepted, then restart: every message
// answered 250 is in the mailbox (at most twice), none lost.
func TestKill9DuringBurst(t *testing.T) {
	dir := t.TempDir()
	addUsers(t, filepath.Join(dir, "mail.db"), "bob@hamburger.edu")
	child := startChild(t, dir)
	addr, _ := os.ReadFile(filepath.Join(dir, "addr"))
	burst := mailtest.StartBurst(string(addr), "alice@crepes.fr", "bob@hamburger.edu", 4)
	burst.WaitAcked(60, 30*time.Second)          // kill once a good part of the burst is in
	if err := child.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	child.Wait()
	acked := burst.Stop()
	if len(acked) < 60 {
		t.Fatalf("only %d messages acknowledged before the kill", len(acked))
	}
	t.Logf("%d messages answered 250 before kill -9", len(acked))

	child = startChild(t, dir)
	defer func() {
		child.Process.Signal(os.Interrupt)
		child.Wait()
	}()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "mail.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		count := map[string]int{}
		for _, s := range subjects(t, st, "bob@hamburger.edu") {
			count[s]++
		}
		var missing []string
		for _, id := range acked {
			if count[id] == 0 {
				missing = append(missing, id)
			}
		}
		spooled, _ := filepath.Glob(filepath.Join(dir, "spool", "*.msg"))
		if len(missing) == 0 && len(spooled) == 0 {
			for id, n := range count {
				if n > 2 {
					t.Errorf("%s delivered %d times", id, n)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart, %d of %d acknowledged messages missing (e.g. %v), %d still spooled", len(missing), len(acked), missing[:min(5, len(missing))], len(spooled))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// swaks on the submission ports: AUTH PLAIN over STARTTLS with
// pipelining, AUTH LOGIN over 465, a big message, AUTH refused in plain
// text, relay refused without AUTH, a sender that is not the user's.
func TestSwaksSubmission(t *testing.T) {
	swaks := testkit.Peer(t, "swaks")
	dir := t.TempDir()
	addUsers(t, filepath.Join(dir, "mail.db"), "bob@hamburger.edu", "carol@hamburger.edu")
	srv, err := New(context.Background(), Config{
		SMTP:            smtpd.Config{Addr: "127.0.0.1:0", Domains: []string{"hamburger.edu"}, Hostname: "mx.hamburger.edu"},
		SubmissionAddr:  "127.0.0.1:0",
		SubmissionsAddr: "127.0.0.1:0",
		DB:              filepath.Join(dir, "mail.db"),
		Spool:           filepath.Join(dir, "spool"),
		CADir:           filepath.Join(dir, "ca"),
		Store:           store.Options{BcryptCost: bcrypt.MinCost},
		Resolver:        "127.0.0.1:1", // nothing is relayed in this test; never the machine's DNS
	}, service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, srv)
	addrs := srv.Addrs()
	sub, subs := addrs[1].(*net.TCPAddr).Port, addrs[2].(*net.TCPAddr).Port
	run := func(port int, args ...string) (string, error) {
		base := []string{"--server", "127.0.0.1", "--port", fmt.Sprint(port), "--helo", "client.hamburger.edu", "--timeout", "10"}
		out, err := exec.Command(swaks, append(base, args...)...).CombinedOutput()
		return string(out), err
	}
	auth := []string{"--auth-user", "bob@hamburger.edu", "--auth-password", "pw", "--from", "bob@hamburger.edu"}
	out, err := run(sub, append(auth, "--tls", "--auth", "PLAIN", "--pipeline", "--to", "carol@hamburger.edu", "--header", "Subject: sub-plain")...)
	if err != nil || !strings.Contains(out, "235 2.0.0 Authentication succeeded") || !strings.Contains(out, "250 2.0.0 OK queued as") {
		t.Errorf("swaks AUTH PLAIN over STARTTLS: %v\n%s", err, out)
	}
	out, err = run(subs, append(auth, "--tlsc", "--auth", "LOGIN", "--to", "carol@hamburger.edu", "--header", "Subject: sub-login")...)
	if err != nil || !strings.Contains(out, "235 2.0.0") || !strings.Contains(out, "250 2.0.0 OK queued as") {
		t.Errorf("swaks AUTH LOGIN over 465: %v\n%s", err, out)
	}
	big := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n", 24_000) // ~1.5 MB
	bodyFile := filepath.Join(t.TempDir(), "body")
	os.WriteFile(bodyFile, []byte(big), 0o600)
	out, err = run(sub, append(auth, "--tls", "--auth", "PLAIN", "--to", "carol@hamburger.edu", "--header", "Subject: sub-big", "--body", "@"+bodyFile)...)
	if err != nil || !strings.Contains(out, "250 2.0.0 OK queued as") {
		t.Errorf("swaks big submission: %v\n%s", err, clip(out))
	}
	out, err = run(sub, append(auth, "--auth", "PLAIN", "--to", "carol@hamburger.edu")...)
	if err == nil || strings.Contains(out, "235 ") {
		t.Errorf("swaks AUTH without TLS: %v (want no AUTH offered)\n%s", err, out)
	}
	out, err = run(sub, "--tls", "--from", "bob@hamburger.edu", "--to", "someone@elsewhere.org")
	if err == nil || !strings.Contains(out, "530 5.7.0") {
		t.Errorf("swaks relay without AUTH: %v (want 530)\n%s", err, out)
	}
	out, err = run(sub, "--tls", "--auth", "PLAIN", "--auth-user", "bob@hamburger.edu", "--auth-password", "pw", "--from", "alice@crepes.fr", "--to", "carol@hamburger.edu")
	if err == nil || !strings.Contains(out, "553 5.7.1") {
		t.Errorf("swaks foreign sender: %v (want 553)\n%s", err, out)
	}
	waitDelivered(t, srv)
	if got := subjects(t, srv.Store(), "carol@hamburger.edu"); strings.Join(got, ",") != "sub-plain,sub-login,sub-big" {
		t.Errorf("carol's inbox: %q", got)
	}
}

// TestKill9DuringRelay: crepes.fr's server, its own process, relays a
// spool of 150 messages by MX to hamburger.edu's (in this process); it is
// killed with SIGKILL once 30 have arrived, and started again: every
// message reaches Bob, none more than twice, and the spool empties.
func TestKill9DuringRelay(t *testing.T) {
	dst := t.TempDir()
	addUsers(t, filepath.Join(dst, "mail.db"), "bob@hamburger.edu")
	hamburger, err := New(context.Background(), Config{
		SMTP:  smtpd.Config{Addr: "127.0.0.8:0", Domains: []string{"hamburger.edu"}, Hostname: "mx.hamburger.edu"},
		DB:    filepath.Join(dst, "mail.db"),
		Spool: filepath.Join(dst, "spool"),
		CADir: filepath.Join(dst, "ca"),
	}, service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, hamburger)
	port := hamburger.Addrs()[0].(*net.TCPAddr).Port
	res := mailtest.DNS(t, "hamburger.edu. 60 IN MX 10 mx.hamburger.edu.", "mx.hamburger.edu. 60 IN A 127.0.0.8")

	dir := t.TempDir()
	addUsers(t, filepath.Join(dir, "mail.db"), "alice@crepes.fr")
	os.WriteFile(filepath.Join(dir, "relay"), []byte(fmt.Sprintf("%s %d", res, port)), 0o600)
	// Spool the messages before the server starts.
	q, err := queue.New(queue.Config{Dir: filepath.Join(dir, "spool")}, service.Deps{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 150
	for i := range n {
		if _, err := q.Enqueue(context.Background(), "alice@crepes.fr", []string{"bob@hamburger.edu"}, []byte(fmt.Sprintf("Subject: r%d\r\n\r\nrelay\r\n", i))); err != nil {
			t.Fatal(err)
		}
	}
	bobs := func() map[string]int {
		count := map[string]int{}
		for _, s := range subjects(t, hamburger.Store(), "bob@hamburger.edu") {
			count[s]++
		}
		return count
	}
	child := startChild(t, dir)
	deadline := time.Now().Add(30 * time.Second)
	for len(bobs()) < 30 {
		if time.Now().After(deadline) {
			t.Fatal("fewer than 30 messages relayed in 30s")
		}
		time.Sleep(2 * time.Millisecond)
	}
	child.Process.Kill() // SIGKILL, mid-relay
	child.Wait()
	before := len(bobs())
	spooled, _ := filepath.Glob(filepath.Join(dir, "spool", "*.msg"))
	t.Logf("killed with %d messages at Bob and %d spooled", before, len(spooled))
	if len(spooled) == 0 {
		t.Fatal("the kill came after the relay had finished")
	}
	child = startChild(t, dir)
	defer func() {
		child.Process.Signal(os.Interrupt)
		child.Wait()
	}()
	deadline = time.Now().Add(60 * time.Second)
	for {
		count := bobs()
		spooled, _ := filepath.Glob(filepath.Join(dir, "spool", "*.msg"))
		if len(count) == n && len(spooled) == 0 {
			dups := 0
			for id, c := range count {
				if c > 2 {
					t.Errorf("%s delivered %d times", id, c)
				}
				dups += c - 1
			}
			t.Logf("all %d relayed; %d duplicates", n, dups)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart: %d of %d messages at Bob, %d still spooled", len(count), n, len(spooled))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startChild starts the test binary as a mail server on dir (runChild)
// and waits until it listens.
func startChild(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	os.Remove(filepath.Join(dir, "addr"))
	c := exec.Command(os.Args[0], "-test.run=^$")
	c.Env = append(os.Environ(), childEnv+"="+dir)
	var out testkit.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "addr")); err == nil {
			return c
		}
		if time.Now().After(deadline) {
			c.Process.Kill()
			c.Wait()
			t.Fatalf("child did not start:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
