package queue

import (
	"context"
	"errors"
	"fmt"

	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/mail/policy"
	"github.com/applayer/applayer/mail/store"
)

// Local delivers into the mail store: each recipient's INBOX. A recipient
// that is not a user fails permanently; a full mailbox (quota) and store
// errors are retried.
type Local struct {
	Store store.Store
	// Trace, when set, sees each delivery, as a decision of Name (the
	// server's host name; default "queue").
	Trace *trace.Bus
	Name  string
}

// Deliver implements Deliverer.
func (l Local) Deliver(ctx context.Context, env Envelope, rcpt string, body []byte) error {
	box := "INBOX"
	if policy.IsJunk(body) {
		box = "Junk" // the receiver's DMARC verdict (mail/policy)
	}
	_, err := l.Store.Append(ctx, rcpt, box, body, nil, env.Received)
	switch {
	case err == nil:
		name := l.Name
		if name == "" {
			name = "queue"
		}
		l.Trace.Publish(trace.Event{Type: trace.State, From: name, Proto: "mail/local", Summary: fmt.Sprintf("message %s from <%s> delivered to %s %s", env.ID, env.From, rcpt, box), Bytes: len(body)})
		return nil
	case errors.Is(err, store.ErrNoUser), errors.Is(err, store.ErrBadAddress):
		return Permanent(&DeliveryError{Status: "5.1.1", Diagnostic: "x-applayer; no such user", Err: fmt.Errorf("queue: local delivery to %s: %w", rcpt, err)})
	case errors.Is(err, store.ErrQuota):
		return &DeliveryError{Status: "4.2.2", Diagnostic: "x-applayer; mailbox full", Err: fmt.Errorf("queue: local delivery to %s: %w", rcpt, err)}
	default:
		return fmt.Errorf("queue: local delivery to %s: %w", rcpt, err)
	}
}
