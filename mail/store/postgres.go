package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/crypto/bcrypt"

	"github.com/applayer/applayer/mail/msgmeta"
)

// Postgres is the Store backend for sites that outgrow one machine:
// several applayer mail front-ends share one PostgreSQL database through
// github.com/jackc/pgx. Nothing is kept between calls in the process, and
// each change that reads before it writes runs in one transaction that
// locks what it depends on: an append locks the user's row (the quota
// holds across the user's mailboxes) and takes the UID from the
// mailbox's row (UPDATE ... RETURNING), so concurrent appends from any
// number of front-ends get distinct, gapless UIDs.
type Postgres struct {
	db   *pgxpool.Pool
	opts Options
}

var _ Store = (*Postgres)(nil)

// schemaLock is the advisory lock key that serializes schema creation
// when several front-ends start at once.
const schemaLock = 0x6d61696c73746f72 // "mailstor"

const pgSchema = `
CREATE TABLE IF NOT EXISTS users (
	id BIGSERIAL PRIMARY KEY,
	address TEXT NOT NULL UNIQUE,
	password_hash TEXT NOT NULL,
	quota BIGINT NOT NULL DEFAULT 0,
	created BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS mailboxes (
	id BIGSERIAL PRIMARY KEY,
	user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name TEXT NOT NULL,
	special_use TEXT NOT NULL DEFAULT '',
	uid_validity BIGINT NOT NULL,
	uid_next BIGINT NOT NULL DEFAULT 1,
	UNIQUE (user_id, name)
);
CREATE TABLE IF NOT EXISTS messages (
	id BIGSERIAL PRIMARY KEY,
	mailbox_id BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
	uid BIGINT NOT NULL,
	flags TEXT NOT NULL DEFAULT '',
	internal_date BIGINT NOT NULL,
	size BIGINT NOT NULL,
	body BYTEA NOT NULL,
	envelope BYTEA, -- msgmeta's stored ENVELOPE; NULL in rows from before it
	UNIQUE (mailbox_id, uid)
);
ALTER TABLE messages ADD COLUMN IF NOT EXISTS envelope BYTEA;
CREATE TABLE IF NOT EXISTS subscriptions (
	user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name TEXT NOT NULL,
	PRIMARY KEY (user_id, name)
);
-- The last UIDVALIDITY handed out (see nextValidity).
CREATE TABLE IF NOT EXISTS counters (
	name TEXT PRIMARY KEY,
	value BIGINT NOT NULL
);
`

// OpenPostgres connects to the database named by dsn (a libpq keyword
// string or a postgres:// URL) and creates the tables when missing.
func OpenPostgres(ctx context.Context, dsn string, opts Options) (*Postgres, error) {
	if opts.BcryptCost == 0 {
		opts.BcryptCost = bcrypt.DefaultCost
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	db, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	s := &Postgres{db: db, opts: opts}
	err = s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(schemaLock)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, pgSchema)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: postgres schema: %w", err)
	}
	return s, nil
}

// Close closes the connection pool.
func (s *Postgres) Close() error {
	s.db.Close()
	return nil
}

func (s *Postgres) tx(ctx context.Context, f func(pgx.Tx) error) error {
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := f(tx); err != nil {
		tx.Rollback(ctx)
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

func pgUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// querier is what the pool and a transaction share.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func (s *Postgres) hash(password string) (string, error) {
	if password == "" {
		return "", errors.New("store: empty password")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), s.opts.BcryptCost)
	if err != nil {
		return "", fmt.Errorf("store: hash password: %w", err)
	}
	return string(h), nil
}

// AddUser implements Store.
func (s *Postgres) AddUser(ctx context.Context, address, password string, quota int64) error {
	a, err := CanonAddress(address)
	if err != nil {
		return err
	}
	if quota < 0 {
		return fmt.Errorf("store: negative quota %d", quota)
	}
	h, err := s.hash(password)
	if err != nil {
		return err
	}
	now := s.opts.Now()
	return s.tx(ctx, func(tx pgx.Tx) error {
		var id int64
		err := tx.QueryRow(ctx, `INSERT INTO users(address, password_hash, quota, created) VALUES ($1, $2, $3, $4) RETURNING id`, a, h, quota, now.Unix()).Scan(&id)
		if pgUnique(err) {
			return fmt.Errorf("%w: %s", ErrUserExists, a)
		}
		if err != nil {
			return fmt.Errorf("store: add user %s: %w", a, err)
		}
		for _, m := range DefaultMailboxes {
			v, err := pgNextValidity(ctx, tx, now)
			if err != nil {
				return fmt.Errorf("store: add user %s: %w", a, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO mailboxes(user_id, name, special_use, uid_validity) VALUES ($1, $2, $3, $4)`, id, m.Name, m.Use, v); err != nil {
				return fmt.Errorf("store: add user %s: %w", a, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO subscriptions(user_id, name) VALUES ($1, $2)`, id, m.Name); err != nil {
				return fmt.Errorf("store: add user %s: %w", a, err)
			}
		}
		return nil
	})
}

func (s *Postgres) userID(ctx context.Context, q querier, address string, lock bool) (int64, error) {
	a, err := CanonAddress(address)
	if err != nil {
		return 0, err
	}
	query := `SELECT id FROM users WHERE address = $1`
	if lock {
		query += ` FOR UPDATE`
	}
	var id int64
	err = q.QueryRow(ctx, query, a).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("%w: %s", ErrNoUser, a)
	}
	if err != nil {
		return 0, fmt.Errorf("store: user %s: %w", a, err)
	}
	return id, nil
}

// SetPassword implements Store.
func (s *Postgres) SetPassword(ctx context.Context, address, password string) error {
	h, err := s.hash(password)
	if err != nil {
		return err
	}
	return s.updateUser(ctx, address, `UPDATE users SET password_hash = $1 WHERE address = $2`, h)
}

// SetQuota implements Store.
func (s *Postgres) SetQuota(ctx context.Context, address string, quota int64) error {
	if quota < 0 {
		return fmt.Errorf("store: negative quota %d", quota)
	}
	return s.updateUser(ctx, address, `UPDATE users SET quota = $1 WHERE address = $2`, quota)
}

// DeleteUser implements Store.
func (s *Postgres) DeleteUser(ctx context.Context, address string) error {
	return s.updateUser(ctx, address, `DELETE FROM users WHERE address = $1`)
}

func (s *Postgres) updateUser(ctx context.Context, address, query string, args ...any) error {
	a, err := CanonAddress(address)
	if err != nil {
		return err
	}
	tag, err := s.db.Exec(ctx, query, append(args, a)...)
	if err != nil {
		return fmt.Errorf("store: user %s: %w", a, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s", ErrNoUser, a)
	}
	return nil
}

// User implements Store.
func (s *Postgres) User(ctx context.Context, address string) (User, error) {
	u, _, err := s.user(ctx, address)
	return u, err
}

func (s *Postgres) user(ctx context.Context, address string) (User, string, error) {
	a, err := CanonAddress(address)
	if err != nil {
		return User{}, "", err
	}
	var u User
	var hash string
	var created int64
	err = s.db.QueryRow(ctx, `SELECT address, quota, created, password_hash FROM users WHERE address = $1`, a).Scan(&u.Address, &u.Quota, &created, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, "", fmt.Errorf("%w: %s", ErrNoUser, a)
	}
	if err != nil {
		return User{}, "", fmt.Errorf("store: user %s: %w", a, err)
	}
	u.Created = time.Unix(created, 0)
	return u, hash, nil
}

// Users implements Store.
func (s *Postgres) Users(ctx context.Context) ([]User, error) {
	rows, err := s.db.Query(ctx, `SELECT address, quota, created FROM users ORDER BY address COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("store: users: %w", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		var u User
		var created int64
		if err := rows.Scan(&u.Address, &u.Quota, &created); err != nil {
			return nil, fmt.Errorf("store: users: %w", err)
		}
		u.Created = time.Unix(created, 0)
		out = append(out, u)
	}
	return out, rows.Err()
}

// Authenticate implements Store.
func (s *Postgres) Authenticate(ctx context.Context, address, password string) (User, error) {
	u, hash, err := s.user(ctx, address)
	if err != nil {
		return User{}, err
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil {
		return User{}, fmt.Errorf("%w: %s", ErrBadPassword, u.Address)
	}
	return u, nil
}

// Usage implements Store.
func (s *Postgres) Usage(ctx context.Context, address string) (int64, error) {
	id, err := s.userID(ctx, s.db, address, false)
	if err != nil {
		return 0, err
	}
	return pgUsage(ctx, s.db, id)
}

func pgUsage(ctx context.Context, q querier, userID int64) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, `SELECT COALESCE(SUM(m.size), 0)::BIGINT FROM messages m JOIN mailboxes b ON m.mailbox_id = b.id WHERE b.user_id = $1`, userID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: usage: %w", err)
	}
	return n, nil
}

func pgScanMailbox(sc interface{ Scan(...any) error }) (Mailbox, error) {
	var m Mailbox
	var validity, next int64
	err := sc.Scan(&m.Name, &m.SpecialUse, &validity, &next, &m.Messages)
	m.UIDValidity, m.UIDNext = uint32(validity), uint32(next)
	return m, err
}

// Mailboxes implements Store.
func (s *Postgres) Mailboxes(ctx context.Context, address string) ([]Mailbox, error) {
	id, err := s.userID(ctx, s.db, address, false)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `SELECT `+mailboxCols+` FROM mailboxes b WHERE b.user_id = $1 ORDER BY b.name COLLATE "C"`, id)
	if err != nil {
		return nil, fmt.Errorf("store: mailboxes: %w", err)
	}
	defer rows.Close()
	var out []Mailbox
	for rows.Next() {
		m, err := pgScanMailbox(rows)
		if err != nil {
			return nil, fmt.Errorf("store: mailboxes: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// Mailbox implements Store.
func (s *Postgres) Mailbox(ctx context.Context, address, name string) (Mailbox, error) {
	id, err := s.userID(ctx, s.db, address, false)
	if err != nil {
		return Mailbox{}, err
	}
	m, err := pgScanMailbox(s.db.QueryRow(ctx, `SELECT `+mailboxCols+` FROM mailboxes b WHERE b.user_id = $1 AND b.name = $2`, id, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return Mailbox{}, fmt.Errorf("%w: %s", ErrNoMailbox, name)
	}
	if err != nil {
		return Mailbox{}, fmt.Errorf("store: mailbox %s: %w", name, err)
	}
	return m, nil
}

// CreateMailbox implements Store.
func (s *Postgres) CreateMailbox(ctx context.Context, address, name, specialUse string) (Mailbox, error) {
	if name == "" || strings.ContainsAny(name, "\r\n\x00") {
		return Mailbox{}, fmt.Errorf("store: bad mailbox name %q", name)
	}
	id, err := s.userID(ctx, s.db, address, false)
	if err != nil {
		return Mailbox{}, err
	}
	v, err := pgNextValidity(ctx, s.db, s.opts.Now())
	if err != nil {
		return Mailbox{}, fmt.Errorf("store: create mailbox %s: %w", name, err)
	}
	_, err = s.db.Exec(ctx, `INSERT INTO mailboxes(user_id, name, special_use, uid_validity) VALUES ($1, $2, $3, $4)`, id, name, specialUse, v)
	if pgUnique(err) {
		return Mailbox{}, fmt.Errorf("%w: %s", ErrMailboxExists, name)
	}
	if err != nil {
		return Mailbox{}, fmt.Errorf("store: create mailbox %s: %w", name, err)
	}
	return s.Mailbox(ctx, address, name)
}

// pgNextValidity hands out a new mailbox's UIDVALIDITY, as SQLite's
// nextValidity (the counter row's lock orders concurrent creations).
func pgNextValidity(ctx context.Context, q querier, now time.Time) (uint32, error) {
	var v int64
	err := q.QueryRow(ctx, `INSERT INTO counters(name, value)
		VALUES ('uid_validity', GREATEST($1::bigint, COALESCE((SELECT MAX(uid_validity) FROM mailboxes), 0) + 1))
		ON CONFLICT (name) DO UPDATE SET value = GREATEST(EXCLUDED.value, counters.value + 1)
		RETURNING value`, max(now.Unix(), 1)).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("uidvalidity: %w", err)
	}
	return uint32(v), nil
}

func (s *Postgres) mailboxID(ctx context.Context, q querier, address, name string, lockUser bool) (userID, boxID int64, err error) {
	userID, err = s.userID(ctx, q, address, lockUser)
	if err != nil {
		return 0, 0, err
	}
	err = q.QueryRow(ctx, `SELECT id FROM mailboxes WHERE user_id = $1 AND name = $2`, userID, name).Scan(&boxID)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, fmt.Errorf("%w: %s", ErrNoMailbox, name)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("store: mailbox %s: %w", name, err)
	}
	return userID, boxID, nil
}

// Append implements Store.
func (s *Postgres) Append(ctx context.Context, address, mailbox string, body []byte, flags []string, date time.Time) (Message, error) {
	if err := checkFlags(flags); err != nil {
		return Message{}, err
	}
	msg := Message{Flags: splitFlags(normFlags(flags)), InternalDate: date, Size: int64(len(body))}
	envelope := msgmeta.Envelope(body) // parsed once, here
	err := s.tx(ctx, func(tx pgx.Tx) error {
		// The user's row lock serializes this user's appends across
		// every front-end: the quota check and the insert are one step.
		userID, boxID, err := s.mailboxID(ctx, tx, address, mailbox, true)
		if err != nil {
			return err
		}
		var quota int64
		if err := tx.QueryRow(ctx, `SELECT quota FROM users WHERE id = $1`, userID).Scan(&quota); err != nil {
			return fmt.Errorf("store: append: %w", err)
		}
		if quota > 0 {
			used, err := pgUsage(ctx, tx, userID)
			if err != nil {
				return err
			}
			if used+msg.Size > quota {
				return fmt.Errorf("%w: %s uses %d of %d bytes, message is %d", ErrQuota, address, used, quota, msg.Size)
			}
		}
		var uid int64
		if err := tx.QueryRow(ctx, `UPDATE mailboxes SET uid_next = uid_next + 1 WHERE id = $1 RETURNING uid_next - 1`, boxID).Scan(&uid); err != nil {
			return fmt.Errorf("store: append: %w", err)
		}
		msg.UID = uint32(uid)
		_, err = tx.Exec(ctx, `INSERT INTO messages(mailbox_id, uid, flags, internal_date, size, body, envelope) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			boxID, uid, normFlags(flags), date.UnixNano(), msg.Size, body, envelope)
		if err != nil {
			return fmt.Errorf("store: append: %w", err)
		}
		return nil
	})
	if err != nil {
		return Message{}, err
	}
	return msg, nil
}

// Messages implements Store.
func (s *Postgres) Messages(ctx context.Context, address, mailbox string) ([]Message, error) {
	_, boxID, err := s.mailboxID(ctx, s.db, address, mailbox, false)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `SELECT uid, flags, internal_date, size FROM messages WHERE mailbox_id = $1 ORDER BY uid`, boxID)
	if err != nil {
		return nil, fmt.Errorf("store: messages: %w", err)
	}
	defer rows.Close()
	var out []Message
	for rows.Next() {
		var m Message
		var uid, date int64
		var flags string
		if err := rows.Scan(&uid, &flags, &date, &m.Size); err != nil {
			return nil, fmt.Errorf("store: messages: %w", err)
		}
		m.UID = uint32(uid)
		m.Flags = splitFlags(flags)
		m.InternalDate = time.Unix(0, date)
		out = append(out, m)
	}
	return out, rows.Err()
}

// Body implements Store.
func (s *Postgres) Body(ctx context.Context, address, mailbox string, uid uint32) ([]byte, error) {
	_, boxID, err := s.mailboxID(ctx, s.db, address, mailbox, false)
	if err != nil {
		return nil, err
	}
	var body []byte
	err = s.db.QueryRow(ctx, `SELECT body FROM messages WHERE mailbox_id = $1 AND uid = $2`, boxID, int64(uid)).Scan(&body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s uid %d", ErrNoMessage, mailbox, uid)
	}
	if err != nil {
		return nil, fmt.Errorf("store: body: %w", err)
	}
	return body, nil
}

// SetFlags implements Store.
func (s *Postgres) SetFlags(ctx context.Context, address, mailbox string, uid uint32, flags []string) error {
	if err := checkFlags(flags); err != nil {
		return err
	}
	return s.messageExec(ctx, address, mailbox, uid, `UPDATE messages SET flags = $3 WHERE mailbox_id = $1 AND uid = $2`, normFlags(flags))
}

// Delete implements Store.
func (s *Postgres) Delete(ctx context.Context, address, mailbox string, uid uint32) error {
	return s.messageExec(ctx, address, mailbox, uid, `DELETE FROM messages WHERE mailbox_id = $1 AND uid = $2`)
}

func (s *Postgres) messageExec(ctx context.Context, address, mailbox string, uid uint32, query string, args ...any) error {
	_, boxID, err := s.mailboxID(ctx, s.db, address, mailbox, false)
	if err != nil {
		return err
	}
	tag, err := s.db.Exec(ctx, query, append([]any{boxID, int64(uid)}, args...)...)
	if err != nil {
		return fmt.Errorf("store: message %d: %w", uid, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s uid %d", ErrNoMessage, mailbox, uid)
	}
	return nil
}

// IsPostgres reports whether a --store value names a PostgreSQL database
// (a postgres:// or postgresql:// URL) rather than an SQLite file.
func IsPostgres(name string) bool {
	return strings.HasPrefix(name, "postgres://") || strings.HasPrefix(name, "postgresql://")
}

// Open opens the store name designates: a PostgreSQL database for a
// postgres:// URL, else the SQLite file at that path.
func Open(ctx context.Context, name string, opts Options) (Store, error) {
	if IsPostgres(name) {
		return OpenPostgres(ctx, name, opts)
	}
	return OpenSQLite(ctx, name, opts)
}
