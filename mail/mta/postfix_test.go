package mta

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/mail/mailtest"
	"github.com/applayer/applayer/mail/mua"
	"github.com/applayer/applayer/mail/smtpd"
	"github.com/applayer/applayer/mail/store"
	"github.com/applayer/applayer/web/labca"
)

// postfix is a Postfix instance run by the test (Debian's postfix package,
// `postfix -c DIR start-fg`, its own config, queue and log in DIR), on
// 127.0.0.1:port, relaying everything but pf.test to relayhost and
// delivering carol@pf.test to the maildir DIR/vmail/carol, with STARTTLS
// from a lab CA certificate.
type postfix struct {
	dir  string
	port int
}

func startPostfix(t *testing.T, relayhost string) *postfix {
	t.Helper()
	bin := testkit.Peer(t, "postfix")
	if os.Geteuid() != 0 {
		testkit.Skip(t, "Postfix's master runs as root: run this test as root")
	}
	pu, err := user.Lookup("postfix")
	if err != nil {
		t.Fatalf("postfix user: %v (Debian's postfix package creates it)", err)
	}
	gr, err := user.LookupGroup("postfix")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// Postfix's daemons run as the postfix user: they need to reach dir.
	for d := dir; d != filepath.Dir(os.TempDir()) && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	var uid, gid int
	fmt.Sscan(pu.Uid, &uid)
	fmt.Sscan(gr.Gid, &gid)
	for _, d := range []string{"queue", "data", "vmail"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	os.Chown(filepath.Join(dir, "data"), uid, gid)
	os.Chown(filepath.Join(dir, "vmail"), uid, gid)
	ca, err := labca.LoadOrCreate(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("mx.pf.test", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	os.WriteFile(filepath.Join(dir, "tls.pem"), append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})...), 0o600)
	port := testkit.FreePort(t, "tcp", "127.0.0.1")
	mainCF := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.pf.test
mydomain = pf.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
smtp_dns_support_level = disabled
alias_maps =
alias_database =
relayhost = %[2]s
virtual_mailbox_domains = pf.test
virtual_mailbox_base = %[1]s/vmail
virtual_mailbox_maps = inline:{ {carol@pf.test=carol/} }
virtual_uid_maps = static:%[3]d
virtual_gid_maps = static:%[4]d
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_tls_chain_files = %[1]s/tls.pem
smtpd_tls_security_level = may
smtp_tls_security_level = may
biff = no
`, dir, relayhost, uid, gid)
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(mainCF), 0o644); err != nil {
		t.Fatal(err)
	}
	// Debian's master.cf with smtpd on our port and nothing chrooted.
	mcf, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		t.Fatal(err)
	}
	smtpLine := regexp.MustCompile(`(?m)^smtp +inet .*$`)
	chroot := regexp.MustCompile(`(?m)^([a-z0-9.:]+ +(?:inet|unix|unix-dgram|fifo|pass) +[-ny] +[-ny] +)y`)
	out := smtpLine.ReplaceAllString(string(mcf), fmt.Sprintf("127.0.0.1:%d inet n - n - - smtpd", port))
	out = chroot.ReplaceAllString(out, "${1}n")
	os.WriteFile(filepath.Join(dir, "master.cf"), []byte(out), 0o644)
	if b, err := exec.Command(bin, "-c", dir, "check").CombinedOutput(); err != nil {
		t.Fatalf("postfix check: %v\n%s", err, b)
	}
	cmd := exec.Command(bin, "-c", dir, "start-fg")
	var log testkit.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// master by its PID file, then the start-fg wrapper.
		if b, err := os.ReadFile(filepath.Join(dir, "queue", "pid", "master.pid")); err == nil {
			var pid int
			if fmt.Sscan(strings.TrimSpace(string(b)), &pid); pid > 0 {
				syscall.Kill(pid, syscall.SIGTERM)
			}
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "maillog"))
			t.Logf("postfix maillog:\n%s", b)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "maillog"))
			t.Fatalf("postfix did not listen: %s\n%s", log.String(), b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &postfix{dir: dir, port: port}
}

// Postfix relays a message to applayer (relayhost), which delivers it to
// Bob; applayer relays Alice's submitted message by MX to Postfix, over
// STARTTLS, which delivers it to carol@pf.test's maildir.
func TestPostfixInterop(t *testing.T) {
	// applayer for hamburger.edu and crepes.fr.
	dir := t.TempDir()
	addUsers(t, filepath.Join(dir, "mail.db"), "bob@hamburger.edu", "alice@crepes.fr")
	ours := testkit.FreePort(t, "tcp", "127.0.0.1")
	pf := startPostfix(t, fmt.Sprintf("[127.0.0.1]:%d", ours))
	res := mailtest.DNS(t, "pf.test. 60 IN MX 10 mx.pf.test.", "mx.pf.test. 60 IN A 127.0.0.1")
	srv, err := New(context.Background(), Config{
		SMTP:                 smtpd.Config{Addr: fmt.Sprintf("127.0.0.1:%d", ours), Domains: []string{"hamburger.edu", "crepes.fr"}, Hostname: "mail.applayer.test"},
		SubmissionAddr:       "127.0.0.1:0",
		InsecureAuthLoopback: true,
		DB:                   filepath.Join(dir, "mail.db"),
		Spool:                filepath.Join(dir, "spool"),
		CADir:                filepath.Join(dir, "ca"),
		Store:                store.Options{BcryptCost: bcrypt.MinCost},
		Resolver:             res,
		RelayPort:            pf.port,
		RelayTimeout:         10 * time.Second,
	}, service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, srv)

	// Postfix -> applayer.
	c, err := smtp.Dial(fmt.Sprintf("127.0.0.1:%d", pf.port))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("someone@pf.test", []string{"bob@hamburger.edu"}, strings.NewReader("From: someone@pf.test\r\nSubject: via-postfix\r\n\r\nrelayed by Postfix\r\n")); err != nil {
		t.Fatalf("submit to Postfix: %v", err)
	}
	c.Quit()
	deadline := time.Now().Add(30 * time.Second)
	for len(subjects(t, srv.Store(), "bob@hamburger.edu")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Postfix's relay did not reach Bob")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := subjects(t, srv.Store(), "bob@hamburger.edu"); strings.Join(got, ",") != "via-postfix" {
		t.Errorf("bob's inbox: %q", got)
	}

	// applayer -> Postfix, submitted as Alice.
	reply, err := mua.Send(context.Background(), mua.Submission{Server: srv.Addrs()[1].String(), NoTLS: true, Username: "alice@crepes.fr", Password: "pw"},
		"alice@crepes.fr", []string{"carol@pf.test"}, []byte("From: alice@crepes.fr\r\nTo: carol@pf.test\r\nSubject: via-applayer\r\n\r\nrelayed by applayer\r\n"))
	if err != nil {
		t.Fatalf("submit to applayer: %v", err)
	}
	t.Logf("applayer: %s", reply)
	deadline = time.Now().Add(30 * time.Second)
	var files []string
	for len(files) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("nothing in carol@pf.test's maildir; applayer queue: %+v", srv.Queue().List())
		}
		time.Sleep(50 * time.Millisecond)
		files, _ = filepath.Glob(filepath.Join(pf.dir, "vmail", "carol", "new", "*"))
	}
	b, _ := os.ReadFile(files[0])
	msg := string(b)
	if !strings.Contains(msg, "Subject: via-applayer") || !strings.Contains(msg, "by mx.pf.test (Postfix) with ESMTPS") || !strings.Contains(msg, "from mail.applayer.test") {
		t.Errorf("carol@pf.test's message:\n%s", msg)
	}
}
