package imapd

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/mail/mailhub"
	"github.com/applayer/applayer/mail/store"
	"github.com/applayer/applayer/mail/store/pgtest"
)

func testEnvelope(subject string) *imap.Envelope {
	return &imap.Envelope{Subject: subject, From: []imap.Address{{Name: "Alice", Mailbox: "alice", Host: "crepes.fr"}}}
}

// The cache's bookkeeping: hits, LRU eviction of whole mailboxes, a
// mailbox too big for it, and the drops the server makes.
func TestEnvCache(t *testing.T) {
	a := boxKey{"bob@hamburger.edu", "INBOX", 7}
	b := boxKey{"bob@hamburger.edu", "Lists", 8}
	aNew := boxKey{"bob@hamburger.edu", "INBOX", 9} // INBOX made again
	one := envSize(testEnvelope("s01"))
	type step struct {
		op   string // put, get, forget, forgetBox, forgetBelow
		key  boxKey
		uids []uint32
		want int // get: hits; else: entries held after the step
	}
	for _, tc := range []struct {
		name  string
		max   int64
		steps []step
	}{
		{"hits and misses", 10 * one, []step{
			{"put", a, []uint32{1, 2, 3}, 3},
			{"get", a, []uint32{1, 2, 3, 4}, 3},
			{"get", b, []uint32{1}, 0},
			{"get", aNew, []uint32{1, 2}, 0}, // another incarnation: nothing
		}},
		{"least recently used mailbox goes", 4 * one, []step{
			{"put", a, []uint32{1, 2}, 2},
			{"put", b, []uint32{1, 2}, 4},
			{"get", a, []uint32{1}, 1},    // a is now the more recent
			{"put", aNew, []uint32{1}, 3}, // b (2 entries) goes
			{"get", b, []uint32{1, 2}, 0},
			{"get", a, []uint32{1, 2}, 2},
		}},
		{"one mailbox larger than the cache stops growing", 3 * one, []step{
			{"put", b, []uint32{1}, 1},
			{"put", a, []uint32{1, 2, 3, 4, 5}, 3}, // b goes, then a is full
			{"get", a, []uint32{1, 2, 3, 4, 5}, 3},
		}},
		{"forget one, forget mailboxes", 10 * one, []step{
			{"put", a, []uint32{1, 2}, 2},
			{"put", b, []uint32{1}, 3},
			{"put", boxKey{"bob@hamburger.edu", "Lists/go", 10}, []uint32{1}, 4},
			{"put", boxKey{"bob@hamburger.edu", "Listserv", 11}, []uint32{1}, 5},
			{"put", boxKey{"alice@hamburger.edu", "Lists", 12}, []uint32{1}, 6},
			{"forget", a, []uint32{2}, 5},
			{"get", a, []uint32{1, 2}, 1},
			{"forgetBelow", b, nil, 3},  // Lists and Lists/go, not Listserv nor Alice's
			{"forgetBox", aNew, nil, 2}, // every INBOX of Bob's
		}},
		{"off", 0, []step{
			{"put", a, []uint32{1}, 0},
			{"get", a, []uint32{1}, 0},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newEnvCache(tc.max)
			for i, s := range tc.steps {
				got := 0
				switch s.op {
				case "put":
					envs := make([]*imap.Envelope, len(s.uids))
					for j, u := range s.uids {
						envs[j] = testEnvelope(fmt.Sprintf("s%02d", u))
					}
					c.put(s.key, s.uids, envs)
				case "get":
					out := make([]*imap.Envelope, len(s.uids))
					got = c.get(s.key, s.uids, out)
					for j, e := range out {
						if e != nil && e.Subject != fmt.Sprintf("s%02d", s.uids[j]) {
							t.Errorf("step %d: uid %d has %q", i, s.uids[j], e.Subject)
						}
					}
				case "forget":
					c.forget(s.key, s.uids[0])
				case "forgetBox", "forgetBelow":
					c.forgetBox(s.key.user, s.key.box, s.op == "forgetBelow")
				}
				if s.op != "get" {
					got = c.entries()
				}
				if got != s.want {
					t.Errorf("step %d (%s %v): %d, want %d", i, s.op, s.uids, got, s.want)
				}
				if used := c.bytesUsed(); used != int64(c.entries())*one || used > max(tc.max, 0) {
					t.Errorf("step %d: %d bytes used for %d entries (max %d)", i, used, c.entries(), tc.max)
				}
			}
		})
	}
}

// Without a cache (EnvelopeCacheBytes < 0) every lookup misses, and
// clears what the caller's slice held from its last batch.
func TestEnvCacheOff(t *testing.T) {
	var c *envCache
	out := []*imap.Envelope{testEnvelope("stale")}
	if n := c.get(boxKey{}, []uint32{1}, out); n != 0 || out[0] != nil {
		t.Errorf("nil cache: %d hits, out[0] = %v", n, out[0])
	}
	c.put(boxKey{}, []uint32{1}, out)
	c.forget(boxKey{}, 1)
	c.forgetBox("bob@hamburger.edu", "INBOX", true)
	if c.bytesUsed() != 0 {
		t.Error("nil cache uses bytes")
	}
}

// entries counts what the cache holds.
func (c *envCache) entries() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, b := range c.boxes {
		n += len(b.envs)
	}
	return n
}

// The cache stays exact when the mailbox changes under it: a mailbox
// deleted and made again behind the server's back (straight in the
// store, within the same second: the store's clock stands still) shows
// its own messages, not the cached ones of its namesake; an expunge in
// one session and a delivery reach the envelopes another session fetches.
func TestEnvelopeCacheExact(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_796_000_000, 0)
	raw, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "mail.db"), store.Options{BcryptCost: bcrypt.MinCost, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	const bob = "bob@hamburger.edu"
	if err := raw.AddUser(ctx, bob, "s3cret", 0); err != nil {
		t.Fatal(err)
	}
	hub := mailhub.New()
	st := hub.Wrap(raw)
	srv, addr := serveStore(t, st, hub, time.Hour)
	if _, err := st.CreateMailbox(ctx, bob, "Lists", store.UseNone); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"one", "two", "three"} {
		appendSubject(t, st, "Lists", s)
	}
	a, b := dial(t, addr), dial(t, addr)
	for _, c := range []*client{a, b} {
		c.must("LOGIN bob@hamburger.edu s3cret")
		c.must("SELECT Lists")
	}
	contains(t, "first fetch", a.must("FETCH 1:* (ENVELOPE)"), `"one"`, `"two"`, `"three"`)
	if srv.envs.bytesUsed() == 0 {
		t.Fatal("nothing cached")
	}
	// Expunged in A: B learns at NOOP.
	a.must(`STORE 2 +FLAGS.SILENT (\Deleted)`)
	a.must("EXPUNGE")
	contains(t, "B sees the expunge", b.must("NOOP"), "* 2 EXPUNGE")
	contains(t, "B's envelopes", b.must("FETCH 1:* (ENVELOPE)"), `* 1 FETCH (UID 1 ENVELOPE (NIL "one"`, `* 2 FETCH (UID 3 ENVELOPE (NIL "three"`)
	// Delivered while B is selected.
	appendSubject(t, st, "Lists", "four")
	contains(t, "B sees the delivery", b.must("NOOP"), "* 3 EXISTS")
	contains(t, "B's new envelope", b.must("FETCH 3 (ENVELOPE)"), `"four"`)

	// Deleted and made again in the store, not through the server: its
	// cache is not told.
	a.must("UNSELECT")
	b.must("UNSELECT")
	if err := st.DeleteMailbox(ctx, bob, "Lists"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateMailbox(ctx, bob, "Lists", store.UseNone); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"uno", "dos"} {
		appendSubject(t, st, "Lists", s)
	}
	a.must("SELECT Lists")
	f := joined(a.must("FETCH 1:* (ENVELOPE)"))
	if !strings.Contains(f, `"uno"`) || !strings.Contains(f, `"dos"`) || strings.Contains(f, `"one"`) {
		t.Errorf("re-created mailbox shows %s", f)
	}
}

// serveStore starts a plain-IMAP server (loopback logins allowed) over
// st and returns it and its address.
func serveStore(t *testing.T, st store.Store, hub *mailhub.Hub, rescan time.Duration) (*Server, string) {
	t.Helper()
	srv, err := New(Config{Addr: "127.0.0.1:0", InsecureAuthLoopback: true, Rescan: rescan, AuthFailDelay: time.Millisecond}, service.Deps{Logger: testkit.Logger(t)}, st, hub)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, srv)
	return srv, srv.Addrs()[0].String()
}

func appendSubject(t *testing.T, st store.Store, box, subject string) {
	t.Helper()
	msg := "From: Alice <alice@crepes.fr>\r\nSubject: " + subject + "\r\n\r\nx\r\n"
	if _, err := st.Append(context.Background(), "bob@hamburger.edu", box, []byte(msg), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// Two front-ends on one PostgreSQL database, each with its own cache and
// hub (as two processes would be): what one changes, the other's cache
// cannot be told of, and still serves right.
func TestEnvelopeCachePostgres(t *testing.T) {
	pg := pgtest.Start(t)
	ctx := testkit.Context(t, time.Minute)
	db, err := pg.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var addrs [2]string
	for i := range addrs {
		st, err := store.OpenPostgres(ctx, pg.DSN(db), store.Options{BcryptCost: bcrypt.MinCost})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		if i == 0 {
			if err := st.AddUser(ctx, "bob@hamburger.edu", "s3cret", 0); err != nil {
				t.Fatal(err)
			}
		}
		hub := mailhub.New()
		_, addrs[i] = serveStore(t, hub.Wrap(st), hub, 50*time.Millisecond)
	}
	one, two := dial(t, addrs[0]), dial(t, addrs[1])
	for _, c := range []*client{one, two} {
		c.must("LOGIN bob@hamburger.edu s3cret")
	}
	two.must("CREATE Lists")
	two.appendMsg("Lists", "", "Subject: one\r\n\r\nx\r\n")
	two.appendMsg("Lists", "", "Subject: two\r\n\r\nx\r\n")
	one.must("SELECT Lists")
	contains(t, "one's first fetch", one.must("FETCH 1:* (ENVELOPE)"), `"one"`, `"two"`)
	// Two expunges UID 1; one learns by its rescan.
	two.must("SELECT Lists")
	two.must(`STORE 1 +FLAGS.SILENT (\Deleted)`)
	two.must("EXPUNGE")
	time.Sleep(100 * time.Millisecond)
	contains(t, "one sees the expunge", one.must("NOOP"), "* 1 EXPUNGE")
	contains(t, "one's envelopes", one.must("FETCH 1:* (ENVELOPE)"), `* 1 FETCH (UID 2 ENVELOPE (NIL "two"`)
	// Two deletes and re-creates the mailbox, within a second.
	one.must("UNSELECT")
	two.must("UNSELECT")
	two.must("DELETE Lists")
	two.must("CREATE Lists")
	two.appendMsg("Lists", "", "Subject: uno\r\n\r\nx\r\n")
	two.appendMsg("Lists", "", "Subject: dos\r\n\r\nx\r\n")
	one.must("SELECT Lists")
	f := joined(one.must("FETCH 1:* (ENVELOPE)"))
	if !strings.Contains(f, `"uno"`) || !strings.Contains(f, `"dos"`) || strings.Contains(f, `"two"`) {
		t.Errorf("re-created mailbox, from the other front-end: %s", f)
	}
}
