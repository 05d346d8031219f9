package queue

import (
	"context"
	"errors"
	"fmt"

	"github.com/applayer/applayer/mail/store"
)

// Local delivers into the mail store: each recipient's INBOX. A recipient
// that is not a user fails permanently; a full mailbox (quota) and store
// errors are retried.
type Local struct {
	Store store.Store
}

// Deliver implements Deliverer.
func (l Local) Deliver(ctx context.Context, env Envelope, rcpt string, body []byte) error {
	_, err := l.Store.Append(ctx, rcpt, "INBOX", body, nil, env.Received)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNoUser), errors.Is(err, store.ErrBadAddress):
		return Permanent(fmt.Errorf("queue: local delivery to %s: %w", rcpt, err))
	default:
		return fmt.Errorf("queue: local delivery to %s: %w", rcpt, err)
	}
}
