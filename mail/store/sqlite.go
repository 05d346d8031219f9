package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/applayer/applayer/mail/msgmeta"
)

// Options tune a store.
type Options struct {
	// BcryptCost is the password hashing cost; 0 is bcrypt.DefaultCost.
	// Tests use bcrypt.MinCost.
	BcryptCost int
	// Now is the clock (UIDVALIDITY, creation times); nil is time.Now.
	Now func() time.Time
}

// SQLite is the embedded Store backend: one database file.
type SQLite struct {
	db   *sql.DB
	opts Options
	// byRange holds byUIDs' range queries, compiled once, by columns;
	// boxStmt finds a user's mailbox (mailboxID's query).
	byRange map[string]*sql.Stmt
	boxStmt *sql.Stmt
}

// The columns byUIDs reads besides uid: for Bodies, and for Envelopes.
const (
	bodyCols     = `body, NULL`
	envelopeCols = `envelope, CASE WHEN envelope IS NULL THEN body END`
)

var _ Store = (*SQLite)(nil)

const schema = `
CREATE TABLE IF NOT EXISTS users (
	id INTEGER PRIMARY KEY,
	address TEXT NOT NULL UNIQUE,
	password_hash TEXT NOT NULL,
	quota INTEGER NOT NULL DEFAULT 0,
	created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS mailboxes (
	id INTEGER PRIMARY KEY,
	user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name TEXT NOT NULL,
	special_use TEXT NOT NULL DEFAULT '',
	uid_validity INTEGER NOT NULL,
	uid_next INTEGER NOT NULL DEFAULT 1,
	UNIQUE (user_id, name)
);
CREATE TABLE IF NOT EXISTS messages (
	id INTEGER PRIMARY KEY,
	mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
	uid INTEGER NOT NULL,
	flags TEXT NOT NULL DEFAULT '',
	internal_date INTEGER NOT NULL,
	size INTEGER NOT NULL,
	-- msgmeta's stored ENVELOPE (NULL in rows from before it), before
	-- body: SQLite reads a row's columns in order, and a large body's
	-- overflow pages would be walked to reach a column after it.
	envelope BLOB,
	body BLOB NOT NULL,
	UNIQUE (mailbox_id, uid)
);
CREATE TABLE IF NOT EXISTS subscriptions (
	user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name TEXT NOT NULL,
	PRIMARY KEY (user_id, name)
);
-- The last UIDVALIDITY handed out (see nextValidity).
CREATE TABLE IF NOT EXISTS counters (
	name TEXT PRIMARY KEY,
	value INTEGER NOT NULL
);
`

// OpenSQLite opens (creating when missing) the SQLite store at path. The
// database runs in WAL mode with synchronous=FULL, so a message the store
// has accepted survives a crash, and is read through mmap (up to 1 GiB of
// it), so reading a message's pages costs no system call.
func OpenSQLite(ctx context.Context, path string, opts Options) (*SQLite, error) {
	if opts.BcryptCost == 0 {
		opts.BcryptCost = bcrypt.DefaultCost
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(1)", "mmap_size(1073741824)"} {
		q.Add("_pragma", p)
	}
	// The name is a URI: '?' and '#' in the path must be escaped.
	name := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	db, err := sql.Open("sqlite", "file:"+name+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// One connection: SQLite has one writer anyway, and this turns
	// SQLITE_BUSY between our own connections into queueing.
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// Databases made before the envelope column get it, last (empty:
	// their messages' envelopes are parsed when read).
	var hasEnvelope int
	err = db.QueryRowContext(ctx, `SELECT COUNT(*) FROM pragma_table_info('messages') WHERE name = 'envelope'`).Scan(&hasEnvelope)
	if err == nil && hasEnvelope == 0 {
		_, err = db.ExecContext(ctx, `ALTER TABLE messages ADD COLUMN envelope BLOB`)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open %s: add envelope column: %w", path, err)
	}
	s := &SQLite{db: db, opts: opts, byRange: map[string]*sql.Stmt{}}
	prepare := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var st *sql.Stmt
		st, err = db.PrepareContext(ctx, q)
		return st
	}
	s.boxStmt = prepare(boxQuery)
	for _, cols := range []string{bodyCols, envelopeCols} {
		s.byRange[cols] = prepare(`SELECT uid, ` + cols + ` FROM messages WHERE mailbox_id = ? AND uid BETWEEN ? AND ?`)
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database.
func (s *SQLite) Close() error {
	for _, st := range append(slices.Collect(maps.Values(s.byRange)), s.boxStmt) {
		if st != nil {
			st.Close()
		}
	}
	return s.db.Close()
}

func (s *SQLite) tx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

func (s *SQLite) hash(password string) (string, error) {
	if password == "" {
		return "", errors.New("store: empty password")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), s.opts.BcryptCost)
	if err != nil {
		return "", fmt.Errorf("store: hash password: %w", err)
	}
	return string(h), nil
}

func isUnique(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// AddUser implements Store.
func (s *SQLite) AddUser(ctx context.Context, address, password string, quota int64) error {
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
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO users(address, password_hash, quota, created) VALUES (?, ?, ?, ?)`, a, h, quota, now.Unix())
		if isUnique(err) {
			return fmt.Errorf("%w: %s", ErrUserExists, a)
		}
		if err != nil {
			return fmt.Errorf("store: add user %s: %w", a, err)
		}
		id, err := res.LastInsertId()
		if err != nil {
			return fmt.Errorf("store: add user %s: %w", a, err)
		}
		for _, m := range DefaultMailboxes {
			v, err := nextValidity(ctx, tx, now)
			if err != nil {
				return fmt.Errorf("store: add user %s: %w", a, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO mailboxes(user_id, name, special_use, uid_validity) VALUES (?, ?, ?, ?)`, id, m.Name, m.Use, v); err != nil {
				return fmt.Errorf("store: add user %s: %w", a, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO subscriptions(user_id, name) VALUES (?, ?)`, id, m.Name); err != nil {
				return fmt.Errorf("store: add user %s: %w", a, err)
			}
		}
		return nil
	})
}

// A mailbox's UIDVALIDITY is its creation second, or one more than the
// last one handed out in this database when that is not smaller: values
// only grow, so a mailbox deleted and made again (even within a second)
// gets a new one, as RFC 9051 section 2.3.1.1 requires, and no two
// mailboxes share one. The counter starts above every mailbox's value in
// databases from before it.
const nextValiditySQL = `INSERT INTO counters(name, value)
	VALUES ('uid_validity', MAX(?, COALESCE((SELECT MAX(uid_validity) FROM mailboxes), 0) + 1))
	ON CONFLICT(name) DO UPDATE SET value = MAX(excluded.value, counters.value + 1)
	RETURNING value`

// nextValidity hands out a new mailbox's UIDVALIDITY (nextValiditySQL).
func nextValidity(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, now time.Time) (uint32, error) {
	var v int64
	if err := q.QueryRowContext(ctx, nextValiditySQL, max(now.Unix(), 1)).Scan(&v); err != nil {
		return 0, fmt.Errorf("uidvalidity: %w", err)
	}
	return uint32(v), nil
}

func (s *SQLite) userID(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, address string) (int64, error) {
	a, err := CanonAddress(address)
	if err != nil {
		return 0, err
	}
	var id int64
	err = q.QueryRowContext(ctx, `SELECT id FROM users WHERE address = ?`, a).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("%w: %s", ErrNoUser, a)
	}
	if err != nil {
		return 0, fmt.Errorf("store: user %s: %w", a, err)
	}
	return id, nil
}

// SetPassword implements Store.
func (s *SQLite) SetPassword(ctx context.Context, address, password string) error {
	h, err := s.hash(password)
	if err != nil {
		return err
	}
	return s.updateUser(ctx, address, `UPDATE users SET password_hash = ? WHERE address = ?`, h)
}

// SetQuota implements Store.
func (s *SQLite) SetQuota(ctx context.Context, address string, quota int64) error {
	if quota < 0 {
		return fmt.Errorf("store: negative quota %d", quota)
	}
	return s.updateUser(ctx, address, `UPDATE users SET quota = ? WHERE address = ?`, quota)
}

// DeleteUser implements Store.
func (s *SQLite) DeleteUser(ctx context.Context, address string) error {
	return s.updateUser(ctx, address, `DELETE FROM users WHERE address = ?`)
}

func (s *SQLite) updateUser(ctx context.Context, address, query string, args ...any) error {
	a, err := CanonAddress(address)
	if err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, query, append(args, a)...)
	if err != nil {
		return fmt.Errorf("store: user %s: %w", a, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s", ErrNoUser, a)
	}
	return nil
}

// User implements Store.
func (s *SQLite) User(ctx context.Context, address string) (User, error) {
	u, _, err := s.user(ctx, address)
	return u, err
}

func (s *SQLite) user(ctx context.Context, address string) (User, string, error) {
	a, err := CanonAddress(address)
	if err != nil {
		return User{}, "", err
	}
	var u User
	var hash string
	var created int64
	err = s.db.QueryRowContext(ctx, `SELECT address, quota, created, password_hash FROM users WHERE address = ?`, a).Scan(&u.Address, &u.Quota, &created, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, "", fmt.Errorf("%w: %s", ErrNoUser, a)
	}
	if err != nil {
		return User{}, "", fmt.Errorf("store: user %s: %w", a, err)
	}
	u.Created = time.Unix(created, 0)
	return u, hash, nil
}

// Users implements Store.
func (s *SQLite) Users(ctx context.Context) ([]User, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT address, quota, created FROM users ORDER BY address`)
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
func (s *SQLite) Authenticate(ctx context.Context, address, password string) (User, error) {
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
func (s *SQLite) Usage(ctx context.Context, address string) (int64, error) {
	id, err := s.userID(ctx, s.db, address)
	if err != nil {
		return 0, err
	}
	return usage(ctx, s.db, id)
}

func usage(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, userID int64) (int64, error) {
	var n int64
	err := q.QueryRowContext(ctx, `SELECT COALESCE(SUM(m.size), 0) FROM messages m JOIN mailboxes b ON m.mailbox_id = b.id WHERE b.user_id = ?`, userID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: usage: %w", err)
	}
	return n, nil
}

const mailboxCols = `b.name, b.special_use, b.uid_validity, b.uid_next, (SELECT COUNT(*) FROM messages m WHERE m.mailbox_id = b.id)`

func scanMailbox(sc interface{ Scan(...any) error }) (Mailbox, error) {
	var m Mailbox
	err := sc.Scan(&m.Name, &m.SpecialUse, &m.UIDValidity, &m.UIDNext, &m.Messages)
	return m, err
}

// Mailboxes implements Store.
func (s *SQLite) Mailboxes(ctx context.Context, address string) ([]Mailbox, error) {
	id, err := s.userID(ctx, s.db, address)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+mailboxCols+` FROM mailboxes b WHERE b.user_id = ? ORDER BY b.name`, id)
	if err != nil {
		return nil, fmt.Errorf("store: mailboxes: %w", err)
	}
	defer rows.Close()
	var out []Mailbox
	for rows.Next() {
		m, err := scanMailbox(rows)
		if err != nil {
			return nil, fmt.Errorf("store: mailboxes: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// Mailbox implements Store.
func (s *SQLite) Mailbox(ctx context.Context, address, name string) (Mailbox, error) {
	id, err := s.userID(ctx, s.db, address)
	if err != nil {
		return Mailbox{}, err
	}
	m, err := scanMailbox(s.db.QueryRowContext(ctx, `SELECT `+mailboxCols+` FROM mailboxes b WHERE b.user_id = ? AND b.name = ?`, id, name))
	if errors.Is(err, sql.ErrNoRows) {
		return Mailbox{}, fmt.Errorf("%w: %s", ErrNoMailbox, name)
	}
	if err != nil {
		return Mailbox{}, fmt.Errorf("store: mailbox %s: %w", name, err)
	}
	return m, nil
}

// CreateMailbox implements Store.
func (s *SQLite) CreateMailbox(ctx context.Context, address, name, specialUse string) (Mailbox, error) {
	if name == "" || strings.ContainsAny(name, "\r\n\x00") {
		return Mailbox{}, fmt.Errorf("store: bad mailbox name %q", name)
	}
	id, err := s.userID(ctx, s.db, address)
	if err != nil {
		return Mailbox{}, err
	}
	v, err := nextValidity(ctx, s.db, s.opts.Now())
	if err != nil {
		return Mailbox{}, fmt.Errorf("store: create mailbox %s: %w", name, err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO mailboxes(user_id, name, special_use, uid_validity) VALUES (?, ?, ?, ?)`, id, name, specialUse, v)
	if isUnique(err) {
		return Mailbox{}, fmt.Errorf("%w: %s", ErrMailboxExists, name)
	}
	if err != nil {
		return Mailbox{}, fmt.Errorf("store: create mailbox %s: %w", name, err)
	}
	return s.Mailbox(ctx, address, name)
}

func checkFlags(flags []string) error {
	for _, f := range flags {
		if f == "" || strings.ContainsAny(f, " ()\r\n\x00") {
			return fmt.Errorf("store: bad flag %q", f)
		}
	}
	return nil
}

func normFlags(flags []string) string {
	f := slices.Clone(flags)
	slices.Sort(f)
	f = slices.Compact(f)
	return strings.Join(f, " ")
}

func splitFlags(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, " ")
}

// boxQuery finds a user's mailbox by address and name.
const boxQuery = `SELECT u.id, b.id FROM users u JOIN mailboxes b ON b.user_id = u.id WHERE u.address = ? AND b.name = ?`

func (s *SQLite) mailboxID(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, address, name string) (userID, boxID int64, err error) {
	a, err := CanonAddress(address)
	if err != nil {
		return 0, 0, err
	}
	// One query for both (the readers call this per command), compiled
	// once outside transactions.
	if q == s.db {
		err = s.boxStmt.QueryRowContext(ctx, a, name).Scan(&userID, &boxID)
	} else {
		err = q.QueryRowContext(ctx, boxQuery, a, name).Scan(&userID, &boxID)
	}
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := s.userID(ctx, q, a); err != nil {
			return 0, 0, err
		}
		return 0, 0, fmt.Errorf("%w: %s", ErrNoMailbox, name)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("store: mailbox %s: %w", name, err)
	}
	return userID, boxID, nil
}

// Append implements Store.
func (s *SQLite) Append(ctx context.Context, address, mailbox string, body []byte, flags []string, date time.Time) (Message, error) {
	if err := checkFlags(flags); err != nil {
		return Message{}, err
	}
	msg := Message{Flags: splitFlags(normFlags(flags)), InternalDate: date, Size: int64(len(body))}
	envelope := msgmeta.Envelope(body) // parsed once, here
	err := s.tx(ctx, func(tx *sql.Tx) error {
		userID, boxID, err := s.mailboxID(ctx, tx, address, mailbox)
		if err != nil {
			return err
		}
		var quota int64
		if err := tx.QueryRowContext(ctx, `SELECT quota FROM users WHERE id = ?`, userID).Scan(&quota); err != nil {
			return fmt.Errorf("store: append: %w", err)
		}
		if quota > 0 {
			used, err := usage(ctx, tx, userID)
			if err != nil {
				return err
			}
			if used+msg.Size > quota {
				return fmt.Errorf("%w: %s uses %d of %d bytes, message is %d", ErrQuota, address, used, quota, msg.Size)
			}
		}
		if err := tx.QueryRowContext(ctx, `UPDATE mailboxes SET uid_next = uid_next + 1 WHERE id = ? RETURNING uid_next - 1`, boxID).Scan(&msg.UID); err != nil {
			return fmt.Errorf("store: append: %w", err)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO messages(mailbox_id, uid, flags, internal_date, size, body, envelope) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			boxID, msg.UID, normFlags(flags), date.UnixNano(), msg.Size, body, envelope)
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
func (s *SQLite) Messages(ctx context.Context, address, mailbox string) ([]Message, error) {
	_, boxID, err := s.mailboxID(ctx, s.db, address, mailbox)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT uid, flags, internal_date, size FROM messages WHERE mailbox_id = ? ORDER BY uid`, boxID)
	if err != nil {
		return nil, fmt.Errorf("store: messages: %w", err)
	}
	defer rows.Close()
	var out []Message
	for rows.Next() {
		var m Message
		var flags string
		var date int64
		if err := rows.Scan(&m.UID, &flags, &date, &m.Size); err != nil {
			return nil, fmt.Errorf("store: messages: %w", err)
		}
		m.Flags = splitFlags(flags)
		m.InternalDate = time.Unix(0, date)
		out = append(out, m)
	}
	return out, rows.Err()
}

// Body implements Store.
func (s *SQLite) Body(ctx context.Context, address, mailbox string, uid uint32) ([]byte, error) {
	a, err := CanonAddress(address)
	if err != nil {
		return nil, err
	}
	var body []byte
	err = s.db.QueryRowContext(ctx, `SELECT m.body FROM users u JOIN mailboxes b ON b.user_id = u.id JOIN messages m ON m.mailbox_id = b.id WHERE u.address = ? AND b.name = ? AND m.uid = ?`, a, mailbox, uid).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		if _, _, err := s.mailboxID(ctx, s.db, a, mailbox); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s uid %d", ErrNoMessage, mailbox, uid)
	}
	if err != nil {
		return nil, fmt.Errorf("store: body: %w", err)
	}
	return body, nil
}

// Bodies implements Store.
func (s *SQLite) Bodies(ctx context.Context, address, mailbox string, uids []uint32, buf *Buffer) (map[uint32][]byte, error) {
	return collectBodies(len(uids), buf, func(f func(uid uint32, body, _ []byte)) error {
		return s.byUIDs(ctx, address, mailbox, uids, bodyCols, f)
	})
}

// Envelopes implements Store. Rows stored before the envelope column
// have theirs parsed from the body here.
func (s *SQLite) Envelopes(ctx context.Context, address, mailbox string, uids []uint32) (map[uint32][]byte, error) {
	return collectEnvelopes(len(uids), func(f func(uid uint32, env, body []byte)) error {
		return s.byUIDs(ctx, address, mailbox, uids, envelopeCols, f)
	})
}

// byUIDs selects uid and two more columns of a mailbox's messages with
// the given UIDs, calling f for each row found (its slices are the
// driver's, valid only during the call). A batch of UIDs that is
// nearly contiguous (a FETCH 1:1000) is one range query of a statement
// SQLite has compiled before; a sparse one lists its UIDs (at most 500 a
// query).
func (s *SQLite) byUIDs(ctx context.Context, address, mailbox string, uids []uint32, cols string, f func(uid uint32, a, b []byte)) error {
	_, boxID, err := s.mailboxID(ctx, s.db, address, mailbox)
	if err != nil {
		return err
	}
	for len(uids) > 0 {
		n := min(len(uids), 500)
		batch := uids[:n]
		uids = uids[n:]
		lo, hi := slices.Min(batch), slices.Max(batch)
		var rows *sql.Rows
		var want map[uint32]bool
		if int64(hi)-int64(lo) < 2*int64(n) {
			want = make(map[uint32]bool, n)
			for _, u := range batch {
				want[u] = true
			}
			rows, err = s.byRange[cols].QueryContext(ctx, boxID, lo, hi)
		} else {
			args := make([]any, 0, n+1)
			args = append(args, boxID)
			for _, u := range batch {
				args = append(args, u)
			}
			rows, err = s.db.QueryContext(ctx, `SELECT uid, `+cols+` FROM messages WHERE mailbox_id = ? AND uid IN (?`+strings.Repeat(",?", n-1)+`)`, args...)
		}
		if err != nil {
			return err
		}
		// Scanned into once per query (they escape to Scan), cleared per
		// row so Scan never appends into the last row's bytes.
		var uid uint32
		var a, b sql.RawBytes
		for rows.Next() {
			a, b = nil, nil
			if err := rows.Scan(&uid, &a, &b); err != nil {
				rows.Close()
				return err
			}
			if want == nil || want[uid] {
				f(uid, a, b)
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// SetFlags implements Store.
func (s *SQLite) SetFlags(ctx context.Context, address, mailbox string, uid uint32, flags []string) error {
	if err := checkFlags(flags); err != nil {
		return err
	}
	return s.messageExec(ctx, address, mailbox, uid, `UPDATE messages SET flags = ? WHERE mailbox_id = ? AND uid = ?`, normFlags(flags))
}

// Delete implements Store.
func (s *SQLite) Delete(ctx context.Context, address, mailbox string, uid uint32) error {
	return s.messageExec(ctx, address, mailbox, uid, `DELETE FROM messages WHERE mailbox_id = ? AND uid = ?`)
}

func (s *SQLite) messageExec(ctx context.Context, address, mailbox string, uid uint32, query string, args ...any) error {
	_, boxID, err := s.mailboxID(ctx, s.db, address, mailbox)
	if err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, query, append(args, boxID, uid)...)
	if err != nil {
		return fmt.Errorf("store: message %d: %w", uid, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s uid %d", ErrNoMessage, mailbox, uid)
	}
	return nil
}

// DeleteMailbox implements Store.
func (s *SQLite) DeleteMailbox(ctx context.Context, address, name string) error {
	if strings.EqualFold(name, "INBOX") {
		return ErrInbox
	}
	_, boxID, err := s.mailboxID(ctx, s.db, address, name)
	if err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM mailboxes WHERE id = ?`, boxID); err != nil {
		return fmt.Errorf("store: delete mailbox %s: %w", name, err)
	}
	return nil
}

// RenameMailbox implements Store.
func (s *SQLite) RenameMailbox(ctx context.Context, address, from, to string) error {
	if strings.EqualFold(from, "INBOX") || strings.EqualFold(to, "INBOX") {
		return ErrInbox
	}
	if to == "" || strings.ContainsAny(to, "\r\n\x00") {
		return fmt.Errorf("store: bad mailbox name %q", to)
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		userID, boxID, err := s.mailboxID(ctx, tx, address, from)
		if err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT id, name FROM mailboxes WHERE user_id = ?`, userID)
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
			if _, err = tx.ExecContext(ctx, `UPDATE mailboxes SET name = ? WHERE id = ?`, n, id); err != nil {
				break
			}
		}
		if isUnique(err) {
			return fmt.Errorf("%w: %s", ErrMailboxExists, to)
		}
		if err != nil {
			return fmt.Errorf("store: rename mailbox %s: %w", from, err)
		}
		return nil
	})
}

// Subscribe implements Store.
func (s *SQLite) Subscribe(ctx context.Context, address, name string, on bool) error {
	id, err := s.userID(ctx, s.db, address)
	if err != nil {
		return err
	}
	q := `DELETE FROM subscriptions WHERE user_id = ? AND name = ?`
	if on {
		q = `INSERT OR IGNORE INTO subscriptions(user_id, name) VALUES (?, ?)`
	}
	if _, err := s.db.ExecContext(ctx, q, id, name); err != nil {
		return fmt.Errorf("store: subscribe %s: %w", name, err)
	}
	return nil
}

// Subscriptions implements Store.
func (s *SQLite) Subscriptions(ctx context.Context, address string) ([]string, error) {
	id, err := s.userID(ctx, s.db, address)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT name FROM subscriptions WHERE user_id = ? ORDER BY name`, id)
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
