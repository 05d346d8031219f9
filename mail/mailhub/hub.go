// Package mailhub tells the mail access servers (IMAP IDLE, POP3, web mail)
// in this process when a mailbox changes: a message delivered by SMTP,
// appended, flagged, expunged or moved by another session.
//
// A Hub keeps one change counter per user and mailbox and wakes whoever
// watches it. Wrap puts a Hub in front of a store.Store, so every write
// through it (the queue's delivery included) is announced after it
// commits. The counters are only a hint to look again: the store stays
// the truth, and readers compare what they see there with what they
// showed before.
package mailhub

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/applayer/applayer/mail/store"
)

// Hub is the change-notification hub. The zero value is not usable: call
// New. Safe for concurrent use.
type Hub struct {
	mu    sync.Mutex
	boxes map[key]*box
}

type key struct{ user, mailbox string }

type box struct {
	version uint64
	watch   map[chan struct{}]struct{}
}

// New returns an empty hub.
func New() *Hub { return &Hub{boxes: map[key]*box{}} }

func keyOf(user, mailbox string) key {
	if a, err := store.CanonAddress(user); err == nil {
		user = a
	}
	if strings.EqualFold(mailbox, "INBOX") {
		mailbox = "INBOX"
	}
	return key{user, mailbox}
}

func (h *Hub) boxLocked(k key) *box {
	b := h.boxes[k]
	if b == nil {
		b = &box{watch: map[chan struct{}]struct{}{}}
		h.boxes[k] = b
	}
	return b
}

// Changed records a change of a user's mailbox and wakes its watchers.
func (h *Hub) Changed(user, mailbox string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.boxLocked(keyOf(user, mailbox))
	b.version++
	for ch := range b.watch {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// Version is the mailbox's change counter: it grows with every change.
func (h *Hub) Version(user, mailbox string) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if b := h.boxes[keyOf(user, mailbox)]; b != nil {
		return b.version
	}
	return 0
}

// Watch returns a channel that receives (without blocking the hub; several
// changes may fold into one wake-up) after each change of the mailbox,
// until cancel is called.
func (h *Hub) Watch(user, mailbox string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	k := keyOf(user, mailbox)
	h.mu.Lock()
	h.boxLocked(k).watch[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if b := h.boxes[k]; b != nil {
			delete(b.watch, ch)
			if len(b.watch) == 0 && b.version == 0 {
				delete(h.boxes, k)
			}
		}
	}
}

// Wrap returns s with every successful write announced on h.
func (h *Hub) Wrap(s store.Store) store.Store { return notifying{s, h} }

type notifying struct {
	store.Store
	h *Hub
}

func (n notifying) Append(ctx context.Context, address, mailbox string, body []byte, flags []string, date time.Time) (store.Message, error) {
	m, err := n.Store.Append(ctx, address, mailbox, body, flags, date)
	if err == nil {
		n.h.Changed(address, mailbox)
	}
	return m, err
}

func (n notifying) SetFlags(ctx context.Context, address, mailbox string, uid uint32, flags []string) error {
	err := n.Store.SetFlags(ctx, address, mailbox, uid, flags)
	if err == nil {
		n.h.Changed(address, mailbox)
	}
	return err
}

func (n notifying) Delete(ctx context.Context, address, mailbox string, uid uint32) error {
	err := n.Store.Delete(ctx, address, mailbox, uid)
	if err == nil {
		n.h.Changed(address, mailbox)
	}
	return err
}

func (n notifying) DeleteMailbox(ctx context.Context, address, name string) error {
	err := n.Store.DeleteMailbox(ctx, address, name)
	if err == nil {
		n.h.Changed(address, name)
	}
	return err
}

func (n notifying) RenameMailbox(ctx context.Context, address, from, to string) error {
	err := n.Store.RenameMailbox(ctx, address, from, to)
	if err == nil {
		n.h.Changed(address, from)
		n.h.Changed(address, to)
	}
	return err
}
