package queue

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-message"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/mail/store"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

func newStore(t *testing.T, users ...string) store.Store {
	t.Helper()
	s, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "mail.db"), store.Options{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, u := range users {
		if err := s.AddUser(context.Background(), u, "pw", 0); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func deps(t *testing.T) service.Deps { return service.Deps{Logger: testkit.Logger(t)} }

func inbox(t *testing.T, s store.Store, user string) []string {
	t.Helper()
	ctx := context.Background()
	msgs, err := s.Messages(ctx, user, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		b, err := s.Body(ctx, user, "INBOX", m.UID)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSpoolFormat(t *testing.T) {
	env := Envelope{ID: "abc", From: "", To: []string{"a@x", "b@y"}, Received: time.Unix(5, 6)}
	r := bufio.NewReader(bytes.NewReader(append(encodeHeader(env), "body\r\n"...)))
	got, _, err := parseSpool(r)
	if err != nil {
		t.Fatal(err)
	}
	rest, _ := r.ReadString(0)
	if got.ID != "abc" || got.From != "" || strings.Join(got.To, ",") != "a@x,b@y" || !got.Received.Equal(env.Received) || rest != "body\r\n" {
		t.Fatalf("round trip: %+v %q", got, rest)
	}
	for _, bad := range []string{"", "x\n\n", "applayer-spool 1\nid a\n\n", "applayer-spool 1\nid a\nto b\nwhat c\n\n", "applayer-spool 1\nid a\nto b\nreceived x\n\n", "applayer-spool 1\nid a\nto b\n"} {
		if _, _, err := parseSpool(bufio.NewReader(strings.NewReader(bad))); err == nil {
			t.Errorf("parseSpool(%q) accepted", bad)
		}
	}
}

func TestEnqueueDeliversLocally(t *testing.T) {
	s := newStore(t, "bob@hamburger.edu", "carol@hamburger.edu")
	dir := t.TempDir()
	q, err := New(Config{Dir: dir}, deps(t), Local{Store: s})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, q)
	ctx := context.Background()
	id, err := q.Enqueue(ctx, "alice@crepes.fr", []string{"bob@hamburger.edu", "carol@hamburger.edu"}, []byte("Subject: hi\r\n\r\nhello\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery", func() bool { return q.Len() == 0 })
	for _, u := range []string{"bob@hamburger.edu", "carol@hamburger.edu"} {
		if got := inbox(t, s, u); len(got) != 1 || got[0] != "Subject: hi\r\n\r\nhello\r\n" {
			t.Errorf("%s inbox = %q", u, got)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, id+msgSuffix)); !os.IsNotExist(err) {
		t.Errorf("spool file left after delivery: %v", err)
	}
	if _, err := q.Enqueue(ctx, "a@b", nil, []byte("x")); err == nil {
		t.Error("no recipients accepted")
	}
	if _, err := q.Enqueue(ctx, "a@b\r\nto x@y", []string{"b@c"}, []byte("x")); err == nil {
		t.Error("CRLF in an address accepted")
	}
}

// A message spooled before a restart (the queue not running: the state a
// kill -9 leaves) is delivered by the next start, and temporary files a
// crash left are removed.
func TestSpoolSurvivesRestart(t *testing.T) {
	s := newStore(t, "bob@hamburger.edu")
	dir := t.TempDir()
	q1, err := New(Config{Dir: dir}, deps(t), Local{Store: s})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := q1.Enqueue(context.Background(), "alice@crepes.fr", []string{"bob@hamburger.edu"}, []byte{'m', byte('0' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, tmpPrefix+"123"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	q2, err := New(Config{Dir: dir}, deps(t), Local{Store: s})
	if err != nil {
		t.Fatal(err)
	}
	if q2.Len() != 3 {
		t.Fatalf("reloaded %d messages, want 3", q2.Len())
	}
	if _, err := os.Stat(filepath.Join(dir, tmpPrefix+"123")); !os.IsNotExist(err) {
		t.Errorf("temporary file not cleaned: %v", err)
	}
	testkit.Start(t, q2)
	waitFor(t, "delivery", func() bool { return q2.Len() == 0 })
	if got := inbox(t, s, "bob@hamburger.edu"); len(got) != 3 {
		t.Fatalf("inbox = %q", got)
	}
}

// Temporary failures are retried with backoff and only the recipients
// still to do are tried again; a permanent failure is bounced to the
// sender in a DSN, and a bounce that fails is kept in failed/.
func TestRetryAndFailure(t *testing.T) {
	s := newStore(t, "bob@hamburger.edu", "alice@crepes.fr")
	var mu sync.Mutex
	tries := map[string]int{}
	local := Local{Store: s}
	d := DelivererFunc(func(ctx context.Context, env Envelope, rcpt string, body []byte) error {
		mu.Lock()
		tries[rcpt]++
		n := tries[rcpt]
		mu.Unlock()
		if rcpt == "flaky@hamburger.edu" {
			if n < 3 {
				return errors.New("disk busy")
			}
			rcpt = "bob@hamburger.edu"
		}
		return local.Deliver(ctx, env, rcpt, body)
	})
	dir := t.TempDir()
	q, err := New(Config{Dir: dir, RetryMin: 10 * time.Millisecond, RetryMax: 20 * time.Millisecond}, deps(t), d)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, q)
	id, err := q.Enqueue(context.Background(), "alice@crepes.fr", []string{"bob@hamburger.edu", "flaky@hamburger.edu", "nobody@hamburger.edu"}, []byte("body"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery", func() bool { return q.Len() == 0 })
	mu.Lock()
	if tries["bob@hamburger.edu"] != 1 || tries["flaky@hamburger.edu"] != 3 || tries["nobody@hamburger.edu"] != 1 {
		t.Errorf("tries = %v", tries)
	}
	mu.Unlock()
	if got := inbox(t, s, "bob@hamburger.edu"); len(got) != 2 {
		t.Errorf("inbox = %q (bob once, flaky once)", got)
	}
	failed, err := q.Failed()
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 0 {
		t.Errorf("failed = %+v, want none (the bounce was delivered)", failed)
	}
	dsn := inbox(t, s, "alice@crepes.fr")
	if len(dsn) != 1 {
		t.Fatalf("alice's inbox: %d messages, want the DSN", len(dsn))
	}
	rep := checkDSN(t, dsn[0], id)
	if len(rep) != 1 || rep[0]["Final-Recipient"] != "rfc822; nobody@hamburger.edu" || rep[0]["Status"] != "5.1.1" || rep[0]["Action"] != "failed" {
		t.Errorf("DSN recipients: %v", rep)
	}

	// A bounce that cannot be delivered is not bounced again: failed/.
	id2, err := q.Enqueue(context.Background(), "", []string{"nobody@hamburger.edu"}, []byte("Subject: a bounce\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "double bounce", func() bool { return q.Len() == 0 })
	failed, err = q.Failed()
	if err != nil {
		t.Fatal(err)
	}
	if len(failed) != 1 || failed[0].ID != id2 || strings.Join(failed[0].To, ",") != "nobody@hamburger.edu" {
		t.Errorf("failed = %+v", failed)
	}
}

// Backoff doubles from RetryMin up to RetryMax.
func TestBackoff(t *testing.T) {
	clock := testkit.NewClock(time.Unix(1000, 0))
	q := &Queue{cfg: Config{RetryMin: time.Minute, RetryMax: time.Hour}, now: clock.Now, wake: make(chan struct{}, 1)}
	e := &entry{}
	for _, want := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour} {
		q.reschedule(e, nil)
		if got := e.next.Sub(clock.Now()); got != want {
			t.Fatalf("attempt %d: backoff %v, want %v", e.attempts, got, want)
		}
	}
}

// checkDSN parses a delivery status notification (RFC 3464) with
// go-message and returns its per-recipient blocks; it fails the test
// unless the DSN is a multipart/report of report-type delivery-status with
// a text part, a message/delivery-status part naming the queue id and the
// returned message.
func checkDSN(t *testing.T, raw, id string) []map[string]string {
	t.Helper()
	ent, err := message.Read(strings.NewReader(raw))
	if err != nil {
		t.Fatalf("DSN: %v", err)
	}
	mt, params, _ := ent.Header.ContentType()
	if mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("DSN Content-Type %s %v", mt, params)
	}
	if !strings.Contains(ent.Header.Get("From"), "MAILER-DAEMON@") || ent.Header.Get("Auto-Submitted") != "auto-replied" {
		t.Errorf("DSN header: From %q Auto-Submitted %q", ent.Header.Get("From"), ent.Header.Get("Auto-Submitted"))
	}
	mr := ent.MultipartReader()
	var types []string
	var blocks []map[string]string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("DSN part: %v", err)
		}
		pt, _, _ := p.Header.ContentType()
		types = append(types, pt)
		if pt != "message/delivery-status" {
			continue
		}
		b, _ := io.ReadAll(p.Body)
		groups := strings.Split(strings.TrimSpace(strings.ReplaceAll(string(b), "\r\n", "\n")), "\n\n")
		if !strings.Contains(groups[0], "Reporting-MTA: dns; ") || !strings.Contains(groups[0], id) {
			t.Errorf("per-message fields: %q", groups[0])
		}
		for _, g := range groups[1:] {
			m := map[string]string{}
			for _, line := range strings.Split(g, "\n") {
				k, v, _ := strings.Cut(line, ": ")
				m[k] = v
			}
			blocks = append(blocks, m)
		}
	}
	if strings.Join(types, ",") != "text/plain,message/delivery-status,message/rfc822" {
		t.Errorf("DSN parts: %v", types)
	}
	return blocks
}
