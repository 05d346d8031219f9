// Package store is applayer's mail store: users with hashed passwords,
// their mailboxes (with IMAP's UIDVALIDITY and UIDNEXT and the special-use
// folders INBOX, Sent, Drafts, Trash and Junk), and the messages in them
// with flags, internal dates and sizes, under a per-user quota.
//
// Every backend implements the one Store interface, and every method takes
// a context. The embedded backend is SQLite (OpenSQLite, through the
// pure-Go modernc.org/sqlite driver); PostgreSQL (OpenPostgres, through
// github.com/jackc/pgx) is the backend for several front-ends sharing one
// database. Open picks one by name: a postgres:// URL, or a file path.
package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/applayer/applayer/mail/msgmeta"
)

// Errors a Store returns (wrapped); test with errors.Is.
var (
	ErrNoUser        = errors.New("store: no such user")
	ErrUserExists    = errors.New("store: user exists")
	ErrBadPassword   = errors.New("store: wrong password")
	ErrNoMailbox     = errors.New("store: no such mailbox")
	ErrMailboxExists = errors.New("store: mailbox exists")
	ErrNoMessage     = errors.New("store: no such message")
	ErrQuota         = errors.New("store: quota exceeded")
	ErrBadAddress    = errors.New("store: bad address")
	ErrInbox         = errors.New("store: INBOX cannot be deleted or renamed")
)

// Special-use attributes (RFC 6154) of the folders every user gets.
const (
	UseNone   = ""
	UseInbox  = "\\Inbox" // not an RFC 6154 attribute: marks INBOX here
	UseSent   = "\\Sent"
	UseDrafts = "\\Drafts"
	UseTrash  = "\\Trash"
	UseJunk   = "\\Junk"
)

// DefaultMailboxes are created with every user: name and special use.
var DefaultMailboxes = []struct{ Name, Use string }{
	{"INBOX", UseInbox},
	{"Sent", UseSent},
	{"Drafts", UseDrafts},
	{"Trash", UseTrash},
	{"Junk", UseJunk},
}

// User is a mail account.
type User struct {
	Address string // local@domain, lower case
	Quota   int64  // bytes; 0 is unlimited
	Created time.Time
}

// Mailbox is one folder of a user.
type Mailbox struct {
	Name        string
	SpecialUse  string
	UIDValidity uint32
	UIDNext     uint32
	Messages    int
}

// Message is a stored message's metadata; Body returns its content.
type Message struct {
	UID          uint32
	Flags        []string // sorted, e.g. \Seen
	InternalDate time.Time
	Size         int64
}

// Store is the mail store. Implementations are safe for concurrent use.
type Store interface {
	// AddUser creates a user with the password (hashed) and quota, and
	// the DefaultMailboxes.
	AddUser(ctx context.Context, address, password string, quota int64) error
	// SetPassword replaces a user's password.
	SetPassword(ctx context.Context, address, password string) error
	// SetQuota replaces a user's quota (0: unlimited).
	SetQuota(ctx context.Context, address string, quota int64) error
	// DeleteUser removes a user with all mailboxes and messages.
	DeleteUser(ctx context.Context, address string) error
	// User returns one user (ErrNoUser when there is none).
	User(ctx context.Context, address string) (User, error)
	// Users lists every user, by address.
	Users(ctx context.Context) ([]User, error)
	// Authenticate checks a password (ErrNoUser, ErrBadPassword).
	Authenticate(ctx context.Context, address, password string) (User, error)
	// Usage returns the bytes a user's messages take.
	Usage(ctx context.Context, address string) (int64, error)

	// Mailboxes lists a user's mailboxes, by name.
	Mailboxes(ctx context.Context, address string) ([]Mailbox, error)
	// Mailbox returns one mailbox (ErrNoMailbox).
	Mailbox(ctx context.Context, address, name string) (Mailbox, error)
	// CreateMailbox creates a folder (ErrMailboxExists).
	CreateMailbox(ctx context.Context, address, name, specialUse string) (Mailbox, error)
	// DeleteMailbox removes a folder with its messages (ErrNoMailbox;
	// INBOX cannot be deleted).
	DeleteMailbox(ctx context.Context, address, name string) error
	// RenameMailbox renames a folder and the folders below it (name/...),
	// keeping their messages and UIDVALIDITY (ErrNoMailbox,
	// ErrMailboxExists; INBOX cannot be renamed).
	RenameMailbox(ctx context.Context, address, from, to string) error
	// Subscribe adds (on) or removes a name from the user's IMAP
	// subscriptions; the name need not exist. New users are subscribed
	// to the DefaultMailboxes.
	Subscribe(ctx context.Context, address, name string, on bool) error
	// Subscriptions lists the user's subscribed names, sorted.
	Subscriptions(ctx context.Context, address string) ([]string, error)

	// Append stores a message in a mailbox with the next UID, unless it
	// would take the user over quota (ErrQuota).
	Append(ctx context.Context, address, mailbox string, body []byte, flags []string, date time.Time) (Message, error)
	// Messages lists a mailbox's messages by UID.
	Messages(ctx context.Context, address, mailbox string) ([]Message, error)
	// Body returns a message's content (ErrNoMessage).
	Body(ctx context.Context, address, mailbox string, uid uint32) ([]byte, error)
	// Bodies returns the contents of several messages by UID in one
	// round trip (the readers' FETCH, SEARCH and RETR); UIDs not in the
	// mailbox are absent from the map. Callers bound the batch. With a
	// Buffer the contents are cut from its memory (see Buffer); with nil
	// they are the caller's for good.
	Bodies(ctx context.Context, address, mailbox string, uids []uint32, buf *Buffer) (map[uint32][]byte, error)
	// Envelopes returns the IMAP ENVELOPEs of several messages by UID in
	// one round trip, in msgmeta's stored form (parsed once, when the
	// message was stored); UIDs not in the mailbox are absent from the
	// map. Callers bound the batch.
	Envelopes(ctx context.Context, address, mailbox string, uids []uint32) (map[uint32][]byte, error)
	// SetFlags replaces a message's flags.
	SetFlags(ctx context.Context, address, mailbox string, uid uint32, flags []string) error
	// Delete removes a message for good (IMAP's expunge).
	Delete(ctx context.Context, address, mailbox string, uid uint32) error

	// Close releases the store.
	Close() error
}

// CanonAddress returns address as the store keys it: lower case, trimmed,
// with exactly one @ between a non-empty local part and domain.
func CanonAddress(address string) (string, error) {
	a := strings.ToLower(strings.TrimSpace(address))
	local, domain, ok := strings.Cut(a, "@")
	if !ok || local == "" || domain == "" || strings.ContainsAny(domain, "@ \t\r\n<>") || strings.ContainsAny(local, " \t\r\n<>") || len(a) > 254 {
		return "", fmt.Errorf("%w: %q", ErrBadAddress, address)
	}
	return a, nil
}

// collectEnvelopes gathers the rows scan hands over (uid, stored envelope,
// and the body only where the envelope is NULL; both valid only during
// the call) into Envelopes' map, parsing the envelope of rows stored
// before the column existed.
func collectEnvelopes(n int, scan func(f func(uid uint32, env, body []byte)) error) (map[uint32][]byte, error) {
	out := make(map[uint32][]byte, n)
	var a Buffer
	err := scan(func(uid uint32, env, body []byte) {
		if env == nil {
			env = msgmeta.Envelope(body)
		} else {
			env = a.copy(env)
		}
		out[uid] = env
	})
	if err != nil {
		return nil, fmt.Errorf("store: envelopes: %w", err)
	}
	return out, nil
}

// collectBodies gathers the rows scan hands over (uid and body, valid
// only during the call) into Bodies' map, copied into buf (a fresh one
// when nil).
func collectBodies(n int, buf *Buffer, scan func(f func(uid uint32, body, _ []byte)) error) (map[uint32][]byte, error) {
	out := make(map[uint32][]byte, n)
	if buf == nil {
		buf = new(Buffer)
	}
	buf.reset()
	err := scan(func(uid uint32, body, _ []byte) {
		out[uid] = buf.copy(body)
	})
	if err != nil {
		return nil, fmt.Errorf("store: bodies: %w", err)
	}
	return out, nil
}

// A Buffer is memory Bodies copies message contents into, in blocks, so
// a reader that passes the same Buffer batch after batch (an IMAP FETCH
// or SEARCH, a POP3 session's read-ahead) allocates it once, not a copy
// of every message (which the garbage collector would then chase). The
// contents Bodies returns are valid until the Buffer is passed to Bodies
// again. It keeps the blocks its largest batch needed. The zero value is
// ready; not safe for concurrent use.
type Buffer struct {
	blocks [][]byte
	cur    int // the block being filled
}

// bufferBlock is a Buffer's block; values over a quarter of it get an
// allocation of their own.
const bufferBlock = 64 << 10

// Bytes returns what the Buffer holds.
func (b *Buffer) Bytes() int {
	n := 0
	for _, blk := range b.blocks {
		n += cap(blk)
	}
	return n
}

func (b *Buffer) reset() {
	for i := range b.blocks {
		b.blocks[i] = b.blocks[i][:0]
	}
	b.cur = 0
}

// copy returns a copy of p in the buffer (nil for nil).
func (b *Buffer) copy(p []byte) []byte {
	if p == nil {
		return nil
	}
	if len(p) > bufferBlock/4 {
		return bytes.Clone(p)
	}
	for {
		if b.cur == len(b.blocks) {
			b.blocks = append(b.blocks, make([]byte, 0, bufferBlock))
		}
		blk := b.blocks[b.cur]
		if len(p) <= cap(blk)-len(blk) {
			n := len(blk)
			blk = append(blk, p...)
			b.blocks[b.cur] = blk
			return blk[n:len(blk):len(blk)]
		}
		b.cur++
	}
}
