package h2

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

const (
	readBufSize  = 8 << 10
	writeBufSize = 32 << 10
	// initialWindow is RFC 9113's window before SETTINGS change it.
	initialWindow = 65535
	maxWindow     = 1<<31 - 1
	// goAwayLinger is how long a connection ended by an error keeps
	// reading (and dropping) after its GOAWAY, so the peer receives the
	// GOAWAY rather than a TCP reset.
	goAwayLinger = time.Second
)

type streamState uint8

const (
	stateIdle streamState = iota
	stateOpen
	stateHalfClosedRemote // the peer has sent END_STREAM
	stateClosed
)

// stream is one request and its answer. Its fields are guarded by the
// connection's mu.
type stream struct {
	id      uint32
	state   streamState
	pushed  bool
	sendWin int64 // what we may still send
	recvWin int64 // what the peer may still send
	unacked int64 // consumed, not yet returned by WINDOW_UPDATE

	body            *pipe // the request body a handler reads (nil: none)
	declLen, gotLen int64
	reqTrailer      http.Header

	// pending is a Fast answer's body waiting for flow-control credit;
	// it ends the stream when sent.
	pending []byte

	urgency     uint8 // RFC 9218: 0 (highest) to 7, default 3
	incremental bool

	handler bool // a handler goroutine answers it
	gone    bool // closed or reset: writes fail
	cancel  context.CancelFunc
}

// headerBlock is a header block being received (HEADERS, CONTINUATION).
type headerBlock struct {
	id           uint32
	endStream    bool
	hasPrio      bool
	prio         http2.PriorityParam
	fields       []hpack.HeaderField
	size         uint32 // RFC 9113 header list size of fields
	bytes        int    // encoded bytes so far
	frames       int
	truncated    bool // over MaxHeaderListSize
	invalid      error
	sawRegular   bool
	inProgress   bool
	maxBlockSize int
}

type conn struct {
	s   *Server
	cfg *Config
	nc  net.Conn
	tls *tls.ConnectionState

	// Read side: the serving goroutine only.
	br          *bufio.Reader
	fr          *http2.Framer
	hdec        *hpack.Decoder
	hb          headerBlock
	sawSettings bool
	rdlSet      time.Time
	freq        Request
	fresp       Response

	// wmu guards the write side: bw, the Framer's writes, the hpack
	// encoder.
	wmu     sync.Mutex
	bw      *bufio.Writer
	henc    *hpack.Encoder
	hbuf    bytes.Buffer
	dateSec int64
	date    string
	werr    error
	wdlSet  time.Time

	// mu guards the streams and the flow-control state. Lock order: mu,
	// then wmu.
	mu            sync.Mutex
	cond          sync.Cond
	streams       map[uint32]*stream
	maxClientID   uint32
	lastPushID    uint32
	sendWin       int64
	recvWin       int64
	unacked       int64
	peerInitWin   int64
	peerMaxFrame  int
	peerMaxPushes uint32
	pushEnabled   bool
	clientStreams uint32
	pushStreams   uint32
	handlers      uint32
	goneAway      bool // GOAWAY sent: no new streams
	closed        bool
	unackedSet    int
	resetTokens   float64
	resetAt       time.Time
	waiting       []*stream // streams with pending Fast bodies
	creditWaiters int       // handlers waiting for flow-control credit
	ctx           context.Context
	cancel        context.CancelFunc
}

func newConn(s *Server, nc net.Conn, isTLS bool) *conn {
	c := &conn{
		s: s, cfg: &s.cfg, nc: nc,
		br:            bufio.NewReaderSize(nc, readBufSize),
		bw:            bufio.NewWriterSize(nc, writeBufSize),
		streams:       map[uint32]*stream{},
		sendWin:       initialWindow,
		recvWin:       int64(s.cfg.ConnWindow),
		peerInitWin:   initialWindow,
		peerMaxFrame:  16384,
		peerMaxPushes: maxWindow,
		pushEnabled:   true,
		resetTokens:   float64(s.cfg.MaxResets),
	}
	c.cond.L = &c.mu
	c.fr = http2.NewFramer(c.bw, c.br)
	c.fr.SetMaxReadFrameSize(16384)
	c.hdec = hpack.NewDecoder(4096, c.emit)
	c.henc = hpack.NewEncoder(&c.hbuf)
	if tc, ok := nc.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		c.tls = &cs
	} else if isTLS {
		c.tls = &tls.ConnectionState{}
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// connError ends the connection with GOAWAY code.
type connError struct {
	code   http2.ErrCode
	reason string
}

func (e connError) Error() string {
	return fmt.Sprintf("h2: connection error %v: %s", e.code, e.reason)
}

func streamErr(id uint32, code http2.ErrCode) error {
	return http2.StreamError{StreamID: id, Code: code}
}

// serve runs the connection; up, when set, is an h2c Upgrade's request,
// answered as stream 1.
func (c *conn) serve(up *upgraded) (err error) {
	defer c.s.forget(c)
	defer c.finish()
	if c.cfg.Observe != nil {
		c.cfg.Observe(c.nc, true)
		defer c.cfg.Observe(c.nc, false)
	}
	c.nc.SetReadDeadline(time.Now().Add(c.cfg.ReadHeaderTimeout))
	c.wmu.Lock()
	settings := []http2.Setting{
		{ID: http2.SettingMaxConcurrentStreams, Val: c.cfg.MaxConcurrentStreams},
		{ID: http2.SettingInitialWindowSize, Val: c.cfg.StreamWindow},
		{ID: http2.SettingMaxHeaderListSize, Val: c.cfg.MaxHeaderListSize},
	}
	c.fr.WriteSettings(settings...)
	c.unackedSet++
	if d := c.cfg.ConnWindow - initialWindow; d > 0 {
		c.fr.WriteWindowUpdate(0, d)
	}
	c.flushLocked()
	c.wmu.Unlock()
	var pre [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c.br, pre[:]); err != nil {
		return fmt.Errorf("h2: reading the client preface: %w", err)
	}
	if string(pre[:]) != http2.ClientPreface {
		c.goAway(connError{http2.ErrCodeProtocol, "bad client preface"})
		return errors.New("h2: bad client preface")
	}
	if up != nil {
		if err := c.startUpgraded(up); err != nil {
			c.goAway(err)
			return err
		}
	}
	for {
		if c.br.Buffered() == 0 {
			c.flush()
			if done, err := c.waitForFrame(); done {
				return err
			}
		}
		f, err := c.fr.ReadFrame()
		if err == nil {
			err = c.process(f)
		}
		if err == nil {
			continue
		}
		var se http2.StreamError
		var ce http2.ConnectionError
		var ce2 connError
		switch {
		case errors.As(err, &se):
			c.resetStream(se.StreamID, se.Code)
			continue
		case errors.As(err, &ce):
			c.goAway(connError{http2.ErrCode(ce), "frame: " + describe(c.fr.ErrorDetail())})
		case errors.Is(err, http2.ErrFrameTooLarge):
			c.goAway(connError{http2.ErrCodeFrameSize, "frame too large"})
		case errors.As(err, &ce2):
			c.goAway(ce2)
		default:
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			return err
		}
		return err
	}
}

func describe(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// waitForFrame blocks until bytes arrive, managing the idle timeout and
// graceful shutdown; done means the connection is over.
func (c *conn) waitForFrame() (done bool, err error) {
	for {
		c.mu.Lock()
		if c.goneAway && len(c.streams) == 0 && c.handlers == 0 {
			c.mu.Unlock()
			return true, nil
		}
		if now := time.Now(); now.Sub(c.rdlSet) > min(time.Second, c.cfg.IdleTimeout/4) {
			c.rdlSet = now
			c.nc.SetReadDeadline(now.Add(c.cfg.IdleTimeout))
		}
		c.mu.Unlock()
		_, err := c.br.Peek(1)
		if err == nil {
			return false, nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return true, nil // EOF or a broken connection
		}
		c.mu.Lock()
		active := len(c.streams) > 0 || c.handlers > 0
		stalled := len(c.waiting) > 0 || c.creditWaiters > 0
		ga := c.goneAway
		c.rdlSet = time.Time{}
		c.mu.Unlock()
		switch {
		case stalled:
			// Answers wait for credit and the peer has sent nothing
			// for a whole idle timeout: it is not reading.
			c.goAway(connError{http2.ErrCodeFlowControl, "peer stopped reading"})
			return true, nil
		case active:
			continue // a long answer: the peer need not send meanwhile
		case ga:
			return true, nil
		default:
			c.goAway(connError{http2.ErrCodeNo, "idle"})
			return true, nil
		}
	}
}

// finish tears the connection down: streams fail, handlers see their
// contexts canceled, the socket closes.
func (c *conn) finish() {
	c.mu.Lock()
	c.closed = true
	for _, st := range c.streams {
		c.dropStream(st, errConnClosed)
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	c.cancel()
	c.nc.Close()
}

var (
	errConnClosed   = errors.New("h2: connection closed")
	errStreamClosed = errors.New("h2: stream closed")
)

// flush writes what is buffered (the caller does not hold wmu).
func (c *conn) flush() {
	c.wmu.Lock()
	c.flushLocked()
	c.wmu.Unlock()
}

func (c *conn) flushLocked() {
	if c.bw.Buffered() == 0 || c.werr != nil {
		return
	}
	// The deadline moves at most every quarter of the timeout (and
	// second): each write has at least three quarters of it.
	if now := time.Now(); now.Sub(c.wdlSet) > min(time.Second, c.cfg.IdleTimeout/4) {
		c.wdlSet = now
		c.nc.SetWriteDeadline(now.Add(c.cfg.IdleTimeout))
	}
	if err := c.bw.Flush(); err != nil {
		c.werr = err
		c.nc.Close() // the reader ends too
	}
}

// goAway sends GOAWAY for an error (NO_ERROR for idle), then lingers
// reading so that the peer gets it.
func (c *conn) goAway(err error) {
	code, reason := http2.ErrCodeInternal, err.Error()
	var ce connError
	if errors.As(err, &ce) {
		code, reason = ce.code, ce.reason
	}
	if code != http2.ErrCodeNo {
		c.cfg.Logger.Debug("http2 connection error", "remote", c.nc.RemoteAddr().String(), "code", code.String(), "reason", reason)
	}
	c.mu.Lock()
	c.goneAway = true
	last := c.maxClientID
	c.wmu.Lock()
	c.fr.WriteGoAway(last, code, nil)
	c.flushLocked()
	c.wmu.Unlock()
	c.mu.Unlock()
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.nc.SetReadDeadline(time.Now().Add(goAwayLinger))
	io.Copy(io.Discard, io.LimitReader(c.br, 1<<20))
}

// goAwayGraceful announces a shutdown: streams so far are answered, no
// new ones start; the connection ends when they are done.
func (c *conn) goAwayGraceful() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.goneAway || c.closed {
		return
	}
	c.goneAway = true
	c.pushEnabled = false
	c.wmu.Lock()
	c.fr.WriteGoAway(c.maxClientID, http2.ErrCodeNo, nil)
	c.flushLocked()
	c.wmu.Unlock()
	c.kickLocked()
}

// kickLocked wakes the reader when a gone-away connection has nothing
// left to answer.
func (c *conn) kickLocked() {
	if c.goneAway && len(c.streams) == 0 && c.handlers == 0 {
		c.nc.SetReadDeadline(time.Unix(1, 0))
	}
}

// state returns the state of stream id and the stream when it is live.
func (c *conn) state(id uint32) (streamState, *stream) {
	if st := c.streams[id]; st != nil {
		return st.state, st
	}
	last := c.maxClientID
	if id%2 == 0 {
		last = c.lastPushID
	}
	if id <= last {
		return stateClosed, nil
	}
	return stateIdle, nil
}

func (c *conn) process(f http2.Frame) error {
	if !c.sawSettings {
		sf, ok := f.(*http2.SettingsFrame)
		if !ok || sf.IsAck() {
			return connError{http2.ErrCodeProtocol, "first frame is not SETTINGS"}
		}
		c.sawSettings = true
		c.rdlSet = time.Time{} // the preface's deadline: now the idle one
	}
	switch f := f.(type) {
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.HeadersFrame:
		return c.onHeaders(f)
	case *http2.ContinuationFrame:
		return c.onContinuation(f)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.RSTStreamFrame:
		return c.onReset(f)
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		c.wmu.Lock()
		c.fr.WritePing(true, f.Data)
		c.wmu.Unlock()
		return nil
	case *http2.GoAwayFrame:
		c.mu.Lock()
		c.pushEnabled = false
		c.mu.Unlock()
		if f.ErrCode != http2.ErrCodeNo {
			return connError{http2.ErrCodeNo, "peer sent GOAWAY " + f.ErrCode.String()}
		}
		// The client opens no more streams; those open are answered and
		// the connection ends when it closes it or goes idle.
		return nil
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			return streamErr(f.StreamID, http2.ErrCodeProtocol)
		}
		return nil // RFC 7540 priorities: accepted, not acted on
	case *http2.PriorityUpdateFrame:
		u, inc := parsePriority(f.Priority)
		c.mu.Lock()
		if st := c.streams[f.PrioritizedStreamID]; st != nil {
			st.urgency, st.incremental = u, inc
		}
		c.mu.Unlock()
		return nil
	case *http2.PushPromiseFrame:
		return connError{http2.ErrCodeProtocol, "PUSH_PROMISE from a client"}
	}
	return nil // unknown frame types are ignored
}

func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.unackedSet--; c.unackedSet < 0 {
			return connError{http2.ErrCodeProtocol, "SETTINGS ack without SETTINGS"}
		}
		return nil
	}
	if f.NumSettings() > 32 {
		return connError{http2.ErrCodeEnhanceYourCalm, "too many settings"}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	grew := false
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingHeaderTableSize:
			c.wmu.Lock()
			c.henc.SetMaxDynamicTableSize(min(s.Val, 4096))
			c.wmu.Unlock()
		case http2.SettingEnablePush:
			c.pushEnabled = s.Val == 1 && !c.goneAway
		case http2.SettingMaxConcurrentStreams:
			c.peerMaxPushes = s.Val
		case http2.SettingInitialWindowSize:
			d := int64(s.Val) - c.peerInitWin
			c.peerInitWin = int64(s.Val)
			for _, st := range c.streams {
				st.sendWin += d
				if st.sendWin > maxWindow {
					return connError{http2.ErrCodeFlowControl, "SETTINGS_INITIAL_WINDOW_SIZE overflows a window"}
				}
			}
			grew = grew || d > 0
		case http2.SettingMaxFrameSize:
			c.wmu.Lock()
			c.peerMaxFrame = int(s.Val)
			c.wmu.Unlock()
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.wmu.Lock()
	c.fr.WriteSettingsAck()
	c.wmu.Unlock()
	if grew {
		c.cond.Broadcast()
		c.sendWaitingLocked()
	}
	return nil
}

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		if c.sendWin+inc > maxWindow {
			return connError{http2.ErrCodeFlowControl, "connection window over 2^31-1"}
		}
		c.sendWin += inc
		c.cond.Broadcast()
		c.sendWaitingLocked()
		return nil
	}
	state, st := c.state(f.StreamID)
	if state == stateIdle {
		return connError{http2.ErrCodeProtocol, "WINDOW_UPDATE on an idle stream"}
	}
	if st == nil {
		return nil
	}
	if st.sendWin+inc > maxWindow {
		return streamErr(f.StreamID, http2.ErrCodeFlowControl)
	}
	st.sendWin += inc
	c.cond.Broadcast()
	if st.pending != nil {
		c.sendWaitingLocked()
	}
	return nil
}

func (c *conn) onReset(f *http2.RSTStreamFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	state, st := c.state(f.StreamID)
	if state == stateIdle {
		return connError{http2.ErrCodeProtocol, "RST_STREAM on an idle stream"}
	}
	if st == nil {
		return nil
	}
	c.dropStream(st, errStreamClosed)
	// A reset of a stream still being answered cost the server work the
	// peer threw away: rapid reset.
	return c.chargeResetLocked()
}

// chargeResetLocked takes a token for a reset or refused stream;
// without one the connection ends (CVE-2023-44487).
func (c *conn) chargeResetLocked() error {
	now := time.Now()
	if !c.resetAt.IsZero() {
		c.resetTokens = min(float64(c.cfg.MaxResets), c.resetTokens+now.Sub(c.resetAt).Seconds()*float64(c.cfg.ResetRate))
	}
	c.resetAt = now
	if c.resetTokens < 1 {
		return connError{http2.ErrCodeEnhanceYourCalm, "too many stream resets"}
	}
	c.resetTokens--
	return nil
}

// resetStream sends RST_STREAM and forgets the stream.
func (c *conn) resetStream(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	if st := c.streams[id]; st != nil {
		c.dropStream(st, errStreamClosed)
	}
	c.wmu.Lock()
	c.fr.WriteRSTStream(id, code)
	c.wmu.Unlock()
	c.mu.Unlock()
}

// dropStream ends a stream (mu held): its handler's writes fail and its
// body reads too.
func (c *conn) dropStream(st *stream, err error) {
	if st.gone {
		return
	}
	st.gone = true
	st.state = stateClosed
	st.pending = nil
	delete(c.streams, st.id)
	if st.pushed {
		c.pushStreams--
	} else {
		c.clientStreams--
	}
	if st.body != nil {
		st.body.closeWithError(err)
	}
	if st.cancel != nil {
		st.cancel()
	}
	c.cond.Broadcast()
	c.kickLocked()
}

// onData handles a DATA frame: flow control, the request body.
func (c *conn) onData(f *http2.DataFrame) error {
	id, n := f.StreamID, int64(f.Length)
	data := f.Data()
	c.mu.Lock()
	defer c.mu.Unlock()
	state, st := c.state(id)
	if state == stateIdle {
		return connError{http2.ErrCodeProtocol, "DATA on an idle stream"}
	}
	if n > c.recvWin {
		return connError{http2.ErrCodeFlowControl, "DATA over the connection window"}
	}
	c.recvWin -= n
	if st == nil || state != stateOpen || st.body == nil {
		c.creditLocked(nil, n)
		return streamErr(id, http2.ErrCodeStreamClosed)
	}
	if n > st.recvWin {
		c.creditLocked(nil, n)
		return streamErr(id, http2.ErrCodeFlowControl)
	}
	st.recvWin -= n
	st.gotLen += int64(len(data))
	if st.declLen >= 0 && st.gotLen > st.declLen {
		c.creditLocked(nil, n)
		return streamErr(id, http2.ErrCodeProtocol)
	}
	if pad := n - int64(len(data)); pad > 0 {
		c.creditLocked(st, pad)
	}
	if len(data) > 0 && !st.body.write(data) {
		c.creditLocked(nil, int64(len(data))) // the handler closed the body
	}
	if f.StreamEnded() {
		return c.endRequestLocked(st, nil)
	}
	return nil
}

// endRequestLocked ends a request body (END_STREAM), with trailers.
func (c *conn) endRequestLocked(st *stream, trailers []hpack.HeaderField) error {
	if st.declLen >= 0 && st.gotLen != st.declLen {
		return streamErr(st.id, http2.ErrCodeProtocol)
	}
	st.state = stateHalfClosedRemote
	if st.body != nil {
		var tr http.Header
		if len(trailers) > 0 {
			tr = http.Header{}
			for _, f := range trailers {
				tr.Add(http.CanonicalHeaderKey(f.Name), f.Value)
			}
		}
		st.body.closeWithTrailers(io.EOF, tr, st.reqTrailer)
	}
	return nil
}

// creditLocked returns flow-control credit for n consumed bytes (of st,
// or of the connection only when st is nil), sending WINDOW_UPDATEs once
// half a window has gathered.
func (c *conn) creditLocked(st *stream, n int64) {
	if n <= 0 || c.closed {
		return
	}
	c.unacked += n
	var connInc, streamInc int64
	if c.unacked >= int64(c.cfg.ConnWindow)/2 {
		connInc, c.unacked = c.unacked, 0
		c.recvWin += connInc
	}
	if st != nil && !st.gone && st.state == stateOpen {
		st.unacked += n
		if st.unacked >= int64(c.cfg.StreamWindow)/2 {
			streamInc, st.unacked = st.unacked, 0
			st.recvWin += streamInc
		}
	}
	if connInc == 0 && streamInc == 0 {
		return
	}
	c.wmu.Lock()
	if connInc > 0 {
		c.fr.WriteWindowUpdate(0, uint32(connInc))
	}
	if streamInc > 0 {
		c.fr.WriteWindowUpdate(st.id, uint32(streamInc))
	}
	c.wmu.Unlock()
}

// emit collects a decoded header field into the block being received.
func (c *conn) emit(f hpack.HeaderField) {
	hb := &c.hb
	if hb.invalid != nil || hb.truncated {
		return
	}
	if !httpguts.ValidHeaderFieldValue(f.Value) {
		hb.invalid = fmt.Errorf("invalid value of %q", f.Name)
		return
	}
	if f.IsPseudo() {
		if hb.sawRegular {
			hb.invalid = errors.New("pseudo-header after a regular field")
			return
		}
	} else {
		hb.sawRegular = true
		if !validFieldName(f.Name) {
			hb.invalid = fmt.Errorf("invalid field name %q", f.Name)
			return
		}
	}
	size := f.Size()
	if hb.size+size > c.cfg.MaxHeaderListSize {
		hb.truncated = true
		return
	}
	hb.size += size
	hb.fields = append(hb.fields, f)
}

// validFieldName: a token in lower case.
func validFieldName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		b := n[i]
		if 'A' <= b && b <= 'Z' || !httpguts.IsTokenRune(rune(b)) {
			return false
		}
	}
	return true
}

func (c *conn) onHeaders(f *http2.HeadersFrame) error {
	if f.StreamID%2 == 0 {
		return connError{http2.ErrCodeProtocol, "HEADERS on an even stream"}
	}
	fields := c.hb.fields[:0]
	c.hb = headerBlock{
		id: f.StreamID, endStream: f.StreamEnded(), hasPrio: f.HasPriority(), prio: f.Priority,
		fields: fields, inProgress: true,
	}
	return c.fragment(f.HeaderBlockFragment(), f.HeadersEnded())
}

func (c *conn) onContinuation(f *http2.ContinuationFrame) error {
	c.hb.frames++
	if c.hb.frames > c.cfg.MaxContinuations {
		return connError{http2.ErrCodeEnhanceYourCalm, "CONTINUATION flood"}
	}
	return c.fragment(f.HeaderBlockFragment(), f.HeadersEnded())
}

// fragment decodes one fragment of a header block; end finishes it.
func (c *conn) fragment(b []byte, end bool) error {
	c.hb.bytes += len(b)
	if c.hb.bytes > 4*int(c.cfg.MaxHeaderListSize)+16384 {
		return connError{http2.ErrCodeEnhanceYourCalm, "header block too large"}
	}
	if _, err := c.hdec.Write(b); err != nil {
		return connError{http2.ErrCodeCompression, err.Error()}
	}
	if !end {
		return nil
	}
	if err := c.hdec.Close(); err != nil {
		return connError{http2.ErrCodeCompression, err.Error()}
	}
	c.hb.inProgress = false
	return c.endHeaders()
}

// reqHead is a request's pseudo-header fields.
type reqHead struct {
	method, scheme, authority, path string
	declLen                         int64
	urgency                         uint8
	incremental                     bool
}

// checkRequest validates a request header block (RFC 9113 8.2, 8.3).
func checkRequest(fields []hpack.HeaderField) (h reqHead, ok bool) {
	h.declLen, h.urgency = -1, 3
	var seen [4]bool
	for _, f := range fields {
		if f.IsPseudo() {
			var i int
			switch f.Name {
			case ":method":
				i, h.method = 0, f.Value
			case ":scheme":
				i, h.scheme = 1, f.Value
			case ":authority":
				i, h.authority = 2, f.Value
			case ":path":
				i, h.path = 3, f.Value
			default:
				return h, false
			}
			if seen[i] {
				return h, false
			}
			seen[i] = true
			continue
		}
		switch f.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			return h, false
		case "te":
			if f.Value != "trailers" {
				return h, false
			}
		case "content-length":
			n, err := strconv.ParseUint(f.Value, 10, 63)
			if err != nil || h.declLen >= 0 && h.declLen != int64(n) {
				return h, false
			}
			h.declLen = int64(n)
		case "priority":
			h.urgency, h.incremental = parsePriority(f.Value)
		}
	}
	if h.method == "CONNECT" {
		return h, h.authority != "" && h.scheme == "" && h.path == ""
	}
	return h, h.method != "" && h.path != "" && (h.scheme == "http" || h.scheme == "https")
}

// parsePriority reads an RFC 9218 Priority value (urgency u=0..7,
// incremental i), defaults for what it does not understand.
func parsePriority(v string) (urgency uint8, incremental bool) {
	urgency = 3
	for len(v) > 0 {
		var item string
		item, v, _ = cut(v, ',')
		item = trim(item)
		key, val, hasVal := cut(item, '=')
		if i := bytes.IndexByte([]byte(val), ';'); i >= 0 {
			val = val[:i]
		}
		switch key {
		case "u":
			if len(val) == 1 && '0' <= val[0] && val[0] <= '7' {
				urgency = val[0] - '0'
			}
		case "i":
			incremental = !hasVal || val == "?1"
		}
	}
	return urgency, incremental
}

func cut(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func trim(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// endHeaders acts on a complete header block.
func (c *conn) endHeaders() error {
	hb := &c.hb
	id := hb.id
	c.mu.Lock()
	st := c.streams[id]
	if st != nil {
		// Trailers of a request with a body.
		defer c.mu.Unlock()
		if st.state != stateOpen {
			return streamErr(id, http2.ErrCodeStreamClosed)
		}
		if !hb.endStream || hb.invalid != nil || hb.truncated {
			return streamErr(id, http2.ErrCodeProtocol)
		}
		for _, f := range hb.fields {
			if f.IsPseudo() {
				return streamErr(id, http2.ErrCodeProtocol)
			}
		}
		return c.endRequestLocked(st, hb.fields)
	}
	if id <= c.maxClientID {
		c.mu.Unlock()
		return connError{http2.ErrCodeProtocol, "HEADERS on a closed stream"}
	}
	if c.goneAway {
		c.mu.Unlock()
		return nil // after GOAWAY: ignored
	}
	c.maxClientID = id
	if hb.hasPrio && hb.prio.StreamDep == id {
		c.mu.Unlock()
		return streamErr(id, http2.ErrCodeProtocol)
	}
	if hb.invalid != nil {
		c.mu.Unlock()
		return streamErr(id, http2.ErrCodeProtocol)
	}
	h, ok := checkRequest(hb.fields)
	if !ok {
		c.mu.Unlock()
		return streamErr(id, http2.ErrCodeProtocol)
	}
	if c.clientStreams >= c.cfg.MaxConcurrentStreams {
		c.mu.Unlock()
		return streamErr(id, http2.ErrCodeProtocol)
	}
	if c.handlers >= c.cfg.MaxConcurrentStreams {
		// Handlers of streams the peer reset still run: refuse, and
		// count it as a reset.
		err := c.chargeResetLocked()
		c.mu.Unlock()
		if err != nil {
			return err
		}
		return streamErr(id, http2.ErrCodeRefusedStream)
	}
	st = &stream{
		id: id, state: stateOpen, sendWin: c.peerInitWin, recvWin: int64(c.cfg.StreamWindow),
		declLen: h.declLen, urgency: h.urgency, incremental: h.incremental,
	}
	if hb.endStream {
		st.state = stateHalfClosedRemote
	}
	c.streams[id] = st
	c.clientStreams++
	if hb.truncated {
		c.mu.Unlock()
		c.respondFast(st, &Response{Status: http.StatusRequestHeaderFieldsTooLarge}, false)
		return nil
	}
	if hb.endStream && c.s.fast != nil && (h.method == http.MethodGet || h.method == http.MethodHead) {
		c.mu.Unlock()
		c.freq = Request{Method: h.method, Scheme: h.scheme, Authority: h.authority, Path: h.path,
			Fields: regular(hb.fields), Remote: c.nc.RemoteAddr(), Local: c.nc.LocalAddr()}
		c.fresp.Status, c.fresp.Block, c.fresp.Fields, c.fresp.Body = 0, nil, c.fresp.Fields[:0], nil
		if c.s.fast.ServeH2(&c.freq, &c.fresp) {
			c.respondFast(st, &c.fresp, h.method == http.MethodHead)
			clear(c.fresp.Fields)
			return nil
		}
		c.mu.Lock()
		if st.gone {
			c.mu.Unlock()
			return nil
		}
	}
	req, err := c.newRequest(st, h, hb.fields)
	if err != nil {
		c.dropStream(st, errStreamClosed)
		c.mu.Unlock()
		return streamErr(id, http2.ErrCodeProtocol)
	}
	st.handler = true
	c.handlers++
	c.mu.Unlock()
	go c.runHandler(st, req)
	return nil
}

// regular returns the regular fields of a validated block.
func regular(fields []hpack.HeaderField) []hpack.HeaderField {
	for i, f := range fields {
		if !f.IsPseudo() {
			return fields[i:]
		}
	}
	return nil
}

// dateLocked returns the Date value, formatted once a second (wmu held).
func (c *conn) dateLocked() string {
	now := time.Now()
	if sec := now.Unix(); sec != c.dateSec {
		c.dateSec = sec
		c.date = now.UTC().Format(http.TimeFormat)
	}
	return c.date
}

// writeHeadersLocked encodes and writes a header block (wmu held),
// splitting it into CONTINUATION frames beyond the peer's frame size.
func (c *conn) writeHeadersLocked(id uint32, status int, fields []hpack.HeaderField, hdr http.Header, end bool) {
	c.writeHeadersBlockLocked(id, status, nil, fields, hdr, end)
}

// writeHeadersBlockLocked is writeHeadersLocked with a precomputed
// Response.Block after :status.
func (c *conn) writeHeadersBlockLocked(id uint32, status int, block []byte, fields []hpack.HeaderField, hdr http.Header, end bool) {
	c.hbuf.Reset()
	if status != 0 {
		// First: a pending dynamic table size update must open the block.
		c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: statusValue(status)})
	}
	c.hbuf.Write(block)
	sawDate := false
	for _, f := range fields {
		sawDate = sawDate || f.Name == "date"
		c.henc.WriteField(f)
	}
	for k, vv := range hdr {
		name, ok := responseFieldName(k)
		if !ok {
			continue
		}
		sawDate = sawDate || name == "date"
		for _, v := range vv {
			if httpguts.ValidHeaderFieldValue(v) {
				c.henc.WriteField(hpack.HeaderField{Name: name, Value: v})
			}
		}
	}
	if status != 0 && !sawDate {
		c.henc.WriteField(hpack.HeaderField{Name: "date", Value: c.dateLocked()})
	}
	c.writeBlockLocked(id, c.hbuf.Bytes(), end)
}

func (c *conn) writeBlockLocked(id uint32, block []byte, end bool) {
	max := c.peerMaxFrameLocked()
	first := block
	if len(first) > max {
		first = block[:max]
	}
	block = block[len(first):]
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: end, EndHeaders: len(block) == 0})
	for len(block) > 0 {
		n := min(len(block), max)
		c.fr.WriteContinuation(id, n == len(block), block[:n])
		block = block[n:]
	}
}

// peerMaxFrameLocked reads the peer's frame size limit. It is only
// written under mu with wmu held too, so wmu alone suffices to read it.
func (c *conn) peerMaxFrameLocked() int { return c.peerMaxFrame }

// writeDataLocked writes one DATA frame from where p is (wmu held).
func (c *conn) writeDataLocked(id uint32, end bool, p []byte) {
	var h [9]byte
	h[0], h[1], h[2] = byte(len(p)>>16), byte(len(p)>>8), byte(len(p))
	h[3] = byte(http2.FrameData)
	if end {
		h[4] = byte(http2.FlagDataEndStream)
	}
	h[5], h[6], h[7], h[8] = byte(id>>24), byte(id>>16), byte(id>>8), byte(id)
	c.bw.Write(h[:])
	c.bw.Write(p)
}

var statusValues = map[int]string{200: "200", 206: "206", 304: "304", 404: "404"}

func statusValue(code int) string {
	if v, ok := statusValues[code]; ok {
		return v
	}
	return strconv.Itoa(code)
}

// responseFieldName lowercases a response header name, dropping
// connection-specific ones and invalid names.
func responseFieldName(k string) (string, bool) {
	name := lowerName(k)
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return "", false
	}
	if !httpguts.ValidHeaderFieldName(name) {
		return "", false
	}
	return name, true
}

var commonLower = map[string]string{
	"Accept-Ranges": "accept-ranges", "Cache-Control": "cache-control", "Content-Encoding": "content-encoding",
	"Content-Length": "content-length", "Content-Type": "content-type", "Date": "date", "Etag": "etag",
	"Last-Modified": "last-modified", "Location": "location", "Server": "server", "Set-Cookie": "set-cookie",
	"Vary": "vary", "Alt-Svc": "alt-svc", "Content-Range": "content-range", "Allow": "allow",
	"X-Content-Type-Options": "x-content-type-options", "Trailer": "trailer",
}

func lowerName(k string) string {
	if v, ok := commonLower[k]; ok {
		return v
	}
	for i := 0; i < len(k); i++ {
		if 'A' <= k[i] && k[i] <= 'Z' {
			b := []byte(k)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return k
}

// respondFast sends a Fast answer: the header now, the body as flow
// control allows (the rest when WINDOW_UPDATEs come).
func (c *conn) respondFast(st *stream, r *Response, head bool) {
	body := r.Body
	if head || !bodyAllowed(r.Status) {
		body = nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st.gone {
		return
	}
	c.wmu.Lock()
	c.writeHeadersBlockLocked(st.id, r.Status, r.Block, r.Fields, nil, len(body) == 0)
	c.wmu.Unlock()
	if len(body) == 0 {
		c.finishStreamLocked(st)
		return
	}
	st.pending = body
	if !c.sendPendingLocked(st) {
		c.waiting = append(c.waiting, st)
	}
}

// finishStreamLocked closes a stream whose answer is complete; a peer
// still sending its body is told to stop (RST_STREAM NO_ERROR).
func (c *conn) finishStreamLocked(st *stream) {
	if st.gone {
		return
	}
	if st.state == stateOpen {
		c.wmu.Lock()
		c.fr.WriteRSTStream(st.id, http2.ErrCodeNo)
		c.wmu.Unlock()
	}
	c.dropStream(st, errStreamClosed)
}

// sendPendingLocked writes as much of st's pending body as the windows
// allow; true when it is all sent (the stream is then finished).
func (c *conn) sendPendingLocked(st *stream) bool {
	if st.gone {
		return true
	}
	c.wmu.Lock()
	max := int64(c.peerMaxFrame)
	for len(st.pending) > 0 && st.sendWin > 0 && c.sendWin > 0 {
		n := min(int64(len(st.pending)), st.sendWin, c.sendWin, max)
		end := n == int64(len(st.pending))
		c.writeDataLocked(st.id, end, st.pending[:n])
		st.pending = st.pending[n:]
		st.sendWin -= n
		c.sendWin -= n
		if c.bw.Buffered() >= writeBufSize/2 {
			c.flushLocked()
		}
	}
	c.wmu.Unlock()
	if len(st.pending) > 0 {
		return false
	}
	c.finishStreamLocked(st)
	return true
}

// sendWaitingLocked continues the pending Fast bodies, most urgent first
// (RFC 9218), after the windows grew.
func (c *conn) sendWaitingLocked() {
	if len(c.waiting) == 0 {
		return
	}
	slices.SortStableFunc(c.waiting, func(a, b *stream) int { return int(a.urgency) - int(b.urgency) })
	kept := c.waiting[:0]
	for _, st := range c.waiting {
		if !c.sendPendingLocked(st) {
			kept = append(kept, st)
		}
	}
	clear(c.waiting[len(kept):])
	c.waiting = kept
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}
