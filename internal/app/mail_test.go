package app

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/mail/mta"
	"github.com/applayer/applayer/mail/smtpd"
	"github.com/applayer/applayer/mail/store"
)

// TestMailMetricsLint lints the mail server's metrics (queue and SMTP,
// the labelled rejection family included after one refused relay).
func TestMailMetricsLint(t *testing.T) {
	reg := obs.NewRegistry()
	dir := t.TempDir()
	srv, err := mta.New(context.Background(), mta.Config{
		SMTP:  smtpd.Config{Addr: "127.0.0.1:0", Domains: []string{"hamburger.edu"}},
		DB:    filepath.Join(dir, "mail.db"),
		Spool: filepath.Join(dir, "spool"),
		Store: store.Options{BcryptCost: bcrypt.MinCost},
	}, service.Deps{Logger: testkit.Logger(t), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, srv)
	out, code := runCmd(t, "", "mail", "users", "list", "--db", filepath.Join(dir, "mail.db"))
	if code != 0 || !strings.Contains(out, "ADDRESS") {
		t.Fatalf("users list: %d %q", code, out)
	}
	lintMetrics(t, reg, "mail")
}

// The users subcommands against one database, as a script would run them.
func TestMailUsersCommands(t *testing.T) {
	db := filepath.Join(t.TempDir(), "mail.db")
	for _, step := range []struct {
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"", []string{"add", "Bob@Hamburger.edu", "--password", "pw1"}, 0, "added bob@hamburger.edu"},
		{"pw2\n", []string{"add", "carol@hamburger.edu", "--password-stdin", "--quota", "2048"}, 0, "added carol@hamburger.edu"},
		{"", []string{"add", "bob@hamburger.edu", "--password", "x"}, 1, ""},
		{"", []string{"add", "nodomain", "--password", "x"}, 1, ""},
		{"", []string{"add", "dave@hamburger.edu"}, 1, ""},
		{"", []string{"list"}, 0, "carol@hamburger.edu  2.0 KiB"},
		{"", []string{"passwd", "bob@hamburger.edu", "--password", "new"}, 0, "changed bob@hamburger.edu"},
		{"", []string{"passwd", "eve@hamburger.edu", "--password", "new"}, 1, ""},
		{"", []string{"del", "carol@hamburger.edu"}, 0, "deleted carol@hamburger.edu"},
		{"", []string{"del", "carol@hamburger.edu"}, 1, ""},
	} {
		out, code := runCmd(t, step.stdin, append(append([]string{"mail", "users"}, step.args...), "--db", db)...)
		if code != step.code || !strings.Contains(out, step.want) {
			t.Errorf("mail users %v: code %d, output %q; want code %d with %q", step.args, code, out, step.code, step.want)
		}
	}
	st, err := store.OpenSQLite(context.Background(), db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Authenticate(context.Background(), "bob@hamburger.edu", "new"); err != nil {
		t.Errorf("bob's new password: %v", err)
	}
	if users, _ := st.Users(context.Background()); len(users) != 1 {
		t.Errorf("users left: %+v", users)
	}
}

// runCmd runs the command line in-process with stdin and returns stdout
// and 0, or 1 when the command failed.
func runCmd(t *testing.T, stdin string, args ...string) (string, int) {
	t.Helper()
	var out, errOut strings.Builder
	root := NewRoot(strings.NewReader(stdin), &out, &errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	if errOut.Len() > 0 {
		t.Logf("stderr: %s", errOut.String())
	}
	if err != nil {
		return out.String(), 1
	}
	return out.String(), 0
}
