package transport

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// PacketHandler serves the datagrams of one reader. ServeBatch is called
// with every batch that reader receives; it reads the datagrams (Len,
// Data, From) and queues replies (Reply), which the server sends after
// ServeBatch returns, in one sendmmsg on Linux. A reader calls its handler
// from one goroutine only, so a handler may keep per-reader state (scratch
// buffers, a query cache) without locks: PacketServer makes one handler
// per reader. A panic in ServeBatch is recovered and logged; the replies
// queued before it are sent, the batch's later datagrams are dropped (a
// protocol that must answer each one recovers per datagram itself, as the
// DNS seam answers SERVFAIL) and the reader goes on.
type PacketHandler interface {
	ServeBatch(b *Batch)
}

// PacketHandlerFunc adapts a function to PacketHandler.
type PacketHandlerFunc func(b *Batch)

// ServeBatch calls f.
func (f PacketHandlerFunc) ServeBatch(b *Batch) { f(b) }

// Default PacketConfig values.
const (
	DefaultBatchSize   = 64
	DefaultMaxDatagram = 8192
)

// PacketConfig configures a PacketServer. Zero fields take the documented
// defaults.
type PacketConfig struct {
	// Readers is how many goroutines read each socket. Default 1. Several
	// sockets bound with ListenUDPGroup (one reader each) spread clients
	// over cores with less contention than several readers on one socket.
	Readers int
	// BatchSize is how many datagrams one receive moves at most (Linux).
	// Default 64.
	BatchSize int
	// MaxDatagram is the receive buffer per datagram: a longer datagram is
	// cut to this size and reported by Batch.Truncated. Default 8192.
	MaxDatagram int
	// BlockingReads (Linux) reads through a blocking duplicate of each
	// socket's descriptor: under load a first non-blocking receive takes
	// what is queued, and when the queue is empty the reader blocks in the
	// kernel instead of parking in the netpoller. It suits one reader per
	// socket with cheap handlers (the DNS authority); the default (the
	// netpoller) costs less when the handler does more per datagram (the
	// resolver's cache). Ignored elsewhere.
	BlockingReads bool
	// NoBatch reads one datagram per system call with ReadFromUDPAddrPort
	// and writes each reply at once, as on systems without recvmmsg. It is
	// the path those systems always take; on Linux it is for tests and
	// comparisons.
	NoBatch bool
	// Observe, when set, is told of each panic in a handler (EventPanic).
	Observe func(Event)
	// Logger receives read errors (Debug) and panics (Error). Default:
	// discard.
	Logger *slog.Logger
}

// PacketServer reads datagrams from UDP sockets and hands them in batches
// to a PacketHandler.
type PacketServer struct {
	cfg        PacketConfig
	newHandler func() PacketHandler
	log        *slog.Logger
	stopping   atomic.Bool

	mu      sync.Mutex
	socks   []*packetSock
	started bool
	readers sync.WaitGroup
}

// packetSock is one socket and its readers.
type packetSock struct {
	conn     *net.UDPConn
	local    netip.AddrPort
	localStr string
	raw      *rawSock // Linux BlockingReads: the blocking dup
	refs     atomic.Int32
}

// NewPacketServer returns a server that calls newHandler once per reader
// goroutine and hands that reader's batches to the handler it returned.
func NewPacketServer(cfg PacketConfig, newHandler func() PacketHandler) *PacketServer {
	if cfg.Readers <= 0 {
		cfg.Readers = 1
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.MaxDatagram <= 0 {
		cfg.MaxDatagram = DefaultMaxDatagram
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &PacketServer{cfg: cfg, newHandler: newHandler, log: log}
}

// Start serves the given sockets (bound with ListenConfig.ListenUDP or
// ListenUDPGroup); the server owns them from now on and closes them at
// Shutdown. It can be called once.
func (s *PacketServer) Start(conns ...*net.UDPConn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("transport: packet server already started")
	}
	if s.stopping.Load() {
		return ErrServerClosed
	}
	s.started = true
	for _, c := range conns {
		ps := &packetSock{conn: c, localStr: c.LocalAddr().String()}
		if ua, ok := c.LocalAddr().(*net.UDPAddr); ok {
			ps.local = ua.AddrPort()
		}
		if s.cfg.BlockingReads && !s.cfg.NoBatch {
			if r, err := openRawSock(c); err == nil {
				ps.raw = r
			}
		}
		ps.refs.Store(int32(s.cfg.Readers))
		s.socks = append(s.socks, ps)
		for range s.cfg.Readers {
			b := s.newBatch(ps)
			h := s.newHandler()
			s.readers.Add(1)
			go s.read(ps, b, h)
		}
	}
	return nil
}

// LocalAddrs returns the addresses of the sockets served.
func (s *PacketServer) LocalAddrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]net.Addr, 0, len(s.socks))
	for _, ps := range s.socks {
		out = append(out, ps.conn.LocalAddr())
	}
	return out
}

func (s *PacketServer) newBatch(ps *packetSock) *Batch {
	b := &Batch{sock: ps, max: s.cfg.MaxDatagram}
	if !s.cfg.NoBatch {
		b.raw = newRawBatch(ps, s.cfg.BatchSize, s.cfg.MaxDatagram)
	}
	if b.raw == nil {
		b.buf = make([]byte, s.cfg.MaxDatagram+1)
	}
	return b
}

// read is one reader's loop.
func (s *PacketServer) read(ps *packetSock, b *Batch, h PacketHandler) {
	defer s.readers.Done()
	defer func() {
		if ps.refs.Add(-1) == 0 && ps.raw != nil {
			ps.raw.close() // the last reader of the dup closes it
		}
	}()
	fails := 0
	for {
		n, err := b.recv()
		stopping := s.stopping.Load()
		if stopping && (n == 0 || ps.raw != nil) {
			// A woken blocking reader may see the shut-down socket's
			// end of file as an empty datagram: serve nothing.
			return
		}
		if err != nil && errors.Is(err, net.ErrClosed) {
			return
		}
		if n == 0 {
			if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				s.log.Debug("transport: udp read", "addr", ps.localStr, "err", err)
			}
			// A socket that keeps failing must not spin the CPU.
			if fails++; fails > 10 {
				time.Sleep(10 * time.Millisecond)
			}
			continue
		}
		fails = 0
		b.n = n
		s.serveBatch(b, h)
		b.send()
		if stopping {
			return
		}
	}
}

func (s *PacketServer) serveBatch(b *Batch, h PacketHandler) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("transport: panic in packet handler", "addr", b.sock.localStr, "panic", v, "stack", string(debug.Stack()))
			if s.cfg.Observe != nil {
				s.cfg.Observe(Event{Kind: EventPanic, Panic: v})
			}
		}
	}()
	h.ServeBatch(b)
}

// wake makes every reader return from its receive: the blocking dups are
// shut down for reading, the netpoller readers get a past deadline (so
// that replies can still be sent on the socket).
func (s *PacketServer) wake() {
	s.stopping.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ps := range s.socks {
		if ps.raw != nil {
			ps.raw.wake()
		}
		ps.conn.SetReadDeadline(time.Now())
	}
}

func (s *PacketServer) closeSockets() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ps := range s.socks {
		ps.conn.Close()
	}
}

// Shutdown stops reading, lets each reader answer the batch it holds, then
// closes the sockets. When ctx ends first it closes the sockets anyway and
// returns ctx's error. Calling it twice is safe.
func (s *PacketServer) Shutdown(ctx context.Context) error {
	s.wake()
	done := make(chan struct{})
	go func() { s.readers.Wait(); close(done) }()
	select {
	case <-done:
		s.closeSockets()
		return nil
	case <-ctx.Done():
		s.closeSockets()
		return ctx.Err()
	}
}

// Close stops reading, closes the sockets and waits for the readers.
func (s *PacketServer) Close() error {
	s.wake()
	s.closeSockets()
	s.readers.Wait()
	return nil
}

// Batch is one reader's batch of datagrams: those received (Len, Data,
// Truncated, From), and the replies queued (Reply). The slices it returns
// are valid until the handler's ServeBatch returns.
type Batch struct {
	n    int
	sock *packetSock
	max  int
	raw  *rawBatch // the Linux recvmmsg path; nil on the portable path
	// the portable path: one datagram at a time
	buf   []byte
	pn    int
	pfrom netip.AddrPort
}

// Len returns how many datagrams the batch holds.
func (b *Batch) Len() int { return b.n }

// Data returns datagram i (cut to MaxDatagram bytes when it was longer).
func (b *Batch) Data(i int) []byte {
	if b.raw != nil {
		return b.raw.data(i)
	}
	return b.buf[:min(b.pn, b.max)]
}

// Truncated reports whether datagram i was longer than MaxDatagram.
func (b *Batch) Truncated(i int) bool {
	if b.raw != nil {
		return b.raw.truncated(i)
	}
	return b.pn > b.max
}

// From returns the sender of datagram i; it is not valid (IsValid false)
// when the sender's address is neither IPv4 nor IPv6, and the datagram
// should then be dropped. IPv4-mapped IPv6 senders are returned as they
// came (reply to them unchanged).
func (b *Batch) From(i int) netip.AddrPort {
	if b.raw != nil {
		return b.raw.from(i)
	}
	return b.pfrom
}

// Reply queues resp as the answer to datagram i, sent to its sender after
// ServeBatch returns. resp must stay unchanged until then: use one buffer
// per datagram of the batch. An empty resp is ignored.
func (b *Batch) Reply(i int, resp []byte) {
	if len(resp) == 0 {
		return
	}
	if b.raw != nil {
		b.raw.reply(i, resp)
		return
	}
	b.sock.conn.WriteToUDPAddrPort(resp, b.pfrom)
}

// Conn returns the socket the batch came from, for replies sent later
// from another goroutine (WriteToUDPAddrPort), e.g. once a slow answer is
// ready. The server closes it at Shutdown.
func (b *Batch) Conn() *net.UDPConn { return b.sock.conn }

// Local returns the address of the socket the batch came from.
func (b *Batch) Local() netip.AddrPort { return b.sock.local }

// LocalString returns Local as a string, made once per socket (for traces).
func (b *Batch) LocalString() string { return b.sock.localStr }

// recv receives the next batch; it returns the number of datagrams.
func (b *Batch) recv() (int, error) {
	if b.raw != nil {
		return b.raw.recv()
	}
	n, from, err := b.sock.conn.ReadFromUDPAddrPort(b.buf)
	if err != nil {
		return 0, err
	}
	b.pn, b.pfrom = n, from
	return 1, nil
}

// send sends the queued replies.
func (b *Batch) send() {
	if b.raw != nil {
		b.raw.send()
	}
	b.n = 0
}
