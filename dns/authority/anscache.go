package authority

import (
	"hash/maphash"
	"sync"
	"time"
)

// answerCache keeps packed UDP answers by the exact bytes of the query
// after its ID (so case, flags, EDNS buffer and DO all take part). One
// cache serves every UDP socket. Its size is bounded in bytes (keys,
// answers and a per-entry overhead), entries older than maxAge are not
// served and are removed, and it is emptied when the zones change. Under
// a flood of random names the oldest entries go first: the cache holds
// at most maxBytes whatever the query mix (issue 10: one unbounded cache
// per socket reached 437 MB).
//
// It is split in shards, each with its own lock, so the readers of
// different sockets rarely wait for each other; a hit takes a read lock
// and allocates nothing.
type answerCache struct {
	seed     maphash.Seed
	maxShard int64 // bytes per shard
	maxAge   time.Duration
	shards   [cacheShards]cacheShard
}

const cacheShards = 32

// entryOverhead approximates what an entry costs beyond its key and
// answer bytes: the map slot, the entry, the queue slot and allocation
// headers.
const entryOverhead = 128

type cacheShard struct {
	mu    sync.RWMutex
	zs    *zoneSet // the zones the entries were answered from
	m     map[string]*cacheEntry
	queue []*cacheEntry // insertion order (oldest first) from head
	head  int
	bytes int64
	// peak is the largest len(m) since the map was made: a map keeps its
	// buckets when entries are deleted, so a shrunken map is remade.
	peak int
	_    [40]byte // keep shards on separate cache lines
}

type cacheEntry struct {
	key  string
	ans  []byte // the answer after its ID
	born int64  // unix nanoseconds
}

func (e *cacheEntry) size() int64 { return int64(len(e.key)+len(e.ans)) + entryOverhead }

func newAnswerCache(maxBytes int64, maxAge time.Duration) *answerCache {
	return &answerCache{seed: maphash.MakeSeed(), maxShard: maxBytes / cacheShards, maxAge: maxAge}
}

func (c *answerCache) shard(key []byte) *cacheShard {
	return &c.shards[maphash.Bytes(c.seed, key)%cacheShards]
}

// get appends to out[:0] the cached answer to q (a full query), with q's
// ID, or returns nil.
func (c *answerCache) get(zs *zoneSet, q, out []byte, now time.Time) []byte {
	if c == nil || len(q) < 12 {
		return nil
	}
	sh := c.shard(q[2:])
	sh.mu.RLock()
	e, ok := sh.m[string(q[2:])]
	if !ok || sh.zs != zs || now.UnixNano()-e.born > int64(c.maxAge) {
		sh.mu.RUnlock()
		return nil
	}
	out = append(out[:0], q[0], q[1])
	out = append(out, e.ans...)
	sh.mu.RUnlock()
	return out
}

// put caches a, the answer to q, both full messages.
func (c *answerCache) put(zs *zoneSet, q, a []byte, now time.Time) {
	if c == nil || len(q) < 12 || len(a) < 12 {
		return
	}
	e := &cacheEntry{key: string(q[2:]), ans: append([]byte(nil), a[2:]...), born: now.UnixNano()}
	if e.size() > c.maxShard {
		return
	}
	sh := c.shard(q[2:])
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.zs != zs || sh.m == nil {
		sh.reset(zs)
	}
	if _, ok := sh.m[e.key]; ok {
		return // another reader answered it first
	}
	sh.trim(c.maxShard-e.size(), now.UnixNano()-int64(c.maxAge))
	sh.m[e.key] = e
	sh.queue = append(sh.queue, e)
	sh.bytes += e.size()
	sh.peak = max(sh.peak, len(sh.m))
}

// sweep removes the entries older than maxAge from every shard (and
// gives back the memory of maps that shrank), so that an idle server
// does not keep what a flood left.
func (c *answerCache) sweep(now time.Time) {
	if c == nil {
		return
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.trim(c.maxShard, now.UnixNano()-int64(c.maxAge))
		sh.mu.Unlock()
	}
}

// bytes returns the bytes accounted in the cache.
func (c *answerCache) bytes() int64 {
	var n int64
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += sh.bytes
		sh.mu.RUnlock()
	}
	return n
}

// entries returns the number of cached answers.
func (c *answerCache) entries() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

func (sh *cacheShard) reset(zs *zoneSet) {
	sh.zs, sh.m, sh.queue, sh.head, sh.bytes, sh.peak = zs, make(map[string]*cacheEntry), nil, 0, 0, 0
}

// trim removes the oldest entries until the shard holds at most limit
// bytes and none was born before oldest.
func (sh *cacheShard) trim(limit, oldest int64) {
	for sh.head < len(sh.queue) {
		e := sh.queue[sh.head]
		if sh.bytes <= limit && e.born >= oldest {
			break
		}
		sh.queue[sh.head] = nil
		sh.head++
		if sh.m[e.key] == e {
			delete(sh.m, e.key)
		}
		sh.bytes -= e.size()
	}
	if sh.head > 0 && sh.head >= len(sh.queue)/2 {
		sh.queue = append(sh.queue[:0:0], sh.queue[sh.head:]...)
		sh.head = 0
	}
	if sh.m != nil && sh.peak > 1024 && len(sh.m) < sh.peak/4 {
		m := make(map[string]*cacheEntry, len(sh.m))
		for k, v := range sh.m {
			m[k] = v
		}
		sh.m, sh.peak = m, len(m)
	}
}
