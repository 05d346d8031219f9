package imapd

import (
	"sync"
	"unsafe"

	"github.com/emersion/go-imap/v2"
)

// DefaultEnvelopeCacheBytes bounds the decoded envelopes the server keeps
// in memory for all its sessions (about 50,000 messages of ~600 bytes).
const DefaultEnvelopeCacheBytes = 32 << 20

// envCache keeps decoded ENVELOPEs shared by all sessions of a server, so
// a FETCH of envelopes reads no row and decodes nothing for messages any
// session fetched before (Dovecot's index cache plays this part).
//
// It is exact without listening to anyone: a message's content never
// changes, and within one UIDVALIDITY of a mailbox a UID names one
// message for ever (the store gives a mailbox that is created again a
// new UIDVALIDITY), so an entry keyed by user, mailbox name, UIDVALIDITY
// and UID can only be right or unused. Flags, sizes and dates are not
// here: they are the session's view, reconciled with the store by Poll.
// The server drops what it knows is dead (its own expunges, deleted and
// renamed mailboxes) to keep memory for the living; what others expunge
// ages out.
//
// Memory: each entry is charged its decoded size plus its map slot
// (envSize); over max bytes, whole mailboxes go, least recently used
// first, and a single mailbox larger than max stops growing. Safe for
// concurrent use.
type envCache struct {
	mu    sync.Mutex
	max   int64
	used  int64
	tick  uint64
	boxes map[boxKey]*boxEnvs
}

// boxKey is one incarnation of a mailbox.
type boxKey struct {
	user, box string
	validity  uint32
}

type boxEnvs struct {
	envs  map[uint32]*imap.Envelope
	bytes int64
	used  uint64 // envCache.tick at its last lookup or fill
}

func newEnvCache(max int64) *envCache {
	return &envCache{max: max, boxes: map[boxKey]*boxEnvs{}}
}

// get puts the cached envelope of uids[i] in out[i] (nil when absent)
// and returns how many it found.
func (c *envCache) get(k boxKey, uids []uint32, out []*imap.Envelope) int {
	if c == nil {
		clear(out)
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.boxes[k]
	if b == nil {
		clear(out)
		return 0
	}
	c.tick++
	b.used = c.tick
	n := 0
	for i, u := range uids {
		out[i] = b.envs[u]
		if out[i] != nil {
			n++
		}
	}
	return n
}

// put caches envelopes (shared from now on: nobody may change them).
func (c *envCache) put(k boxKey, uids []uint32, envs []*imap.Envelope) {
	if c == nil || c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.boxes[k]
	if b == nil {
		b = &boxEnvs{envs: map[uint32]*imap.Envelope{}}
		c.boxes[k] = b
	}
	c.tick++
	b.used = c.tick
	for i, u := range uids {
		env := envs[i]
		if env == nil || b.envs[u] != nil {
			continue
		}
		size := envSize(env)
		if !c.roomLocked(k, size) {
			break // this mailbox alone fills the cache
		}
		b.envs[u] = env
		b.bytes += size
		c.used += size
	}
	if len(b.envs) == 0 {
		delete(c.boxes, k)
	}
}

// roomLocked evicts other mailboxes until size more bytes fit, and says
// whether they do.
func (c *envCache) roomLocked(keep boxKey, size int64) bool {
	for c.used+size > c.max {
		if !c.evictLocked(keep) {
			return false
		}
	}
	return true
}

// evictLocked drops the least recently used mailbox other than keep;
// false when there is none.
func (c *envCache) evictLocked(keep boxKey) bool {
	var victim boxKey
	var oldest *boxEnvs
	for k, b := range c.boxes {
		if k != keep && (oldest == nil || b.used < oldest.used) {
			victim, oldest = k, b
		}
	}
	if oldest == nil {
		return false
	}
	c.used -= oldest.bytes
	delete(c.boxes, victim)
	return true
}

// forget drops one message (expunged).
func (c *envCache) forget(k boxKey, uid uint32) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.boxes[k]
	if b == nil {
		return
	}
	if env := b.envs[uid]; env != nil {
		size := envSize(env)
		b.bytes -= size
		c.used -= size
		delete(b.envs, uid)
	}
}

// forgetBox drops every incarnation of a user's mailbox, and with below
// the mailboxes under it (name/...): deleted or renamed.
func (c *envCache) forgetBox(user, box string, below bool) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, b := range c.boxes {
		if k.user == user && (k.box == box || below && len(k.box) > len(box) && k.box[len(box)] == Delim && k.box[:len(box)] == box) {
			c.used -= b.bytes
			delete(c.boxes, k)
		}
	}
}

// bytesUsed is what the cache holds, by envSize's count.
func (c *envCache) bytesUsed() int64 {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// Sizes of what an entry holds besides its strings' bytes.
const (
	envelopeStruct = int64(unsafe.Sizeof(imap.Envelope{}))
	addressStruct  = int64(unsafe.Sizeof(imap.Address{}))
	stringHeader   = int64(unsafe.Sizeof(""))
	// A map slot (key, pointer, control byte) at Go's worst load
	// factor, and the allocator's rounding, roughly.
	entryOverhead = 64
)

// envSize is the memory an envelope takes in the cache.
func envSize(e *imap.Envelope) int64 {
	n := envelopeStruct + entryOverhead + int64(len(e.Subject)+len(e.MessageID))
	for _, l := range [][]imap.Address{e.From, e.Sender, e.ReplyTo, e.To, e.Cc, e.Bcc} {
		for _, a := range l {
			n += addressStruct + int64(len(a.Name)+len(a.Mailbox)+len(a.Host))
		}
	}
	for _, id := range e.InReplyTo {
		n += stringHeader + int64(len(id))
	}
	return n
}
