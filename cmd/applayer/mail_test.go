package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/mail/mailtest"
	"github.com/applayer/applayer/mail/store"
)

// `applayer mail serve` killed with SIGKILL while a burst of mail comes in,
// then started again: every message it answered 250 ends up in the
// mailbox, at most twice.
func TestMailServeKill9(t *testing.T) {
	dir := t.TempDir()
	db, spool := filepath.Join(dir, "mail.db"), filepath.Join(dir, "spool")
	if _, errOut, code := run(t, "mail", "users", "add", "--db", db, "bob@hamburger.edu", "--password", "pw"); code != 0 {
		t.Fatalf("users add: %s", errOut)
	}
	listening := regexp.MustCompile(`mail listening on tcp (\S+)`)
	serve := func() (*exec.Cmd, string) {
		c := applayer(context.Background(), "mail", "serve", "--domain", "hamburger.edu", "--db", db, "--spool", spool, "--listen", "127.0.0.1:0", "--no-tls")
		var out testkit.Buffer
		c.Stdout, c.Stderr = &out, &out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			if m := listening.FindStringSubmatch(out.String()); m != nil {
				return c, m[1]
			}
			if time.Now().After(deadline) {
				c.Process.Kill()
				c.Wait()
				t.Fatalf("mail serve did not start:\n%s", out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	srv, addr := serve()
	burst := mailtest.StartBurst(addr, "alice@crepes.fr", "bob@hamburger.edu", 4)
	burst.WaitAcked(80, 30*time.Second)        // kill once a good part of the burst is in
	if err := srv.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	srv.Wait()
	acked := burst.Stop()
	if len(acked) < 80 {
		t.Fatalf("only %d messages answered 250 before the kill", len(acked))
	}
	t.Logf("%d messages answered 250 before kill -9", len(acked))

	srv, _ = serve()
	defer func() {
		srv.Process.Signal(os.Interrupt)
		srv.Wait()
	}()
	st, err := store.OpenSQLite(context.Background(), db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	subject := regexp.MustCompile(`(?m)^Subject: (.*)\r$`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		count := map[string]int{}
		msgs, err := st.Messages(context.Background(), "bob@hamburger.edu", "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			b, err := st.Body(context.Background(), "bob@hamburger.edu", "INBOX", m.UID)
			if err != nil {
				t.Fatal(err)
			}
			if s := subject.FindSubmatch(b); s != nil {
				count[string(s[1])]++
			}
		}
		var missing []string
		for _, id := range acked {
			if count[id] == 0 {
				missing = append(missing, id)
			}
		}
		spooled, _ := filepath.Glob(filepath.Join(spool, "*.msg"))
		if len(missing) == 0 && len(spooled) == 0 {
			for id, n := range count {
				if n > 2 {
					t.Errorf("%s delivered %d times", id, n)
				}
			}
			t.Logf("%d messages in the mailbox after restart", len(msgs))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after restart %d of %d acknowledged messages are missing (e.g. %v); %d still spooled", len(missing), len(acked), missing[:min(5, len(missing))], len(spooled))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
