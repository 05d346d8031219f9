package server

import (
	"os"
	"sync/atomic"
)

// Files of sendfileMin bytes and more are sent by the HTTP/1.1 fast path
// with sendfile(2) (web/fastpath's Writer.SendFile) from a descriptor the
// cache entry keeps open, as nginx's open_file_cache and sendfile do:
// the body goes from the page cache to the socket without a copy in
// user space, and the response's header shares its first segment
// (MSG_MORE). Smaller bodies are copied from memory with the header (one
// write). Files above cacheMaxFile are cached without their body ("large"
// entries) and only the fast path serves them from the cache; HTTP/2 and
// net/http open them per request (net/http with its own sendfile).
const (
	sendfileMin = 16 << 10
	// maxOpenFiles caps a site's cached open descriptors; beyond it a
	// file is opened per request.
	maxOpenFiles = 1000
)

// sendFile is an open file bodies are sent from: held by its cache
// entry (until the entry is dropped) and by each batch sending from it,
// closed when the last lets go. Many connections send from one
// descriptor at once: sendfile is given the offset, the file's own is
// not used.
type sendFile struct {
	f    *os.File
	fd   int
	refs atomic.Int32
	open *atomic.Int32 // the cache's count of open files
}

// newSendFile takes f (one reference, the caller's).
func (c *fileCache) newSendFile(f *os.File) *sendFile {
	sf := &sendFile{f: f, fd: int(f.Fd()), open: &c.open}
	sf.refs.Store(1)
	c.open.Add(1)
	return sf
}

// acquire takes a reference; false once the file is closed.
func (sf *sendFile) acquire() bool {
	for {
		n := sf.refs.Load()
		if n <= 0 {
			return false
		}
		if sf.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Release implements fastpath.Releaser: it drops a reference, closing
// the file with the last.
func (sf *sendFile) Release() {
	if sf.refs.Add(-1) == 0 {
		sf.f.Close()
		sf.open.Add(-1)
	}
}

// sendFileFor returns e's file with a reference taken for the caller,
// opening it (and checking it is still the file e describes: size and
// modification time) when the entry holds none; nil when it cannot be
// opened or has changed (e is then dropped and the general path
// answers). An entry out of the cache, or a site at maxOpenFiles, gets a
// file for this request alone.
func (s *fileSite) sendFileFor(e *cacheEntry) *sendFile {
	if sf := e.file.Load(); sf != nil && sf.acquire() {
		return sf
	}
	f, err := s.open(e.name)
	if err != nil {
		s.cache.drop(e)
		return nil
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != e.size || !fi.ModTime().Equal(e.mod) {
		f.Close()
		s.cache.drop(e)
		return nil
	}
	sf := s.cache.newSendFile(f)
	if e.dropped.Load() || s.cache.open.Load() > maxOpenFiles {
		return sf
	}
	sf.refs.Store(2) // the entry's and the caller's
	if !e.file.CompareAndSwap(nil, sf) {
		sf.refs.Store(1) // another request attached one first
		return sf
	}
	if e.dropped.Load() {
		// Dropped meanwhile: retire may have run before the swap.
		if g := e.file.Swap(nil); g != nil {
			g.Release()
		}
	}
	return sf
}
