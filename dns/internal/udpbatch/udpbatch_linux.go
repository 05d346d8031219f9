//go:build linux

// Package udpbatch is the Linux fast path for UDP servers that answer
// many small datagrams (DNS): raw recvmmsg/sendmmsg on a blocking dup of
// the socket's descriptor, in batches of Size. Under load a first
// non-blocking call takes what is queued without the Go runtime's syscall
// bookkeeping; when the queue is empty the reader blocks in the kernel
// (letting the runtime run other goroutines). The sender's address is kept
// as a raw sockaddr and reused as the reply's destination, so nothing is
// allocated per datagram. Wake (shutdown(SHUT_RD)) makes a blocked reader
// return so that it can see that its server is stopping.
//
// On other systems Open fails and callers keep their portable path.
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
// It returns 0 on EINTR, after Wake, or on another error: callers check
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
