package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// The methods the mail readers (IMAP, POP3, web mail) added to Store, for
// the PostgreSQL backend.

// Bodies implements Store: one query, the UIDs as an array.
func (s *Postgres) Bodies(ctx context.Context, address, mailbox string, uids []uint32, buf *Buffer) (map[uint32][]byte, error) {
	return collectBodies(len(uids), buf, func(f func(uid uint32, body, _ []byte)) error {
		return s.byUIDs(ctx, address, mailbox, uids, `body, NULL::bytea`, f)
	})
}

// Envelopes implements Store: one query. Rows stored before the
// envelope column have theirs parsed from the body here.
func (s *Postgres) Envelopes(ctx context.Context, address, mailbox string, uids []uint32) (map[uint32][]byte, error) {
	return collectEnvelopes(len(uids), func(f func(uid uint32, env, body []byte)) error {
		return s.byUIDs(ctx, address, mailbox, uids, `envelope, CASE WHEN envelope IS NULL THEN body END`, f)
	})
}

// byUIDs selects uid and two more columns of a mailbox's messages with
// the given UIDs (as an array), calling f for each row found (its slices
// are pgx's, valid only during the call).
func (s *Postgres) byUIDs(ctx context.Context, address, mailbox string, uids []uint32, cols string, f func(uid uint32, a, b []byte)) error {
	_, boxID, err := s.mailboxID(ctx, s.db, address, mailbox, false)
	if err != nil {
		return err
	}
	ids := make([]int64, len(uids))
	for i, u := range uids {
		ids[i] = int64(u)
	}
	rows, err := s.db.Query(ctx, `SELECT uid, `+cols+` FROM messages WHERE mailbox_id = $1 AND uid = ANY($2)`, boxID, ids)
	if err != nil {
		return err
	}
	defer rows.Close()
	var uid int64
	var a, b pgtype.DriverBytes
	for rows.Next() {
		if err := rows.Scan(&uid, &a, &b); err != nil {
			return err
		}
		f(uint32(uid), a, b)
	}
	return rows.Err()
}

// DeleteMailbox implements Store.
func (s *Postgres) DeleteMailbox(ctx context.Context, address, name string) error {
	if strings.EqualFold(name, "INBOX") {
		return ErrInbox
	}
	_, boxID, err := s.mailboxID(ctx, s.db, address, name, false)
	if err != nil {
		return err
	}
	if _, err := s.db.Exec(ctx, `DELETE FROM mailboxes WHERE id = $1`, boxID); err != nil {
		return fmt.Errorf("store: delete mailbox %s: %w", name, err)
	}
	return nil
}

// RenameMailbox implements Store.
func (s *Postgres) RenameMailbox(ctx context.Context, address, from, to string) error {
	if strings.EqualFold(from, "INBOX") || strings.EqualFold(to, "INBOX") {
		return ErrInbox
	}
	if to == "" || strings.ContainsAny(to, "\r\n\x00") {
		return fmt.Errorf("store: bad mailbox name %q", to)
	}
	return s.tx(ctx, func(tx pgx.Tx) error {
		userID, boxID, err := s.mailboxID(ctx, tx, address, from, true)
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT id, name FROM mailboxes WHERE user_id = $1`, userID)
		if err != nil {
			return fmt.Errorf("store: rename mailbox %s: %w", from, err)
		}
		renames := map[int64]string{boxID: to}
		for rows.Next() {
			var id int64
			var n string
			if err := rows.Scan(&id, &n); err != nil {
				rows.Close()
				return fmt.Errorf("store: rename mailbox %s: %w", from, err)
			}
			if rest, ok := strings.CutPrefix(n, from+"/"); ok {
				renames[id] = to + "/" + rest // children go along
			}
		}
		rows.Close()
		for id, n := range renames {
			if _, err := tx.Exec(ctx, `UPDATE mailboxes SET name = $1 WHERE id = $2`, n, id); err != nil {
				if pgUnique(err) {
					return fmt.Errorf("%w: %s", ErrMailboxExists, n)
				}
				return fmt.Errorf("store: rename mailbox %s: %w", from, err)
			}
		}
		return nil
	})
}

// Subscribe implements Store.
func (s *Postgres) Subscribe(ctx context.Context, address, name string, on bool) error {
	id, err := s.userID(ctx, s.db, address, false)
	if err != nil {
		return err
	}
	q := `DELETE FROM subscriptions WHERE user_id = $1 AND name = $2`
	if on {
		q = `INSERT INTO subscriptions(user_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING`
	}
	if _, err := s.db.Exec(ctx, q, id, name); err != nil {
		return fmt.Errorf("store: subscribe %s: %w", name, err)
	}
	return nil
}

// Subscriptions implements Store.
func (s *Postgres) Subscriptions(ctx context.Context, address string) ([]string, error) {
	id, err := s.userID(ctx, s.db, address, false)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `SELECT name FROM subscriptions WHERE user_id = $1 ORDER BY name`, id)
	if err != nil {
		return nil, fmt.Errorf("store: subscriptions: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("store: subscriptions: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}
