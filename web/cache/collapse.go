// Collapsed forwarding: concurrent misses for one URL wait for a single
// origin fetch (a flight) and stream its response as it arrives.

package cache

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// flight is one origin fetch that concurrent misses wait for. When the
// response is being stored, the fetching request publishes it (status,
// header and the body as it arrives) so waiters stream it too.
type flight struct {
	done    chan struct{}
	waiters atomic.Int32
	stored  bool
	err     error

	ready chan struct{} // closed by start: the response streams
	// set by start, then read-only:
	code  int
	hdr   http.Header // as sent upstream of us (without our Cache-Status)
	names []string    // the response's Vary
	vkey  string      // the fetching request's secondary key

	mu   sync.Mutex
	buf  []byte        // append-only: bytes below len never change
	more chan struct{} // closed and replaced when buf grows or the body ends
	end  int           // 0 while streaming, streamOK or streamFailed
}

const (
	streamOK = 1 + iota
	streamFailed
	// streamTooLarge: a body of unknown length outgrew MaxObjectBytes, so
	// it is not stored and no longer published; waiters fetch the rest
	// themselves (resume).
	streamTooLarge
)

func newFlight() *flight {
	return &flight{done: make(chan struct{}), ready: make(chan struct{}), more: make(chan struct{})}
}

// start publishes the response's head to the waiters.
func (f *flight) start(code int, h http.Header, r *http.Request) {
	f.code, f.hdr = code, h
	f.names, _ = varyNames(h)
	f.vkey = VaryKey(f.names, r.Header)
	close(f.ready)
}

// grow publishes the body received so far.
func (f *flight) grow(buf []byte) {
	f.mu.Lock()
	f.buf = buf
	close(f.more)
	f.more = make(chan struct{})
	f.mu.Unlock()
}

// finish ends the published body (a no-op once ended).
func (f *flight) finish(end int) {
	f.mu.Lock()
	if f.end == 0 {
		f.end = end
		close(f.more)
	}
	f.mu.Unlock()
}

// follow serves a waiter the response its flight is streaming. It returns
// false, having written nothing, when the response doesn't apply to r
// (another Vary selection).
func (c *Cache) follow(w http.ResponseWriter, r *http.Request, f *flight, status string) bool {
	if VaryKey(f.names, r.Header) != f.vkey {
		return false
	}
	h := w.Header()
	for k, v := range f.hdr {
		h[k] = v
	}
	c.stripTargeted(h)
	h["Cache-Status"] = c.cacheStatus(f.hdr["Cache-Status"], status+"; "+csDetailColl)
	c.st.hits.Add(1)
	noSniff(h)
	w.WriteHeader(f.code)
	off := 0
	for {
		f.mu.Lock()
		b, end, more := f.buf[off:], f.end, f.more
		f.mu.Unlock()
		if len(b) > 0 {
			n, err := w.Write(b)
			c.st.bytesCache.Add(int64(n))
			if err != nil {
				return true
			}
			flush(w) // what arrived goes out now, not with the next part
			off += len(b)
			continue
		}
		switch end {
		case streamOK:
			return true
		case streamTooLarge:
			c.resume(w, r, f, off)
			return true
		case streamFailed:
			// The origin's body broke off: so does ours, so the client
			// sees a truncated response, not a short complete one.
			panic(http.ErrAbortHandler)
		}
		select {
		case <-more:
		case <-r.Context().Done():
			return true
		}
	}
}

// resume finishes a waiter's response whose flight stopped publishing
// after off bytes (a body of unknown length too large to store): the rest
// is fetched with a Range request made conditional on the response's
// strong ETag (If-Range), so the client gets one consistent
// representation. Without a strong ETag, or when the origin doesn't answer
// with exactly that range, the waiter's response is aborted (truncated,
// never short-but-complete).
func (c *Cache) resume(w http.ResponseWriter, r *http.Request, f *flight, off int) {
	etag := ""
	if vs := f.hdr["Etag"]; len(vs) == 1 && strings.HasPrefix(vs[0], `"`) {
		etag = vs[0]
	}
	if etag == "" {
		panic(http.ErrAbortHandler)
	}
	out, cancel := c.outbound(r)
	defer cancel()
	stripClientConditionals(out.Header)
	out.Header["Range"] = []string{"bytes=" + strconv.Itoa(off) + "-"}
	out.Header["If-Range"] = []string{etag}
	res, err := c.roundTrip(out)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	defer res.Body.Close()
	cr := res.Header.Get("Content-Range")
	if res.StatusCode != http.StatusPartialContent || !strings.HasPrefix(cr, "bytes "+strconv.Itoa(off)+"-") ||
		res.Header.Get("Etag") != etag {
		panic(http.ErrAbortHandler)
	}
	n, err := io.Copy(w, res.Body)
	c.st.bytesOrigin.Add(n)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
}

// stream copies res to w, teeing the body into a buffer of at most
// MaxObjectBytes when keep is non-nil; *keep is set to the complete body,
// or nil when it was too large or the copy failed.
//
// When f is given (a coalesced fetch being stored) and the body's length
// is known, the response is published to f's waiters as it arrives.
func (c *Cache) stream(w http.ResponseWriter, r *http.Request, res *http.Response, status string, keep *[]byte, f *flight) {
	h := w.Header()
	for k, v := range res.Header {
		h[k] = v
	}
	c.stripTargeted(h)
	if f != nil && (keep == nil || res.ContentLength > c.cfg.MaxObjectBytes) {
		f = nil
	}
	if f != nil {
		f.start(res.StatusCode, res.Header.Clone(), r)
		defer f.finish(streamFailed) // unless finished well below
	}
	h["Cache-Status"] = c.cacheStatus(res.Header["Cache-Status"], status)
	noSniff(h)
	w.WriteHeader(res.StatusCode)
	var buf []byte
	if keep != nil && res.ContentLength >= 0 && res.ContentLength <= c.cfg.MaxObjectBytes {
		buf = make([]byte, 0, res.ContentLength)
	}
	// Small objects of known length are read straight into the stored
	// body; larger ones are streamed to the client while they are stored.
	direct := buf != nil && res.ContentLength <= 64<<10
	storing := keep != nil && res.ContentLength <= c.cfg.MaxObjectBytes
	clientOK := r.Method != http.MethodHead
	var total int64
	var rerr error
	if direct {
		n, err := io.ReadFull(res.Body, buf[:cap(buf)])
		buf = buf[:n]
		total = int64(n)
		if err != nil {
			rerr = err
		} else if extra, _ := res.Body.Read(make([]byte, 1)); extra > 0 {
			// the client got the declared length; just don't store it
			storing = false
		}
		if f != nil {
			f.grow(buf)
		}
		if clientOK && n > 0 {
			w.Write(buf)
		}
	} else {
		cp := c.chunks.Get().(*[]byte)
		chunk := *cp
		for {
			n, err := res.Body.Read(chunk)
			if n > 0 {
				total += int64(n)
				if storing {
					if int64(len(buf)+n) > c.cfg.MaxObjectBytes {
						storing, buf = false, nil
						if f != nil {
							f.finish(streamTooLarge)
						}
					} else {
						buf = append(buf, chunk[:n]...)
						if f != nil {
							f.grow(buf)
						}
					}
				}
				if clientOK {
					if _, werr := w.Write(chunk[:n]); werr != nil {
						clientOK = false
						if !storing {
							break
						}
					} else {
						flush(w) // stream at the origin's pace
					}
				}
			}
			if err != nil {
				if err != io.EOF {
					rerr = err
				}
				break
			}
		}
		c.chunks.Put(cp)
	}
	c.st.bytesOrigin.Add(total)
	if rerr != nil && r.Method != http.MethodHead {
		// The origin's body broke off: so does the client's response, so
		// it sees a truncated response (a chunked one would otherwise end
		// cleanly, short but complete). The waiters' follow suit.
		if f != nil {
			f.finish(streamFailed)
		}
		panic(http.ErrAbortHandler)
	}
	if f != nil && storing && rerr == nil {
		f.finish(streamOK)
	}
	if keep != nil {
		if storing && rerr == nil {
			if buf == nil {
				buf = []byte{}
			}
			*keep = buf
		} else {
			*keep = nil
		}
	}
}

// waiting reports how many requests wait for an in-flight fetch of rawURL
// (for tests).
func (c *Cache) waiting(rawURL string) int {
	k, _ := keyOfURL(rawURL)
	c.fmu.Lock()
	defer c.fmu.Unlock()
	if f := c.flights[k]; f != nil {
		return int(f.waiters.Load())
	}
	return 0
}

// revalidating reports whether a background validation is running (for
// any key when key is empty).
func (c *Cache) revalidating(key string) bool {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	if key == "" {
		return len(c.reval) > 0
	}
	return c.reval[key]
}
