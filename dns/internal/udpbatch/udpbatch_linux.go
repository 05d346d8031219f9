//go:build linux

// Package udpbatch is the Linux fast path for UDP servers that answer
// many small datagrams (DNS): raw recvmmsg/sendmmsg in batches of Size,
// the sender's address kept as a raw sockaddr and reused as the reply's
// destination, nothing allocated per datagram. Two ways to wait for
// datagrams share the Batch:
//
//   - Sock (dns/authority): a blocking dup of the socket's descriptor.
//     Under load a first non-blocking call takes what is queued without
//     the Go runtime's syscall bookkeeping; when the queue is empty the
//     reader blocks in the kernel. Wake (shutdown(SHUT_RD)) makes a
//     blocked reader return so that it can see its server stopping.
//   - Poller (dns/resolver): the UDPConn's own descriptor, non-blocking
//     calls, and the netpoller when the queue is empty. On the resolver's
//     cache-hit load it costs less CPU per answer than Sock (the blocked
//     thread's P is handed off and taken back on every wake-up).
//
// On other systems Open and NewPoller fail and callers keep their
// portable path.
package udpbatch

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Size is how many datagrams one recvmmsg/sendmmsg moves at most.
const Size = 64

// InBuf is the receive buffer per datagram: larger datagrams are cut and
// reported as truncated.
const InBuf = 8192

// msgWaitForOne is MSG_WAITFORONE: block for the first datagram only.
const msgWaitForOne = 0x10000

// mmsghdr is struct mmsghdr of <sys/socket.h>.
type mmsghdr struct {
	hdr syscall.Msghdr
	n   uint32
	_   [4]byte
}

// Sock is a dup of a UDP socket's descriptor in blocking mode. The
// blocking flag lives in the open file description shared with the
// original descriptor: after Open the UDPConn must not be read any more
// (writes still work, they may block briefly when the send buffer is
// full), only closed.
type Sock struct {
	mu     sync.Mutex
	fd     int
	closed bool
}

// Open dups c's descriptor and makes it blocking. It fails (and the
// caller serves on its portable path) when the descriptor cannot be had.
func Open(c *net.UDPConn) (*Sock, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(f uintptr) { fd, derr = syscall.Dup(int(f)) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, derr
	}
	syscall.CloseOnExec(fd)
	if err := syscall.SetNonblock(fd, false); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return &Sock{fd: fd}, nil
}

// Wake makes every reader blocked in Recv on this socket (and on other
// dups of it) return with no datagrams. It is safe after Close.
func (s *Sock) Wake() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		syscall.Shutdown(s.fd, syscall.SHUT_RD)
	}
}

// Close closes the dup; it is safe twice.
func (s *Sock) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		syscall.Close(s.fd)
	}
}

// Batch holds the buffers and headers of one reader: datagrams received
// by Recv, replies queued by Reply and sent by Send. One goroutine uses a
// Batch at a time.
type Batch struct {
	// On the heap (Batch is only made by NewBatch), so that the kernel's
	// pointers never point into a goroutine stack.
	in     [Size]mmsghdr
	out    [Size]mmsghdr
	inIov  [Size]syscall.Iovec
	outIov [Size]syscall.Iovec
	names  [Size]syscall.RawSockaddrAny
	bufs   []byte
	k      int
}

// NewBatch returns a Batch with its receive buffers.
func NewBatch() *Batch {
	b := &Batch{bufs: make([]byte, Size*InBuf)}
	for i := range b.in {
		b.inIov[i].Base = &b.bufs[i*InBuf]
		b.inIov[i].SetLen(InBuf)
		b.in[i].hdr.Iov = &b.inIov[i]
		b.in[i].hdr.Iovlen = 1
		b.in[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
	}
	return b
}

// Recv waits for datagrams on s and returns how many it got (up to Size).
// It returns 0 on EINTR or another error, and after Wake 0 or one empty
// datagram (the shut-down socket's end of file) at once: callers check
// whether they are stopping and call it again.
func (b *Batch) Recv(s *Sock) int {
	for i := range b.in {
		b.in[i].hdr.Namelen = syscall.SizeofSockaddrAny
		b.in[i].hdr.Flags = 0
	}
	b.k = 0
	n, _, errno := syscall.RawSyscall6(unix.SYS_RECVMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&b.in[0])), Size, syscall.MSG_DONTWAIT, 0, 0)
	if errno == syscall.EAGAIN {
		n, _, errno = syscall.Syscall6(unix.SYS_RECVMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&b.in[0])), Size, msgWaitForOne, 0, 0)
	}
	if errno != 0 {
		return 0
	}
	return int(n)
}

// Datagram returns datagram i of the last Recv (valid until the next
// Recv) and whether it was cut to InBuf bytes.
func (b *Batch) Datagram(i int) ([]byte, bool) {
	return b.bufs[i*InBuf : i*InBuf+int(b.in[i].n)], b.in[i].hdr.Flags&syscall.MSG_TRUNC != 0
}

// From returns the sender of datagram i (IPv4 or IPv6).
func (b *Batch) From(i int) (netip.AddrPort, bool) {
	return sockaddrPort(&b.names[i])
}

// Reply queues resp for the sender of datagram i. resp must not be empty
// and must stay unchanged until Send returns.
func (b *Batch) Reply(i int, resp []byte) {
	k := b.k
	b.outIov[k].Base = &resp[0]
	b.outIov[k].SetLen(len(resp))
	b.out[k].hdr = syscall.Msghdr{
		Name:    (*byte)(unsafe.Pointer(&b.names[i])),
		Namelen: b.in[i].hdr.Namelen,
		Iov:     &b.outIov[k],
	}
	b.out[k].hdr.Iovlen = 1
	b.k++
}

// Send sends the queued replies on s; a datagram the kernel refuses is
// skipped.
func (b *Batch) Send(s *Sock) {
	k := b.k
	for sent := 0; sent < k; {
		m, _, errno := syscall.RawSyscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&b.out[sent])), uintptr(k-sent), syscall.MSG_DONTWAIT, 0, 0)
		if errno == syscall.EAGAIN {
			m, _, errno = syscall.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&b.out[sent])), uintptr(k-sent), 0, 0, 0)
		}
		switch {
		case errno == syscall.EINTR || errno == syscall.EAGAIN:
		case errno != 0:
			sent++ // skip the datagram that failed
		default:
			sent += int(m)
		}
	}
	b.k = 0
}

// sockaddrPort reads an IPv4 or IPv6 socket address.
func sockaddrPort(sa *syscall.RawSockaddrAny) (netip.AddrPort, bool) {
	switch sa.Addr.Family {
	case syscall.AF_INET:
		p := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), port), true
	case syscall.AF_INET6:
		p := (*syscall.RawSockaddrInet6)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(p.Addr), port), true
	}
	return netip.AddrPort{}, false
}

// Poller serves a UDPConn's own non-blocking descriptor through the Go
// netpoller with raw recvmmsg/sendmmsg: when the queue is empty the reader
// parks (with GOMAXPROCS=1 the same thread then waits in epoll_wait)
// instead of blocking a thread in the kernel, which makes the runtime hand
// its P to another thread and take it back on every wake-up. Closing the
// UDPConn makes Recv return an error. One goroutine uses a Poller.
type Poller struct {
	rc   syscall.RawConn
	b    *Batch
	n    int
	sent int
	// recv and send are made once: no closure is allocated per call.
	recv func(fd uintptr) bool
	send func(fd uintptr) bool
}

// NewPoller returns a Poller reading into and sending from b.
func NewPoller(c *net.UDPConn, b *Batch) (*Poller, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	p := &Poller{rc: rc, b: b}
	p.recv = func(fd uintptr) bool {
		n, _, errno := syscall.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&p.b.in[0])), Size, syscall.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			p.n = int(n)
		case syscall.EAGAIN:
			return false // park until readable
		default:
			p.n = 0
		}
		return true
	}
	p.send = func(fd uintptr) bool {
		k := p.b.k
		for p.sent < k {
			m, _, errno := syscall.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&p.b.out[p.sent])), uintptr(k-p.sent), syscall.MSG_DONTWAIT, 0, 0)
			switch errno {
			case 0:
				p.sent += int(m)
			case syscall.EAGAIN:
				return false // park until writable
			case syscall.EINTR:
			default:
				p.sent++ // skip the datagram that failed
			}
		}
		return true
	}
	return p, nil
}

// Recv waits for datagrams and returns how many it got into the Batch
// (0 after an error on the socket: call it again). It returns an error
// once the UDPConn is closed.
func (p *Poller) Recv() (int, error) {
	b := p.b
	for i := range b.in {
		b.in[i].hdr.Namelen = syscall.SizeofSockaddrAny
		b.in[i].hdr.Flags = 0
	}
	b.k = 0
	p.n = 0
	err := p.rc.Read(p.recv)
	return p.n, err
}

// Send sends the replies queued in the Batch.
func (p *Poller) Send() {
	p.sent = 0
	p.rc.Write(p.send)
	p.b.k = 0
}
