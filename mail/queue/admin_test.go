package queue

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

// The admin endpoints and the offline spool functions behind `applayer
// mail queue list|flush|delete`.
func TestAdmin(t *testing.T) {
	var tries atomic.Int32
	d := DelivererFunc(func(ctx context.Context, env Envelope, rcpt string, body []byte) error {
		tries.Add(1)
		return errors.New("destination down")
	})
	dir := t.TempDir()
	q, err := New(Config{Dir: dir, RetryMin: time.Hour, RetryMax: time.Hour}, service.Deps{Logger: testkit.Logger(t)}, d)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, q)
	id1, _ := q.Enqueue(context.Background(), "alice@crepes.fr", []string{"bob@dead.example"}, []byte("Subject: 1\r\n\r\nx\r\n"))
	id2, _ := q.Enqueue(context.Background(), "", []string{"carol@dead.example"}, []byte("Subject: 2\r\n\r\nx\r\n"))
	waitFor(t, "first attempts", func() bool { return tries.Load() == 2 })
	srv := httptest.NewServer(q.AdminHandler())
	defer srv.Close()
	call := func(method, path string) (int, string) {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := call("GET", "/mail/queue")
	var list []Status
	if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil || len(list) != 2 {
		t.Fatalf("list: %d %s %v", code, body, err)
	}
	for _, s := range list {
		if s.Attempts != 1 || s.LastError != "destination down" || s.Size == 0 || s.Next.Before(time.Now().Add(50*time.Minute)) {
			t.Errorf("status %+v", s)
		}
	}
	if code, body := call("POST", "/mail/queue/flush"); code != 200 || body != "flushed 2\n" {
		t.Errorf("flush: %d %q", code, body)
	}
	waitFor(t, "flushed attempts", func() bool { return tries.Load() == 4 })
	if code, _ := call("POST", "/mail/queue/delete?id=../x"); code != 400 {
		t.Errorf("delete ../x: %d", code)
	}
	if code, _ := call("POST", "/mail/queue/delete?id=nosuch"); code != 404 {
		t.Errorf("delete nosuch: %d", code)
	}
	if code, body := call("POST", "/mail/queue/delete?id="+id1); code != 200 || q.Len() != 1 {
		t.Errorf("delete %s: %d %q, %d left", id1, code, body, q.Len())
	}
	// Offline: the spool directory as the running queue left it.
	sts, err := ReadSpool(dir)
	if err != nil || len(sts) != 1 || sts[0].ID != id2 || sts[0].From != "" {
		t.Fatalf("ReadSpool: %+v %v", sts, err)
	}
	if err := DeleteSpooled(dir, id2); err != nil {
		t.Fatal(err)
	}
	if err := DeleteSpooled(dir, id2); err == nil {
		t.Error("deleted twice")
	}
	// The running queue forgets the file it lost at its next attempt.
	q.Flush()
	waitFor(t, "queue forgets the deleted file", func() bool { return q.Len() == 0 })
	if n := tries.Load(); n != 4 {
		t.Errorf("%d attempts, want 4 (none for deleted messages)", n)
	}
}
