package authority

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// answerCache keeps packed UDP answers by the exact bytes of the query
// after its ID (so case, flags, EDNS buffer and DO all take part). One
// cache serves every UDP socket. Its size is bounded in bytes (keys,
// answers and a per-entry overhead): when full, the oldest entry goes,
// unless it was asked for since it was cached or last spared (CLOCK's
// second chance), so a flood of random names pushes out its own answers
// and not the popular ones. Entries unused for maxAge are not served and
// are removed by sweep, and the cache is emptied when the zones change.
// It holds at most maxBytes whatever the query mix (issue 10: one
// unbounded cache per socket reached 437 MB).
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
	key string
	ans []byte // the answer after its ID
	// used is when the entry was cached or last served (unix
	// nanoseconds, kept to the second); ref is set when it is served and
	// cleared when eviction spares it.
	used atomic.Int64
	ref  atomic.Bool
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
	t := now.UnixNano()
	if !ok || sh.zs != zs || t-e.used.Load() > int64(c.maxAge) {
		sh.mu.RUnlock()
		return nil
	}
	if t-e.used.Load() > int64(time.Second) {
		e.used.Store(t)
	}
	if !e.ref.Load() {
		e.ref.Store(true)
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
	e := &cacheEntry{key: string(q[2:]), ans: append([]byte(nil), a[2:]...)}
	e.used.Store(now.UnixNano())
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
	sh.evict(c.maxShard - e.size())
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
		sh.expire(now.UnixNano() - int64(c.maxAge))
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

// evict removes entries, oldest first, until the shard holds at most
// limit bytes. An entry served since it was cached or last spared is
// spared once more: moved to the back with its mark cleared.
func (sh *cacheShard) evict(limit int64) {
	for sh.bytes > limit && sh.head < len(sh.queue) {
		e := sh.queue[sh.head]
		sh.queue[sh.head] = nil
		sh.head++
		if e.ref.Load() {
			e.ref.Store(false)
			sh.queue = append(sh.queue, e)
			continue
		}
		sh.drop(e)
	}
	sh.compact()
}

// expire removes the entries unused since oldest (unix nanoseconds).
func (sh *cacheShard) expire(oldest int64) {
	live := sh.queue[:0]
	for _, e := range sh.queue[sh.head:] {
		if e.used.Load() < oldest {
			sh.drop(e)
			continue
		}
		live = append(live, e)
	}
	clear(sh.queue[len(live):])
	sh.queue, sh.head = live, 0
	sh.compact()
}

func (sh *cacheShard) drop(e *cacheEntry) {
	if sh.m[e.key] == e {
		delete(sh.m, e.key)
	}
	sh.bytes -= e.size()
}

// compact gives back the space of the queue's consumed head and of a map
// that shrank to a quarter of its peak (a map keeps its buckets when
// entries are deleted).
func (sh *cacheShard) compact() {
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
	if len(sh.queue) == 0 && cap(sh.queue) > 1024 {
		sh.queue = nil
	}
}
