package main

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/mail/store/pgtest"
)

// `applayer mail users` and `mail serve` on a PostgreSQL store (--store
// postgres://...): two front-ends share the database, mail sent to each
// lands in the one mailbox with consecutive UIDs.
func TestMailServePostgres(t *testing.T) {
	srv := pgtest.Start(t)
	ctx := testkit.Context(t, 2*time.Minute)
	db, err := srv.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	url := srv.URL(db)
	if out, errOut, code := run(t, "mail", "users", "add", "--store", url, "bob@hamburger.edu", "--password", "pw"); code != 0 || !strings.Contains(out, "added bob@hamburger.edu") {
		t.Fatalf("users add: %s %s", out, errOut)
	}
	listening := regexp.MustCompile(`mail listening on tcp (\S+)`)
	serve := func() string {
		c := applayer(context.Background(), "mail", "serve", "--domain", "hamburger.edu", "--store", url, "--spool", t.TempDir(), "--listen", "127.0.0.1:0", "--no-tls")
		var out testkit.Buffer
		c.Stdout, c.Stderr = &out, &out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stop(c) })
		for {
			if m := listening.FindStringSubmatch(out.String()); m != nil {
				return m[1]
			}
			if ctx.Err() != nil {
				t.Fatalf("mail serve did not start:\n%s", out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	fronts := []string{serve(), serve()}
	for i := range 6 {
		msg := "From: alice@crepes.fr\r\nSubject: m\r\n\r\nhello\r\n"
		c, err := smtp.Dial(fronts[i%2])
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SendMail("alice@crepes.fr", []string{"bob@hamburger.edu"}, strings.NewReader(msg)); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	for {
		out, errOut, code := run(t, "mail", "users", "list", "--store", url)
		if code != 0 {
			t.Fatalf("users list: %s", errOut)
		}
		if strings.Contains(out, "6 messages") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("users list: %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends a server process: SIGINT, then SIGKILL.
func stop(c *exec.Cmd) {
	c.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.Process.Kill()
		<-done
	}
}
