package link

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/applayer/applayer/internal/trace"
)

// chunk is the most bytes of a stream shaped as one unit.
const chunk = 16 << 10

// inflight is how many chunks (or datagrams) may wait in each direction's
// delay line: 4 MiB of a stream, a generous window.
const inflight = 256

// minQueueEvent is the least wait in a queue published as a "link.queue"
// event (shorter waits are the ordinary pacing of one sender).
const minQueueEvent = time.Millisecond

// lead is how far ahead of the transmitter a sender may stay: Write returns
// (and the reader takes more) this long before the previous bytes finish
// transmitting, so timer lateness never leaves the link idle.
const lead = 50 * time.Millisecond

// flushTimeout bounds how long a closed connection keeps delivering what
// was written before Close.
const flushTimeout = 30 * time.Second

type segment struct {
	at   time.Time
	b    []byte
	err  error // read side: the error after the data (io.EOF)
	fin  bool  // write side: CloseWrite here
	drop bool
}

// Conn is a connection whose writes cross Out and whose reads cross In.
type Conn struct {
	net.Conn
	out, in  Path
	datagram bool
	bus      *trace.Bus

	wq      chan segment
	werr    atomic.Pointer[error]
	quit    chan struct{}
	closed  atomic.Bool
	closeMu sync.Once
	wdl     deadline

	rq      chan segment
	rmu     sync.Mutex
	pend    *segment
	cur     []byte
	rerr    error
	rdl     deadline
	readEnd chan struct{}
	lastIn  time.Time // reader goroutine only
}

// Wrap shapes c: what is written crosses out, what is read crosses in.
// handshake is added to the first data read (the connection's set-up round
// trip, paid at the side that did not dial). datagram keeps message
// boundaries and drops lost datagrams, publishing "link.drop" on bus.
func Wrap(c net.Conn, out, in Path, handshake time.Duration, datagram bool, bus *trace.Bus) *Conn {
	w := &Conn{Conn: c, out: out, in: in, datagram: datagram, bus: bus,
		wq: make(chan segment, inflight), quit: make(chan struct{}),
		rq: make(chan segment, inflight), readEnd: make(chan struct{}),
		wdl: newDeadline(), rdl: newDeadline()}
	go w.writer()
	go w.reader(handshake)
	return w
}

// note publishes what the link did to n bytes going dir ("out" or "in"):
// a dropped datagram, lost stream segments (each stalls the connection's
// later bytes by a retransmission timeout), or a wait in a queue of at
// least minQueueEvent.
func (c *Conn) note(dir string, n int, v Verdict) {
	if !c.bus.Enabled() || (v.Drop == "" && v.Lost == 0 && v.Wait < minQueueEvent) {
		return
	}
	from, to := c.LocalAddr().String(), c.RemoteAddr().String()
	if dir == "in" {
		from, to = to, from
	}
	e := trace.Event{From: from, To: to, Proto: "link"}
	if v.Drop != "" {
		e.Type, e.Summary, e.Bytes = trace.LinkDrop, "dropped: "+v.Drop, n
		c.bus.Publish(e)
		return
	}
	if v.Lost > 0 {
		segs := "a TCP segment"
		if v.Lost > 1 {
			segs = fmt.Sprintf("%d TCP segments", v.Lost)
		}
		lost := e
		lost.Type, lost.Bytes = trace.LinkDrop, min(n, v.Lost*MSS)
		lost.Summary = fmt.Sprintf("%s: lost %s, retransmitted after %s; the connection's later bytes wait behind it", v.LostAt, segs, v.Stall.Round(time.Millisecond))
		// Published when the segment was due at the far end: that is when
		// the receiver misses it (its later bytes wait from then on).
		lost.Time = v.At.Add(-v.Stall)
		if d := time.Until(lost.Time); d > 0 {
			time.AfterFunc(d, func() { c.bus.Publish(lost) })
		} else {
			c.bus.Publish(lost)
		}
	}
	if v.Wait >= minQueueEvent {
		e.Type, e.Bytes = trace.LinkQueue, n
		e.Summary = fmt.Sprintf("%s: queued %s", v.Queue, v.Wait.Round(100*time.Microsecond))
		c.bus.Publish(e)
	}
}

// sleepUntil waits until t, or until cancel is closed (false).
func sleepUntil(t time.Time, cancel <-chan struct{}) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-cancel:
		return false
	}
}

// writer delivers the write queue to the real connection, each segment at
// its time; after Close it flushes what is queued, then closes.
func (c *Conn) writer() {
	defer c.Conn.Close()
	deliver := func(s segment) bool {
		if c.werr.Load() != nil {
			return true
		}
		sleepUntil(s.at, nil)
		var err error
		if s.fin {
			if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
				err = cw.CloseWrite()
			}
		} else {
			_, err = c.Conn.Write(s.b)
		}
		if err != nil {
			c.werr.Store(&err)
		}
		return true
	}
	for {
		select {
		case s := <-c.wq:
			deliver(s)
		case <-c.quit:
			for {
				select {
				case s := <-c.wq:
					deliver(s)
				default:
					return
				}
			}
		}
	}
}

// reader takes what arrives on the real connection through the in path.
func (c *Conn) reader(handshake time.Duration) {
	defer close(c.readEnd)
	first := true
	for {
		size := chunk
		if c.datagram {
			size = 64 << 10
		}
		buf := make([]byte, size)
		n, err := c.Conn.Read(buf)
		now := time.Now()
		if n > 0 {
			v := c.in.Offer(now, n, c.datagram)
			if first {
				v.At = v.At.Add(handshake)
				first = false
			}
			c.note("in", n, v)
			if v.Drop == "" {
				if !c.datagram && v.At.Before(c.lastIn) {
					v.At = c.lastIn // in order: behind a retransmitted segment
				}
				c.lastIn = v.At
				select {
				case c.rq <- segment{at: v.At, b: buf[:n]}:
				case <-c.quit:
					return
				}
			}
			if !sleepUntil(v.Done.Add(-lead), c.quit) {
				return
			}
		}
		if err != nil {
			at := now.Add(c.in.Delay())
			if at.Before(c.lastIn) {
				at = c.lastIn
			}
			select {
			case c.rq <- segment{at: at, err: err}:
			case <-c.quit:
			}
			return
		}
	}
}

// Read returns data once its time has come, honouring the read deadline.
func (c *Conn) Read(b []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	if len(c.cur) > 0 {
		n := copy(b, c.cur)
		c.cur = c.cur[n:]
		return n, nil
	}
	if c.rerr != nil {
		return 0, c.rerr
	}
	if c.pend == nil {
		select {
		case s := <-c.rq:
			c.pend = &s
		case <-c.rdl.wait():
			return 0, os.ErrDeadlineExceeded
		case <-c.quit:
			return 0, net.ErrClosed
		}
	}
	if !sleepUntil(c.pend.at, c.rdl.wait()) {
		return 0, os.ErrDeadlineExceeded
	}
	s := *c.pend
	c.pend = nil
	if s.err != nil {
		c.rerr = s.err
		return 0, s.err
	}
	n := copy(b, s.b)
	if !c.datagram {
		c.cur = s.b[n:]
	}
	return n, nil
}

// Write queues b on the link and returns once it has been transmitted.
func (c *Conn) Write(b []byte) (int, error) {
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	if p := c.werr.Load(); p != nil {
		return 0, *p
	}
	now := time.Now()
	done := now
	written := 0
	for len(b) > 0 || (c.datagram && written == 0) {
		n := len(b)
		if !c.datagram && n > chunk {
			n = chunk
		}
		v := c.out.Offer(now, n, c.datagram)
		c.note("out", n, v)
		if v.Drop != "" {
			return n, nil // a lost datagram was still sent
		}
		s := segment{at: v.At, b: append([]byte(nil), b[:n]...)}
		select {
		case c.wq <- s:
		case <-c.wdl.wait():
			return written, os.ErrDeadlineExceeded
		case <-c.quit:
			return written, net.ErrClosed
		}
		done = v.Done
		written += n
		b = b[n:]
		if c.datagram {
			break
		}
	}
	if !sleepUntil(done.Add(-lead), c.wdl.wait()) {
		return written, os.ErrDeadlineExceeded
	}
	return written, nil
}

// CloseWrite half-closes after what was written has been delivered.
func (c *Conn) CloseWrite() error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	select {
	case c.wq <- segment{at: time.Now().Add(c.out.Delay()), fin: true}:
		return nil
	case <-c.quit:
		return net.ErrClosed
	}
}

// Close stops reading at once; what was written is still delivered (as
// TCP sends its buffer before the FIN), then the real connection closes.
func (c *Conn) Close() error {
	c.closeMu.Do(func() {
		c.closed.Store(true)
		// A peer that stopped reading must not hold the flush forever.
		c.Conn.SetWriteDeadline(time.Now().Add(flushTimeout + c.out.Delay()))
		close(c.quit)
		c.rdl.close()
		c.wdl.close()
	})
	return nil
}

// SetDeadline implements net.Conn.
func (c *Conn) SetDeadline(t time.Time) error {
	c.rdl.set(t)
	c.wdl.set(t)
	return nil
}

// SetReadDeadline implements net.Conn.
func (c *Conn) SetReadDeadline(t time.Time) error { c.rdl.set(t); return nil }

// SetWriteDeadline implements net.Conn.
func (c *Conn) SetWriteDeadline(t time.Time) error { c.wdl.set(t); return nil }

// deadline is a resettable deadline whose wait channel closes when it
// passes (as net.Pipe's).
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{}
	done   bool
}

func newDeadline() deadline { return deadline{cancel: make(chan struct{})} }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		return
	}
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired and closed it
	}
	d.timer = nil
	closed := isClosed(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		cancel := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(cancel) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

// close makes the deadline passed for good (the connection is closed).
func (d *deadline) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		if !d.timer.Stop() {
			<-d.cancel // the timer fired: it closes the channel (not twice)
		}
		d.timer = nil
	}
	if !isClosed(d.cancel) {
		close(d.cancel)
	}
	d.done = true
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Listener shapes every connection it accepts with a host's link: reads
// cross in, writes cross out, and the first data read pays the set-up
// round trip.
type Listener struct {
	net.Listener
	Out, In Path
	Bus     *trace.Bus
}

// Accept implements net.Listener.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c, l.Out, l.In, l.Out.Delay()+l.In.Delay(), false, l.Bus), nil
}

// Dialer is a dialer whose connections are shaped. Route gives, for each
// destination address, the paths out and in (nil paths: not shaped).
// Stream connections wait out the set-up round trip before they return.
type Dialer struct {
	Next interface {
		DialContext(ctx context.Context, network, address string) (net.Conn, error)
	}
	Route func(network string, dst net.Addr) (out, in Path)
	Bus   *trace.Bus
}

// DialContext implements service.Dialer.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.Next.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	out, in := d.Route(network, c.RemoteAddr())
	if len(out) == 0 && len(in) == 0 {
		return c, nil
	}
	datagram := isDatagram(network)
	if !datagram {
		if !sleepUntil(time.Now().Add(out.Delay()+in.Delay()), ctx.Done()) {
			c.Close()
			return nil, ctx.Err()
		}
	}
	return Wrap(c, out, in, 0, datagram, d.Bus), nil
}

func isDatagram(network string) bool {
	switch network {
	case "udp", "udp4", "udp6", "unixgram":
		return true
	}
	return false
}
