package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/applayer/applayer/internal/testkit"
)

// Several front-ends (each its own Postgres store, its own connection
// pool) open one database at once and append to one user's two
// mailboxes concurrently under a quota: the schema is created once, UIDs
// are distinct and gapless in each mailbox, and the quota holds exactly
// across mailboxes.
func TestPostgresFrontEnds(t *testing.T) {
	srv := pgServer(t)
	ctx := testkit.Context(t, 2*time.Minute)
	db, err := srv.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const fronts, each, size, quota = 4, 12, 10, 300
	stores := make([]*Postgres, fronts)
	var wg sync.WaitGroup
	for i := range stores {
		wg.Go(func() {
			s, err := OpenPostgres(ctx, srv.URL(db), Options{BcryptCost: bcrypt.MinCost})
			if err != nil {
				t.Error(err)
				return
			}
			stores[i] = s
		})
	}
	wg.Wait()
	for _, s := range stores {
		if s == nil {
			t.FailNow()
		}
		t.Cleanup(func() { s.Close() })
	}
	const bob = "bob@hamburger.edu"
	if err := stores[0].AddUser(ctx, bob, "pw", quota); err != nil {
		t.Fatal(err)
	}
	var ok, over atomic.Int64
	for i, s := range stores {
		for j := range each {
			box := []string{"INBOX", "Sent"}[(i+j)%2]
			wg.Go(func() {
				_, err := s.Append(ctx, bob, box, make([]byte, size), nil, time.Now())
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, ErrQuota):
					over.Add(1)
				default:
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	if ok.Load() != quota/size || over.Load() != fronts*each-quota/size {
		t.Errorf("%d appended, %d over quota; want %d and %d", ok.Load(), over.Load(), quota/size, fronts*each-quota/size)
	}
	if used, err := stores[1].Usage(ctx, bob); err != nil || used != quota {
		t.Errorf("usage = %d, %v; want %d", used, err, quota)
	}
	total := 0
	for _, box := range []string{"INBOX", "Sent"} {
		msgs, err := stores[2].Messages(ctx, bob, box)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range msgs {
			if m.UID != uint32(i+1) {
				t.Fatalf("%s UIDs not gapless: %+v", box, msgs)
			}
		}
		mb, err := stores[3].Mailbox(ctx, bob, box)
		if err != nil || mb.UIDNext != uint32(len(msgs)+1) {
			t.Errorf("%s: %+v, %v", box, mb, err)
		}
		total += len(msgs)
	}
	if total != quota/size {
		t.Errorf("%d messages stored, want %d", total, quota/size)
	}
}

func TestPostgresReopen(t *testing.T) {
	srv := pgServer(t)
	ctx := testkit.Context(t, time.Minute)
	db, err := srv.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, err := OpenPostgres(ctx, srv.URL(db), Options{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser(ctx, "bob@hamburger.edu", "pw", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "bob@hamburger.edu", "INBOX", []byte("hello"), []string{"\\Seen"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = OpenPostgres(ctx, srv.DSN(db), Options{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Authenticate(ctx, "bob@hamburger.edu", "pw"); err != nil {
		t.Fatal(err)
	}
	if b, err := s.Body(ctx, "bob@hamburger.edu", "INBOX", 1); string(b) != "hello" {
		t.Fatalf("body = %q, %v", b, err)
	}
	if _, err := OpenPostgres(context.Background(), "postgres://%zz", Options{}); err == nil {
		t.Error("a bad DSN was accepted")
	}
}
