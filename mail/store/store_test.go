package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/mail/msgmeta"
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
			validities := map[uint32]bool{}
			for _, b := range boxes {
				if want[b.Name] != b.SpecialUse || b.UIDNext != 1 || b.UIDValidity < 1_700_000_000 || b.Messages != 0 {
					t.Errorf("mailbox %+v", b)
				}
				validities[b.UIDValidity] = true
			}
			if len(validities) != len(boxes) {
				t.Errorf("mailboxes share a UIDVALIDITY: %+v", boxes)
			}
			lists, err := s.CreateMailbox(ctx, "bob@hamburger.edu", "Lists", UseNone)
			if err != nil {
				t.Fatal(err)
			}
			// Deleted and made again within the same second (the test's
			// clock stands still): a new UIDVALIDITY all the same (RFC
			// 9051 section 2.3.1.1), larger than any before.
			if err := s.DeleteMailbox(ctx, "bob@hamburger.edu", "Lists"); err != nil {
				t.Fatal(err)
			}
			again, err := s.CreateMailbox(ctx, "bob@hamburger.edu", "Lists", UseNone)
			if err != nil {
				t.Fatal(err)
			}
			if again.UIDValidity <= lists.UIDValidity {
				t.Errorf("Lists re-created with UIDVALIDITY %d, first was %d", again.UIDValidity, lists.UIDValidity)
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

func TestMailboxLifecycle(t *testing.T) {
	for name, s := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			const u = "bob@hamburger.edu"
			if err := s.AddUser(ctx, u, "pw", 0); err != nil {
				t.Fatal(err)
			}
			for _, n := range []string{"Lists", "Lists/go", "Lists/go/nuts", "Listsx"} {
				if _, err := s.CreateMailbox(ctx, u, n, UseNone); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := s.Append(ctx, u, "Lists/go", []byte("Subject: x\r\n\r\nx\r\n"), nil, time.Now()); err != nil {
				t.Fatal(err)
			}
			if err := s.RenameMailbox(ctx, u, "Lists", "Groups"); err != nil {
				t.Fatal(err)
			}
			var names []string
			boxes, _ := s.Mailboxes(ctx, u)
			for _, b := range boxes {
				names = append(names, b.Name)
			}
			want := []string{"Drafts", "Groups", "Groups/go", "Groups/go/nuts", "INBOX", "Junk", "Listsx", "Sent", "Trash"}
			if !slices.Equal(names, want) {
				t.Fatalf("after rename: %v, want %v", names, want)
			}
			if b, err := s.Mailbox(ctx, u, "Groups/go"); err != nil || b.Messages != 1 {
				t.Errorf("Groups/go = %+v, %v; want its message kept", b, err)
			}
			for _, tc := range []struct {
				op   string
				err  error
				want error
			}{
				{"rename missing", s.RenameMailbox(ctx, u, "Nope", "X"), ErrNoMailbox},
				{"rename onto existing", s.RenameMailbox(ctx, u, "Groups", "Listsx"), ErrMailboxExists},
				{"rename INBOX", s.RenameMailbox(ctx, u, "INBOX", "Old"), ErrInbox},
				{"rename to INBOX", s.RenameMailbox(ctx, u, "Listsx", "inbox"), ErrInbox},
				{"delete INBOX", s.DeleteMailbox(ctx, u, "INBOX"), ErrInbox},
				{"delete missing", s.DeleteMailbox(ctx, u, "Nope"), ErrNoMailbox},
				{"delete", s.DeleteMailbox(ctx, u, "Groups/go"), nil},
				{"deleted", func() error { _, err := s.Mailbox(ctx, u, "Groups/go"); return err }(), ErrNoMailbox},
			} {
				if !errors.Is(tc.err, tc.want) {
					t.Errorf("%s: %v, want %v", tc.op, tc.err, tc.want)
				}
			}
			subs, err := s.Subscriptions(ctx, u)
			if err != nil || !slices.Equal(subs, []string{"Drafts", "INBOX", "Junk", "Sent", "Trash"}) {
				t.Errorf("new user's subscriptions = %v, %v", subs, err)
			}
			for _, step := range []struct {
				name string
				on   bool
			}{{"Groups", true}, {"Groups", true}, {"Junk", false}, {"Never/Created", true}} {
				if err := s.Subscribe(ctx, u, step.name, step.on); err != nil {
					t.Fatal(err)
				}
			}
			subs, _ = s.Subscriptions(ctx, u)
			if !slices.Equal(subs, []string{"Drafts", "Groups", "INBOX", "Never/Created", "Sent", "Trash"}) {
				t.Errorf("subscriptions = %v", subs)
			}
			if err := s.Subscribe(ctx, "eve@hamburger.edu", "X", true); !errors.Is(err, ErrNoUser) {
				t.Errorf("Subscribe for unknown user = %v", err)
			}
		})
	}
}

func TestBodies(t *testing.T) {
	for name, s := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			const u = "bob@hamburger.edu"
			if err := s.AddUser(ctx, u, "pw", 0); err != nil {
				t.Fatal(err)
			}
			var uids []uint32
			for i := range 700 { // more than one batch of the IN list
				m, err := s.Append(ctx, u, "INBOX", []byte{byte(i), byte(i >> 8)}, nil, time.Now())
				if err != nil {
					t.Fatal(err)
				}
				uids = append(uids, m.UID)
			}
			s.Delete(ctx, u, "INBOX", uids[3])
			got, err := s.Bodies(ctx, u, "INBOX", append(uids, 9999), nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 699 || got[uids[3]] != nil || !bytes.Equal(got[uids[600]], []byte{600 & 255, 600 >> 8}) {
				t.Errorf("Bodies: %d bodies, [3]=%v [600]=%v", len(got), got[uids[3]], got[uids[600]])
			}
			if _, err := s.Bodies(ctx, u, "Nope", uids, nil); !errors.Is(err, ErrNoMailbox) {
				t.Errorf("Bodies(Nope) = %v", err)
			}
			if _, err := s.Bodies(ctx, "eve@hamburger.edu", "INBOX", uids, nil); !errors.Is(err, ErrNoUser) {
				t.Errorf("Bodies(eve) = %v", err)
			}
			if _, err := s.Body(ctx, "eve@hamburger.edu", "INBOX", 1); !errors.Is(err, ErrNoUser) {
				t.Errorf("Body(eve) = %v", err)
			}
			if _, err := s.Body(ctx, u, "Nope", 1); !errors.Is(err, ErrNoMailbox) {
				t.Errorf("Body(Nope) = %v", err)
			}
			if _, err := s.Body(ctx, u, "INBOX", uids[3]); !errors.Is(err, ErrNoMessage) {
				t.Errorf("Body(deleted) = %v", err)
			}
		})
	}
}

// Sparse UID sets are read by list, dense ones by range; both find
// exactly the UIDs asked for.
func TestBodiesSparse(t *testing.T) {
	for name, s := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			const u = "bob@hamburger.edu"
			if err := s.AddUser(ctx, u, "pw", 0); err != nil {
				t.Fatal(err)
			}
			for i := range 50 {
				if _, err := s.Append(ctx, u, "INBOX", []byte{byte(i)}, nil, time.Now()); err != nil {
					t.Fatal(err)
				}
			}
			var buf Buffer // reused batch after batch, as the readers do
			for _, want := range [][]uint32{{1, 50}, {2, 4, 6}, {10, 11, 12, 14}, {49}} {
				got, err := s.Bodies(ctx, u, "INBOX", append(slices.Clone(want), 1000), &buf)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(want) {
					t.Errorf("Bodies(%v): %d bodies", want, len(got))
				}
				for _, uid := range want {
					if !bytes.Equal(got[uid], []byte{byte(uid - 1)}) {
						t.Errorf("Bodies(%v)[%d] = %v", want, uid, got[uid])
					}
				}
			}
		})
	}
}

const envMsg = "From: Alice <alice@crepes.fr>\r\nTo: bob@hamburger.edu\r\nSubject: Envelope test\r\nMessage-ID: <e1@crepes.fr>\r\n\r\nhello\r\n"

// The envelope is parsed when a message is stored; rows stored before
// the column existed (NULL there) have theirs parsed when read.
func TestEnvelopes(t *testing.T) {
	for name, s := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			const u = "bob@hamburger.edu"
			if err := s.AddUser(ctx, u, "pw", 0); err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				if _, err := s.Append(ctx, u, "INBOX", []byte(strings.Replace(envMsg, "test", fmt.Sprint(i+1), 1)), nil, time.Now()); err != nil {
					t.Fatal(err)
				}
			}
			// Message 2 as if stored by an older version.
			var err error
			switch s := s.(type) {
			case *SQLite:
				_, err = s.db.Exec(`UPDATE messages SET envelope = NULL WHERE uid = 2`)
			case *Postgres:
				_, err = s.db.Exec(ctx, `UPDATE messages SET envelope = NULL WHERE uid = 2`)
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Envelopes(ctx, u, "INBOX", []uint32{1, 2, 3, 99})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 3 {
				t.Fatalf("%d envelopes", len(got))
			}
			for uid := uint32(1); uid <= 3; uid++ {
				env, err := msgmeta.DecodeEnvelope(got[uid])
				if err != nil {
					t.Fatal(err)
				}
				if env.Subject != fmt.Sprintf("Envelope %d", uid) || env.MessageID != "e1@crepes.fr" || env.From[0].Host != "crepes.fr" {
					t.Errorf("uid %d: %+v", uid, env)
				}
			}
			if _, err := s.Envelopes(ctx, u, "Nope", []uint32{1}); !errors.Is(err, ErrNoMailbox) {
				t.Errorf("Envelopes(Nope) = %v", err)
			}
		})
	}
}

// A database made before the envelope column gets it when opened.
func TestSQLiteAddsEnvelopeColumn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	ctx := context.Background()
	s, err := OpenSQLite(ctx, path, Options{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser(ctx, "bob@hamburger.edu", "pw", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "bob@hamburger.edu", "INBOX", []byte(envMsg), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`ALTER TABLE messages DROP COLUMN envelope`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = OpenSQLite(ctx, path, Options{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Envelopes(ctx, "bob@hamburger.edu", "INBOX", []uint32{1})
	if err != nil {
		t.Fatal(err)
	}
	if env, err := msgmeta.DecodeEnvelope(got[1]); err != nil || env.Subject != "Envelope test" {
		t.Fatalf("envelope %+v, %v", env, err)
	}
}

// A Buffer hands out copies that stay intact until it is reset, and
// reuses its blocks batch after batch.
func TestBuffer(t *testing.T) {
	var b Buffer
	for _, tc := range []struct {
		name   string
		sizes  []int
		blocks int // blocks held after the batch
	}{
		{"small ones share a block", []int{100, 200, 3000}, 1},
		{"a batch over a block takes two", []int{bufferBlock / 8, bufferBlock / 4, bufferBlock / 4, bufferBlock / 4, bufferBlock / 4}, 2},
		{"reused: no new block", []int{10, 20}, 2},
		{"a large one is its own allocation", []int{bufferBlock / 2, 5}, 2},
		{"nil stays nil", nil, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.reset()
			var got [][]byte
			for i, n := range tc.sizes {
				got = append(got, b.copy(bytes.Repeat([]byte{byte(i + 1)}, n)))
			}
			for i, n := range tc.sizes {
				if !bytes.Equal(got[i], bytes.Repeat([]byte{byte(i + 1)}, n)) || cap(got[i]) != n {
					t.Errorf("value %d (%d bytes) changed or has spare capacity %d", i, n, cap(got[i]))
				}
			}
			if len(tc.sizes) == 0 && b.copy(nil) != nil {
				t.Error("copy(nil) != nil")
			}
			if len(b.blocks) != tc.blocks || b.Bytes() != tc.blocks*bufferBlock {
				t.Errorf("%d blocks (%d bytes), want %d", len(b.blocks), b.Bytes(), tc.blocks)
			}
		})
	}
}
