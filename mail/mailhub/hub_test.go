package mailhub

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/mail/store"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

func TestHub(t *testing.T) {
	h := New()
	ch, cancel := h.Watch("Bob@Hamburger.edu", "inbox")
	defer cancel()
	other, cancelOther := h.Watch("bob@hamburger.edu", "Sent")
	defer cancelOther()
	h.Changed("bob@hamburger.edu", "INBOX")
	h.Changed("bob@hamburger.edu", "INBOX") // folds into the pending wake-up
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Fatal("watcher not woken")
	}
	select {
	case <-ch:
		t.Error("two wake-ups for two changes before the first was taken (want one)")
	case <-other:
		t.Error("Sent's watcher woken by INBOX")
	default:
	}
	if v := h.Version("BOB@hamburger.edu", "INBOX"); v != 2 {
		t.Errorf("Version = %d, want 2", v)
	}
	if v := h.Version("bob@hamburger.edu", "Sent"); v != 0 {
		t.Errorf("Sent Version = %d, want 0", v)
	}
}

// Wrap announces each successful write, and nothing for failed ones.
func TestWrap(t *testing.T) {
	ctx := context.Background()
	raw, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "m.db"), store.Options{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	h := New()
	st := h.Wrap(raw)
	const u = "bob@hamburger.edu"
	if err := st.AddUser(ctx, u, "pw", 0); err != nil {
		t.Fatal(err)
	}
	m, err := st.Append(ctx, u, "INBOX", []byte("Subject: x\r\n\r\nx\r\n"), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st.SetFlags(ctx, u, "INBOX", m.UID, []string{`\Seen`})
	st.SetFlags(ctx, u, "INBOX", 999, []string{`\Seen`}) // fails: no change
	st.Delete(ctx, u, "INBOX", m.UID)
	if v := h.Version(u, "INBOX"); v != 3 {
		t.Errorf("INBOX version after append, flags, delete = %d, want 3", v)
	}
	st.CreateMailbox(ctx, u, "A", store.UseNone)
	st.RenameMailbox(ctx, u, "A", "B")
	st.DeleteMailbox(ctx, u, "B")
	if h.Version(u, "A") != 1 || h.Version(u, "B") != 2 {
		t.Errorf("rename/delete versions: A %d B %d", h.Version(u, "A"), h.Version(u, "B"))
	}
}
