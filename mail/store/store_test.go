package store

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/applayer/applayer/internal/testkit"
)

// backends opens every Store backend for the shared tests: SQLite in a
// temporary file, and PostgreSQL (a database of its own on the package's
// server, see pgServer).
func backends(t *testing.T) map[string]Store {
	t.Helper()
	now := time.Unix(1_700_000_000, 0)
	opts := Options{BcryptCost: bcrypt.MinCost, Now: func() time.Time { return now }}
	s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "mail.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return map[string]Store{"sqlite": s, "postgres": openPostgres(t, opts)}
}

// openPostgres opens a Postgres store on a new database of the test server.
func openPostgres(t *testing.T, opts Options) *Postgres {
	t.Helper()
	srv := pgServer(t)
	ctx := testkit.Context(t, time.Minute)
	db, err := srv.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p, err := OpenPostgres(ctx, srv.DSN(db), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestCanonAddress(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"Bob@Hamburger.EDU", "bob@hamburger.edu", true},
		{" alice@crepes.fr ", "alice@crepes.fr", true},
		{"bob", "", false},
		{"@x.org", "", false},
		{"bob@", "", false},
		{"a@b@c", "", false},
		{"a b@c", "", false},
		{"<a@b>", "", false},
	} {
		got, err := CanonAddress(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("CanonAddress(%q) = %q, %v; want %q ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrBadAddress) {
			t.Errorf("CanonAddress(%q) error %v is not ErrBadAddress", tc.in, err)
		}
	}
}

func TestUsers(t *testing.T) {
	for name, s := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			if err := s.AddUser(ctx, "Bob@hamburger.edu", "pw1", 0); err != nil {
				t.Fatal(err)
			}
			if err := s.AddUser(ctx, "alice@crepes.fr", "secret", 1000); err != nil {
				t.Fatal(err)
			}
			steps := []struct {
				name string
				do   func() error
				want error
			}{
				{"duplicate", func() error { return s.AddUser(ctx, "BOB@hamburger.edu", "x", 0) }, ErrUserExists},
				{"bad address", func() error { return s.AddUser(ctx, "bob", "x", 0) }, ErrBadAddress},
				{"empty password", func() error { return s.AddUser(ctx, "carol@x.org", "", 0) }, errAny},
				{"auth ok, any case", func() error { _, err := s.Authenticate(ctx, "bob@HAMBURGER.edu", "pw1"); return err }, nil},
				{"auth wrong", func() error { _, err := s.Authenticate(ctx, "bob@hamburger.edu", "pw2"); return err }, ErrBadPassword},
				{"auth unknown", func() error { _, err := s.Authenticate(ctx, "eve@hamburger.edu", "pw1"); return err }, ErrNoUser},
				{"passwd", func() error { return s.SetPassword(ctx, "bob@hamburger.edu", "pw2") }, nil},
				{"auth old", func() error { _, err := s.Authenticate(ctx, "bob@hamburger.edu", "pw1"); return err }, ErrBadPassword},
				{"auth new", func() error { _, err := s.Authenticate(ctx, "bob@hamburger.edu", "pw2"); return err }, nil},
				{"passwd unknown", func() error { return s.SetPassword(ctx, "eve@x.org", "a") }, ErrNoUser},
				{"quota", func() error { return s.SetQuota(ctx, "bob@hamburger.edu", 5) }, nil},
				{"negative quota", func() error { return s.SetQuota(ctx, "bob@hamburger.edu", -1) }, errAny},
				{"delete unknown", func() error { return s.DeleteUser(ctx, "eve@x.org") }, ErrNoUser},
			}
			for _, st := range steps {
				err := st.do()
				switch {
				case st.want == nil && err != nil:
					t.Errorf("%s: %v", st.name, err)
				case st.want == errAny && err == nil:
					t.Errorf("%s: no error", st.name)
				case st.want != nil && st.want != errAny && !errors.Is(err, st.want):
					t.Errorf("%s: error %v, want %v", st.name, err, st.want)
				}
			}
			users, err := s.Users(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, u := range users {
				got = append(got, u.Address)
			}
			if !slices.Equal(got, []string{"alice@crepes.fr", "bob@hamburger.edu"}) {
				t.Fatalf("users = %v", got)
			}
			if u, _ := s.User(ctx, "bob@hamburger.edu"); u.Quota != 5 {
				t.Errorf("quota = %d, want 5", u.Quota)
			}
			if err := s.DeleteUser(ctx, "alice@crepes.fr"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.User(ctx, "alice@crepes.fr"); !errors.Is(err, ErrNoUser) {
				t.Errorf("deleted user: %v", err)
			}
		})
	}
}

var errAny = errors.New("any error")

func TestMailboxes(t *testing.T) {
	for name, s := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			if err := s.AddUser(ctx, "bob@hamburger.edu", "pw", 0); err != nil {
				t.Fatal(err)
			}
			boxes, err := s.Mailboxes(ctx, "bob@hamburger.edu")
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"INBOX": UseInbox, "Sent": UseSent, "Drafts": UseDrafts, "Trash": UseTrash, "Junk": UseJunk}
			if len(boxes) != len(want) {
				t.Fatalf("mailboxes = %+v", boxes)
			}
			for _, b := range boxes {
				if want[b.Name] != b.SpecialUse || b.UIDNext != 1 || b.UIDValidity != 1_700_000_000 || b.Messages != 0 {
					t.Errorf("mailbox %+v", b)
				}
			}
			if _, err := s.CreateMailbox(ctx, "bob@hamburger.edu", "Lists", UseNone); err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				user, name string
				want       error
			}{
				{"bob@hamburger.edu", "Lists", ErrMailboxExists},
				{"bob@hamburger.edu", "INBOX", ErrMailboxExists},
				{"eve@hamburger.edu", "X", ErrNoUser},
				{"bob@hamburger.edu", "", errAny},
				{"bob@hamburger.edu", "a\r\nb", errAny},
			} {
				_, err := s.CreateMailbox(ctx, tc.user, tc.name, UseNone)
				if err == nil || (tc.want != errAny && !errors.Is(err, tc.want)) {
					t.Errorf("CreateMailbox(%s, %q) = %v, want %v", tc.user, tc.name, err, tc.want)
				}
			}
			if _, err := s.Mailbox(ctx, "bob@hamburger.edu", "Nope"); !errors.Is(err, ErrNoMailbox) {
				t.Errorf("Mailbox(Nope) = %v", err)
			}
		})
	}
}

func TestMessages(t *testing.T) {
	for name, s := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			const bob = "bob@hamburger.edu"
			if err := s.AddUser(ctx, bob, "pw", 100); err != nil {
				t.Fatal(err)
			}
			date := time.Date(2026, 12, 3, 12, 0, 0, 123, time.UTC)
			bodies := [][]byte{[]byte("Subject: 1\r\n\r\none\r\n"), []byte("Subject: 2\r\n\r\ntwo\r\n")}
			for i, b := range bodies {
				m, err := s.Append(ctx, bob, "INBOX", b, []string{"\\Seen", "\\Seen", "$Label"}, date)
				if err != nil {
					t.Fatal(err)
				}
				if m.UID != uint32(i+1) || m.Size != int64(len(b)) {
					t.Errorf("append %d: %+v", i, m)
				}
			}
			// Over quota: 100 bytes in all.
			if _, err := s.Append(ctx, bob, "INBOX", bytes.Repeat([]byte("x"), 70), nil, date); !errors.Is(err, ErrQuota) {
				t.Errorf("over quota: %v", err)
			}
			if _, err := s.Append(ctx, bob, "Nope", []byte("x"), nil, date); !errors.Is(err, ErrNoMailbox) {
				t.Errorf("no mailbox: %v", err)
			}
			if _, err := s.Append(ctx, bob, "INBOX", []byte("x"), []string{"a b"}, date); err == nil {
				t.Errorf("bad flag accepted")
			}
			msgs, err := s.Messages(ctx, bob, "INBOX")
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != 2 || !slices.Equal(msgs[0].Flags, []string{"$Label", "\\Seen"}) || !msgs[1].InternalDate.Equal(date) {
				t.Fatalf("messages = %+v", msgs)
			}
			used, err := s.Usage(ctx, bob)
			if err != nil || used != int64(len(bodies[0])+len(bodies[1])) {
				t.Errorf("usage = %d, %v", used, err)
			}
			for i, b := range bodies {
				got, err := s.Body(ctx, bob, "INBOX", uint32(i+1))
				if err != nil || !bytes.Equal(got, b) {
					t.Errorf("body %d = %q, %v", i+1, got, err)
				}
			}
			if err := s.SetFlags(ctx, bob, "INBOX", 1, []string{"\\Deleted"}); err != nil {
				t.Fatal(err)
			}
			if err := s.SetFlags(ctx, bob, "INBOX", 9, nil); !errors.Is(err, ErrNoMessage) {
				t.Errorf("SetFlags(9) = %v", err)
			}
			if err := s.Delete(ctx, bob, "INBOX", 1); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Body(ctx, bob, "INBOX", 1); !errors.Is(err, ErrNoMessage) {
				t.Errorf("deleted body: %v", err)
			}
			// UIDs are never reused: the next one is 3.
			m, err := s.Append(ctx, bob, "INBOX", []byte("x"), nil, date)
			if err != nil || m.UID != 3 {
				t.Errorf("append after delete: %+v, %v", m, err)
			}
			box, err := s.Mailbox(ctx, bob, "INBOX")
			if err != nil || box.UIDNext != 4 || box.Messages != 2 {
				t.Errorf("mailbox = %+v, %v", box, err)
			}
			// Deleting the user takes the messages with it.
			if err := s.DeleteUser(ctx, bob); err != nil {
				t.Fatal(err)
			}
			if err := s.AddUser(ctx, bob, "pw", 0); err != nil {
				t.Fatal(err)
			}
			if msgs, _ := s.Messages(ctx, bob, "INBOX"); len(msgs) != 0 {
				t.Errorf("messages of a re-created user: %+v", msgs)
			}
		})
	}
}

// Concurrent appends to one mailbox get distinct, gapless UIDs.
func TestConcurrentAppend(t *testing.T) {
	for name, s := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			if err := s.AddUser(ctx, "bob@hamburger.edu", "pw", 0); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for range 20 {
				wg.Go(func() {
					if _, err := s.Append(ctx, "bob@hamburger.edu", "INBOX", []byte("m"), nil, time.Now()); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			msgs, err := s.Messages(ctx, "bob@hamburger.edu", "INBOX")
			if err != nil {
				t.Fatal(err)
			}
			for i, m := range msgs {
				if m.UID != uint32(i+1) {
					t.Fatalf("uids: %+v", msgs)
				}
			}
			if len(msgs) != 20 {
				t.Fatalf("%d messages", len(msgs))
			}
		})
	}
}

// The store keeps its data across a reopen, in a file whose path holds
// URI syntax.
func TestReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a#b?c%20d")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "mail.db")
	ctx := context.Background()
	s, err := OpenSQLite(ctx, path, Options{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser(ctx, "bob@hamburger.edu", "pw", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "bob@hamburger.edu", "INBOX", []byte("hello"), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = OpenSQLite(ctx, path, Options{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at its path: %v", err)
	}
	if _, err := s.Authenticate(ctx, "bob@hamburger.edu", "pw"); err != nil {
		t.Fatal(err)
	}
	if b, err := s.Body(ctx, "bob@hamburger.edu", "INBOX", 1); string(b) != "hello" {
		t.Fatalf("body = %q, %v", b, err)
	}
}
