package queue

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/mail/mailtest"
)

// TestDeadDestinationBounced runs the queue on a simulated clock against
// a destination whose only MX refuses connections: it is retried on the
// backoff schedule (RetryMin doubling up to RetryMax) until the message
// outlives Lifetime, then the sender gets a valid DSN (Status 4.4.7,
// the last error in Diagnostic-Code) and the spool is empty.
func TestDeadDestinationBounced(t *testing.T) {
	s := newStore(t, "alice@crepes.fr")
	// A port nothing listens on: bind one, close it.
	ln, err := net.Listen("tcp", "127.0.0.6:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	res := mailtest.DNS(t, "dead.example. 60 IN MX 10 mx.dead.example.", "mx.dead.example. 60 IN A 127.0.0.6")

	clock := testkit.NewClock(time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC))
	remote := &Remote{Resolver: &DNSResolver{Server: res}, Hostname: "mail.crepes.fr", Port: port, Timeout: 2 * time.Second}
	local := Local{Store: s}
	var mu sync.Mutex
	var attempts []time.Time
	d := DelivererFunc(func(ctx context.Context, env Envelope, rcpt string, body []byte) error {
		if strings.HasSuffix(rcpt, "@crepes.fr") {
			return local.Deliver(ctx, env, rcpt, body)
		}
		mu.Lock()
		attempts = append(attempts, clock.Now())
		mu.Unlock()
		return remote.Deliver(ctx, env, rcpt, body)
	})
	const lifetime = 8 * time.Hour
	q, err := New(Config{Dir: t.TempDir(), RetryMin: 5 * time.Minute, RetryMax: time.Hour, Lifetime: lifetime, Hostname: "mail.crepes.fr"},
		service.Deps{Logger: testkit.Logger(t), Now: clock.Now}, d)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, q)
	start := clock.Now()
	id, err := q.Enqueue(context.Background(), "alice@crepes.fr", []string{"bob@dead.example"}, []byte("From: alice@crepes.fr\r\nSubject: lost\r\n\r\nHi\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	// Step the clock to each scheduled retry until the message is gone.
	for i := 0; ; i++ {
		if i > 100 {
			t.Fatal("no bounce after 100 attempts")
		}
		n := i + 1
		waitFor(t, "attempt "+strconv.Itoa(n), func() bool {
			mu.Lock()
			defer mu.Unlock()
			if len(attempts) < n {
				return false
			}
			l := q.List()
			return len(l) == 0 || l[0].ID == id && l[0].Attempts == n
		})
		l := q.List()
		if len(l) == 0 || l[0].ID != id {
			break
		}
		if !strings.Contains(l[0].LastError, "connect to mx.dead.example") {
			t.Fatalf("last error: %q", l[0].LastError)
		}
		clock.Advance(l[0].Next.Sub(clock.Now()))
		q.Wake()
	}
	waitFor(t, "the DSN", func() bool { return q.Len() == 0 && len(inbox(t, s, "alice@crepes.fr")) == 1 })

	// The schedule: 5, 10, 20, 40 minutes, then hourly, until 8 hours.
	var gaps []time.Duration
	for i := 1; i < len(attempts); i++ {
		gaps = append(gaps, attempts[i].Sub(attempts[i-1]))
	}
	want := []time.Duration{5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 40 * time.Minute}
	for len(want) < len(gaps) {
		want = append(want, time.Hour)
	}
	if len(gaps) != len(want) || attempts[len(attempts)-1].Sub(start) < lifetime || attempts[len(attempts)-2].Sub(start) >= lifetime {
		t.Fatalf("attempts at %v after start: gaps %v", attempts[len(attempts)-1].Sub(start), gaps)
	}
	for i := range gaps {
		if gaps[i] != want[i] {
			t.Fatalf("gaps %v, want %v", gaps, want)
		}
	}
	dsn := inbox(t, s, "alice@crepes.fr")[0]
	blocks := checkDSN(t, dsn, id)
	if len(blocks) != 1 {
		t.Fatalf("DSN blocks: %v", blocks)
	}
	b := blocks[0]
	if b["Final-Recipient"] != "rfc822; bob@dead.example" || b["Action"] != "failed" || b["Status"] != "4.4.7" ||
		b["Remote-MTA"] != "dns; mx.dead.example" || !strings.Contains(b["Diagnostic-Code"], "connection refused") {
		t.Errorf("DSN block: %v", b)
	}
	if !strings.Contains(dsn, "Subject: lost") {
		t.Error("the DSN does not return the message")
	}
}
