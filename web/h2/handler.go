package h2

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// pipe is a request body: DATA frames in, the handler's reads out. It
// holds at most the stream's receive window.
type pipe struct {
	mu      sync.Mutex
	cond    sync.Cond
	buf     []byte
	err     error // after buf drains
	closed  bool  // the handler closed it
	trailer http.Header
	dst     http.Header // the request's Trailer to fill at EOF
	onRead  func(n int)
	stop    func() bool // stops the read timeout's timer
}

func newPipe(onRead func(int)) *pipe {
	p := &pipe{onRead: onRead}
	p.cond.L = &p.mu
	return p
}

// write appends data; false when the handler has closed the body.
func (p *pipe) write(b []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.err != nil {
		return false
	}
	p.buf = append(p.buf, b...)
	p.cond.Broadcast()
	return true
}

func (p *pipe) closeWithError(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
		if p.stop != nil {
			p.stop()
		}
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *pipe) closeWithTrailers(err error, tr, dst http.Header) {
	p.mu.Lock()
	p.trailer, p.dst = tr, dst
	p.mu.Unlock()
	p.closeWithError(err)
}

func (p *pipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	for len(p.buf) == 0 && p.err == nil && !p.closed {
		p.cond.Wait()
	}
	if p.closed {
		p.mu.Unlock()
		return 0, errors.New("h2: read on closed body")
	}
	if len(p.buf) == 0 {
		err := p.err
		if err == io.EOF {
			for k, vv := range p.trailer {
				if _, ok := p.dst[k]; ok {
					p.dst[k] = vv
				}
			}
		}
		p.mu.Unlock()
		return 0, err
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	if len(p.buf) == 0 {
		p.buf = nil
	}
	p.mu.Unlock()
	p.onRead(n)
	return n, nil
}

func (p *pipe) Close() error {
	p.mu.Lock()
	n := len(p.buf)
	p.closed, p.buf = true, nil
	p.mu.Unlock()
	if n > 0 {
		p.onRead(n) // return the credit of what was never read
	}
	return nil
}

// newRequest builds the http.Request of a stream (mu held).
func (c *conn) newRequest(st *stream, h reqHead, fields []hpack.HeaderField) (*http.Request, error) {
	hdr := make(http.Header, len(fields))
	var cookies []string
	for _, f := range fields {
		if f.IsPseudo() {
			continue
		}
		if f.Name == "cookie" {
			cookies = append(cookies, f.Value)
			continue
		}
		k := http.CanonicalHeaderKey(f.Name)
		hdr[k] = append(hdr[k], f.Value)
	}
	if len(cookies) > 0 {
		hdr["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	host := h.authority
	if host == "" {
		host = hdr.Get("Host")
	}
	var u *url.URL
	var err error
	uri := h.path
	if h.method == http.MethodConnect {
		u, uri = &url.URL{Host: host}, host
	} else if u, err = url.ParseRequestURI(h.path); err != nil {
		return nil, fmt.Errorf("h2: bad :path: %w", err)
	}
	ctx, cancel := context.WithCancel(c.ctx)
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, c.nc.LocalAddr())
	st.cancel = cancel
	req := (&http.Request{
		Method: h.method, URL: u, Proto: "HTTP/2.0", ProtoMajor: 2, Header: hdr, Host: host,
		RemoteAddr: c.nc.RemoteAddr().String(), RequestURI: uri, TLS: c.tls, Body: http.NoBody,
	}).WithContext(ctx)
	if st.state == stateOpen {
		if vv := hdr["Trailer"]; len(vv) > 0 {
			req.Trailer = http.Header{}
			for _, v := range vv {
				for _, k := range strings.Split(v, ",") {
					if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" {
						req.Trailer[k] = nil
					}
				}
			}
			st.reqTrailer = req.Trailer
		}
		st.body = newPipe(func(n int) {
			c.mu.Lock()
			c.creditLocked(st, int64(n))
			c.mu.Unlock()
			c.flush()
		})
		req.Body = st.body
		req.ContentLength = h.declLen
		if d := c.cfg.ReadTimeout; d > 0 {
			body := st.body
			t := time.AfterFunc(d, func() { body.closeWithError(os.ErrDeadlineExceeded) })
			body.mu.Lock()
			body.stop = t.Stop
			body.mu.Unlock()
		}
	}
	return req, nil
}

// runHandler runs the http.Handler for a stream on its own goroutine.
func (c *conn) runHandler(st *stream, req *http.Request) {
	rw := &responseWriter{c: c, st: st, req: req, hdr: http.Header{}}
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				c.cfg.Logger.Error("http2 handler panic", "path", req.URL.Path, "panic", fmt.Sprint(p))
			}
			c.resetStream(st.id, http2.ErrCodeInternal)
			c.flush()
		} else {
			rw.finish()
		}
		if st.body != nil {
			st.body.Close()
		}
		c.mu.Lock()
		c.handlers--
		c.dropStream(st, errStreamClosed) // finished: already gone
		c.kickLocked()
		c.mu.Unlock()
	}()
	c.s.h.ServeHTTP(rw, req)
}

// chunkSize is how much a handler's writes gather before a DATA frame.
const chunkSize = 16 << 10

// responseWriter is a handler's http.ResponseWriter, Flusher and Pusher.
type responseWriter struct {
	c   *conn
	st  *stream
	req *http.Request
	hdr http.Header

	status     int
	wroteHdr   bool // WriteHeader called (a final status)
	sentHdr    bool // HEADERS written
	declLen    int64
	written    int64
	buf        []byte
	trailers   []string // names declared in Trailer
	err        error
	handlerEnd bool
}

func (w *responseWriter) Header() http.Header { return w.hdr }

func (w *responseWriter) WriteHeader(code int) {
	if w.wroteHdr {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// Informational: sent at once, the final answer follows.
		fields := make([]hpack.HeaderField, 0, len(w.hdr))
		for k, vv := range w.hdr {
			if name, ok := responseFieldName(k); ok {
				for _, v := range vv {
					fields = append(fields, hpack.HeaderField{Name: name, Value: v})
				}
			}
		}
		w.c.mu.Lock()
		if !w.st.gone {
			w.c.wmu.Lock()
			w.c.writeHeadersLocked(w.st.id, code, fields, nil, false)
			w.c.flushLocked()
			w.c.wmu.Unlock()
		}
		w.c.mu.Unlock()
		return
	}
	w.wroteHdr, w.status = true, code
	w.declLen = -1
	if v := w.hdr.Get("Content-Length"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			w.declLen = n
		} else {
			w.hdr.Del("Content-Length")
		}
	}
	for _, v := range w.hdr["Trailer"] {
		for _, k := range strings.Split(v, ",") {
			if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" {
				w.trailers = append(w.trailers, k)
			}
		}
	}
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wroteHdr {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) || w.req.Method == http.MethodHead {
		if bodyAllowed(w.status) {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.declLen >= 0 && w.written+int64(len(p)) > w.declLen {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	n := len(p)
	for len(p) > 0 {
		room := chunkSize - len(w.buf)
		if room == 0 {
			if err := w.send(false, false); err != nil {
				return n - len(p), err
			}
			continue
		}
		k := min(room, len(p))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
	}
	return n, nil
}

func (w *responseWriter) WriteString(s string) (int, error) {
	return w.Write([]byte(s))
}

// Flush sends the header and what is buffered.
func (w *responseWriter) Flush() { w.FlushError() }

// FlushError is Flush reporting failure (http.ResponseController).
func (w *responseWriter) FlushError() error {
	if !w.wroteHdr {
		w.WriteHeader(http.StatusOK)
	}
	err := w.send(false, true)
	w.c.flush()
	return err
}

// trailerFields collects the trailers to send at the end.
func (w *responseWriter) trailerFields() []hpack.HeaderField {
	var out []hpack.HeaderField
	add := func(k string, vv []string) {
		name, ok := responseFieldName(k)
		if !ok {
			return
		}
		for _, v := range vv {
			out = append(out, hpack.HeaderField{Name: name, Value: v})
		}
	}
	for _, k := range w.trailers {
		add(k, w.hdr[k])
	}
	for k, vv := range w.hdr {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			add(strings.TrimPrefix(k, http.TrailerPrefix), vv)
		}
	}
	return out
}

// send writes the header if not yet sent and the buffered body; final
// ends the stream (with trailers when there are).
func (w *responseWriter) send(final, flush bool) error {
	c, st := w.c, w.st
	var trailers []hpack.HeaderField
	if final {
		trailers = w.trailerFields()
	}
	if !w.sentHdr {
		if final && w.declLen < 0 && bodyAllowed(w.status) && w.req.Method != http.MethodHead && len(trailers) == 0 {
			if _, ok := w.hdr["Transfer-Encoding"]; !ok {
				w.hdr["Content-Length"] = []string{strconv.Itoa(len(w.buf))}
			}
		}
		if _, ok := w.hdr["Content-Type"]; !ok && bodyAllowed(w.status) && len(w.buf) > 0 {
			if _, enc := w.hdr["Content-Encoding"]; !enc {
				w.hdr["Content-Type"] = []string{http.DetectContentType(w.buf[:min(len(w.buf), 512)])}
			}
		}
		hdr := w.hdr
		if len(w.trailers) > 0 || hasTrailerPrefix(hdr) {
			hdr = hdr.Clone()
			for k := range hdr {
				if strings.HasPrefix(k, http.TrailerPrefix) {
					delete(hdr, k)
				}
			}
		}
		end := final && len(w.buf) == 0 && len(trailers) == 0
		c.mu.Lock()
		if st.gone {
			c.mu.Unlock()
			w.err = errStreamClosed
			return w.err
		}
		c.wmu.Lock()
		c.writeHeadersLocked(st.id, w.status, nil, hdr, end)
		c.wmu.Unlock()
		w.sentHdr = true
		if end {
			c.finishStreamLocked(st)
			c.mu.Unlock()
			c.flush()
			return nil
		}
		c.mu.Unlock()
	}
	p := w.buf
	endData := final && len(trailers) == 0
	for len(p) > 0 || endData {
		c.mu.Lock()
		for len(p) > 0 && (st.sendWin <= 0 || c.sendWin <= 0) && !st.gone && !c.closed {
			c.flush() // what was written before waiting for credit
			c.creditWaiters++
			c.cond.Wait()
			c.creditWaiters--
		}
		if st.gone || c.closed {
			c.mu.Unlock()
			w.err = errStreamClosed
			return w.err
		}
		n := min(int64(len(p)), st.sendWin, c.sendWin, int64(c.peerMaxFrame))
		st.sendWin -= n
		c.sendWin -= n
		last := endData && n == int64(len(p))
		c.wmu.Lock()
		c.writeDataLocked(st.id, last, p[:n])
		c.wmu.Unlock()
		p = p[n:]
		if last {
			c.finishStreamLocked(st)
			c.mu.Unlock()
			break
		}
		c.mu.Unlock()
	}
	w.buf = w.buf[:0]
	if final && len(trailers) > 0 {
		c.mu.Lock()
		if !st.gone {
			c.wmu.Lock()
			c.writeHeadersLocked(st.id, 0, trailers, nil, true)
			c.wmu.Unlock()
			c.finishStreamLocked(st)
		}
		c.mu.Unlock()
	}
	if final {
		c.flush()
	}
	return nil
}

func hasTrailerPrefix(h http.Header) bool {
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return true
		}
	}
	return false
}

// finish completes the answer when the handler returns.
func (w *responseWriter) finish() {
	if !w.wroteHdr {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return
	}
	if w.declLen >= 0 && w.written < w.declLen && bodyAllowed(w.status) && w.req.Method != http.MethodHead {
		// Shorter than its Content-Length: the peer must not take it
		// as complete.
		w.send(false, false)
		w.c.resetStream(w.st.id, http2.ErrCodeInternal)
		w.c.flush()
		return
	}
	w.send(true, true)
}

// Push implements http.Pusher: a PUSH_PROMISE on this stream, the pushed
// request answered by the handler on a stream of its own.
func (w *responseWriter) Push(target string, opts *http.PushOptions) error {
	c, st := w.c, w.st
	if st.pushed {
		return http.ErrNotSupported
	}
	method := http.MethodGet
	var hdr http.Header
	if opts != nil {
		if opts.Method != "" {
			method = opts.Method
		}
		hdr = opts.Header
	}
	if method != http.MethodGet && method != http.MethodHead {
		return fmt.Errorf("h2: push method %q not allowed", method)
	}
	u, err := url.Parse(target)
	if err != nil {
		return err
	}
	if u.Scheme != "" || u.Host != "" || !strings.HasPrefix(target, "/") {
		return fmt.Errorf("h2: push target %q must be an absolute path", target)
	}
	scheme := "http"
	if c.tls != nil {
		scheme = "https"
	}
	authority := w.req.Host
	fields := []hpack.HeaderField{
		{Name: ":method", Value: method}, {Name: ":scheme", Value: scheme},
		{Name: ":authority", Value: authority}, {Name: ":path", Value: target},
	}
	for k, vv := range hdr {
		name, ok := responseFieldName(k)
		if !ok || name == "content-length" || name == "host" || name == "te" {
			continue
		}
		for _, v := range vv {
			fields = append(fields, hpack.HeaderField{Name: name, Value: v})
		}
	}
	c.mu.Lock()
	if !c.pushEnabled || c.goneAway || c.closed || st.gone {
		c.mu.Unlock()
		return http.ErrNotSupported
	}
	if c.pushStreams >= c.peerMaxPushes || c.lastPushID+2 > maxWindow {
		c.mu.Unlock()
		return errors.New("h2: too many pushed streams")
	}
	if c.handlers >= c.cfg.MaxConcurrentStreams {
		c.mu.Unlock()
		return errors.New("h2: too many handlers running")
	}
	id := c.lastPushID + 2
	if id == 0 || c.lastPushID == 0 {
		id = 2
	}
	c.lastPushID = id
	ps := &stream{id: id, state: stateHalfClosedRemote, pushed: true, sendWin: c.peerInitWin, urgency: 3, declLen: -1}
	c.streams[id] = ps
	c.pushStreams++
	c.wmu.Lock()
	c.hbuf.Reset()
	for _, f := range fields {
		c.henc.WriteField(f)
	}
	block := c.hbuf.Bytes()
	max := c.peerMaxFrame
	first := block
	if len(first) > max {
		first = block[:max]
	}
	c.fr.WritePushPromise(http2.PushPromiseParam{StreamID: st.id, PromiseID: id, BlockFragment: first, EndHeaders: len(first) == len(block)})
	for rest := block[len(first):]; len(rest) > 0; {
		n := min(len(rest), max)
		c.fr.WriteContinuation(st.id, n == len(rest), rest[:n])
		rest = rest[n:]
	}
	c.wmu.Unlock()
	h, _ := checkRequest(fields)
	req, err := c.newRequest(ps, h, fields)
	if err != nil {
		c.dropStream(ps, errStreamClosed)
		c.mu.Unlock()
		return err
	}
	ps.handler = true
	c.handlers++
	c.mu.Unlock()
	go c.runHandler(ps, req)
	return nil
}

// upgraded is an h2c Upgrade's request, answered as stream 1.
type upgraded struct {
	req  *http.Request
	body []byte
}

// startUpgraded creates stream 1 for an upgraded request.
func (c *conn) startUpgraded(up *upgraded) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.maxClientID = 1
	st := &stream{id: 1, state: stateHalfClosedRemote, sendWin: c.peerInitWin, urgency: 3, declLen: -1}
	c.streams[1] = st
	c.clientStreams++
	ctx, cancel := context.WithCancel(c.ctx)
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, c.nc.LocalAddr())
	st.cancel = cancel
	r := up.req.Clone(ctx)
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
	for _, k := range []string{"Connection", "Upgrade", "Http2-Settings", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding"} {
		r.Header.Del(k)
	}
	r.Body, r.ContentLength = http.NoBody, 0
	if len(up.body) > 0 {
		r.Body, r.ContentLength = io.NopCloser(strings.NewReader(string(up.body))), int64(len(up.body))
	}
	if r.RemoteAddr == "" {
		r.RemoteAddr = c.nc.RemoteAddr().String()
	}
	st.handler = true
	c.handlers++
	go c.runHandler(st, r)
	return nil
}

// applyUpgradeSettings applies an HTTP2-Settings header's SETTINGS.
func (c *conn) applyUpgradeSettings(payload []byte) error {
	if len(payload)%6 != 0 {
		return errors.New("h2: bad HTTP2-Settings length")
	}
	for i := 0; i+6 <= len(payload); i += 6 {
		s := http2.Setting{ID: http2.SettingID(uint16(payload[i])<<8 | uint16(payload[i+1])),
			Val: uint32(payload[i+2])<<24 | uint32(payload[i+3])<<16 | uint32(payload[i+4])<<8 | uint32(payload[i+5])}
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingEnablePush:
			c.pushEnabled = s.Val == 1
		case http2.SettingMaxConcurrentStreams:
			c.peerMaxPushes = s.Val
		case http2.SettingInitialWindowSize:
			c.peerInitWin = int64(s.Val)
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = int(s.Val)
		case http2.SettingHeaderTableSize:
			c.henc.SetMaxDynamicTableSize(min(s.Val, 4096))
		}
	}
	return nil
}

// ServeUpgrade serves an HTTP/1.1 request asking to upgrade to h2c
// (RFC 7540 3.2): it answers 101, hijacks the connection and serves it
// as HTTP/2 with the request as stream 1. It reports false, having done
// nothing, when r is not such a request (or carries a body over 64 KiB).
func (s *Server) ServeUpgrade(w http.ResponseWriter, r *http.Request) bool {
	if !IsUpgrade(r) {
		return false
	}
	settings, err := decodeSettings(r.Header.Get("Http2-Settings"))
	if err != nil {
		return false
	}
	var body []byte
	if r.ContentLength != 0 {
		body, err = io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
		if err != nil || len(body) > 64<<10 {
			return false
		}
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		return false
	}
	nc, rw, err := hj.Hijack()
	if err != nil {
		return false
	}
	nc = &bufferedConn{Conn: nc, r: rw.Reader}
	c := s.newConn(nc, false)
	if c == nil {
		nc.Close()
		return true
	}
	if err := c.applyUpgradeSettings(settings); err != nil {
		s.forget(c)
		nc.Close()
		return true
	}
	io.WriteString(nc, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
	c.serve(&upgraded{req: r, body: body})
	return true
}

// IsUpgrade reports whether r asks to upgrade to h2c.
func IsUpgrade(r *http.Request) bool {
	if r.ProtoMajor != 1 || len(r.Header["Http2-Settings"]) != 1 {
		return false
	}
	return headerHasToken(r.Header["Upgrade"], "h2c") && headerHasToken(r.Header["Connection"], "upgrade") &&
		headerHasToken(r.Header["Connection"], "http2-settings")
}

func headerHasToken(vv []string, tok string) bool {
	for _, v := range vv {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), tok) {
				return true
			}
		}
	}
	return false
}

func decodeSettings(v string) ([]byte, error) {
	return base64URLDecode(v)
}

// bufferedConn reads first what the HTTP/1 server had buffered.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func base64URLDecode(v string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(v, "="))
}
