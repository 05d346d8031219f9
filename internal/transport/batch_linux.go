//go:build linux

package transport

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The Linux fast path: raw recvmmsg/sendmmsg in batches, the sender's
// address kept as a raw sockaddr and reused as the reply's destination,
// nothing allocated per datagram. Two ways to wait for datagrams share
// rawBatch:
//
//   - a blocking dup of the socket's descriptor (BlockingReads, the DNS
//     authority): under load a first non-blocking call takes what is
//     queued without the Go runtime's syscall bookkeeping; when the queue
//     is empty the reader blocks in the kernel. wake (shutdown(SHUT_RD))
//     makes a blocked reader return so that it can see its server stopping.
//   - the UDPConn's own descriptor, non-blocking calls, and the netpoller
//     when the queue is empty (the default, the DNS resolver). On the
//     resolver's cache-hit load it costs less CPU per answer than the
//     blocking dup (the blocked thread's P is handed off and taken back on
//     every wake-up).

// msgWaitForOne is MSG_WAITFORONE: block for the first datagram only.
const msgWaitForOne = 0x10000

// mmsghdr is struct mmsghdr of <sys/socket.h>.
type mmsghdr struct {
	hdr syscall.Msghdr
	n   uint32
	_   [4]byte
}

// rawSock is a dup of a UDP socket's descriptor in blocking mode. The
// blocking flag lives in the open file description shared with the
// original descriptor: the UDPConn must not be read any more (writes still
// work, they may block briefly when the send buffer is full), only closed.
type rawSock struct {
	mu     sync.Mutex
	fd     int
	closed bool
}

func openRawSock(c *net.UDPConn) (*rawSock, error) {
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
	return &rawSock{fd: fd}, nil
}

// wake makes every reader blocked on the socket return with no datagrams.
func (s *rawSock) wake() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		syscall.Shutdown(s.fd, syscall.SHUT_RD)
	}
}

func (s *rawSock) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		syscall.Close(s.fd)
	}
}

// rawBatch holds one reader's buffers and headers. It lives on the heap,
// so the kernel's pointers never point into a goroutine stack.
type rawBatch struct {
	in     []mmsghdr
	out    []mmsghdr
	inIov  []syscall.Iovec
	outIov []syscall.Iovec
	names  []syscall.RawSockaddrAny
	bufs   []byte
	size   int
	max    int
	k      int // replies queued
	sock   *rawSock
	rc     syscall.RawConn
	n      int
	sent   int
	// recvFn and sendFn are made once: no closure is allocated per call.
	recvFn func(fd uintptr) bool
	sendFn func(fd uintptr) bool
}

func newRawBatch(ps *packetSock, size, max int) *rawBatch {
	rc, err := ps.conn.SyscallConn()
	if err != nil {
		return nil
	}
	b := &rawBatch{
		in: make([]mmsghdr, size), out: make([]mmsghdr, size),
		inIov: make([]syscall.Iovec, size), outIov: make([]syscall.Iovec, size),
		names: make([]syscall.RawSockaddrAny, size), bufs: make([]byte, size*max),
		size: size, max: max, sock: ps.raw, rc: rc,
	}
	for i := range b.in {
		b.inIov[i].Base = &b.bufs[i*max]
		b.inIov[i].SetLen(max)
		b.in[i].hdr.Iov = &b.inIov[i]
		b.in[i].hdr.Iovlen = 1
		b.in[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
	}
	b.recvFn = func(fd uintptr) bool {
		n, _, errno := syscall.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.in[0])), uintptr(b.size), syscall.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			b.n = int(n)
		case syscall.EAGAIN:
			return false // park until readable
		default:
			b.n = 0
		}
		return true
	}
	b.sendFn = func(fd uintptr) bool {
		for b.sent < b.k {
			m, _, errno := syscall.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.out[b.sent])), uintptr(b.k-b.sent), syscall.MSG_DONTWAIT, 0, 0)
			switch errno {
			case 0:
				b.sent += int(m)
			case syscall.EAGAIN:
				return false // park until writable
			case syscall.EINTR:
			default:
				b.sent++ // skip the datagram that failed
			}
		}
		return true
	}
	return b
}

// recv waits for datagrams. It returns 0 on EINTR or another error; on
// the netpoller path it returns an error once the socket is closed or its
// read deadline has passed.
func (b *rawBatch) recv() (int, error) {
	for i := range b.in {
		b.in[i].hdr.Namelen = syscall.SizeofSockaddrAny
		b.in[i].hdr.Flags = 0
	}
	b.k = 0
	if s := b.sock; s != nil {
		n, _, errno := syscall.RawSyscall6(unix.SYS_RECVMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&b.in[0])), uintptr(b.size), syscall.MSG_DONTWAIT, 0, 0)
		if errno == syscall.EAGAIN {
			n, _, errno = syscall.Syscall6(unix.SYS_RECVMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&b.in[0])), uintptr(b.size), msgWaitForOne, 0, 0)
		}
		if errno != 0 {
			return 0, nil
		}
		return int(n), nil
	}
	b.n = 0
	err := b.rc.Read(b.recvFn)
	return b.n, err
}

func (b *rawBatch) data(i int) []byte {
	return b.bufs[i*b.max : i*b.max+int(b.in[i].n)]
}

func (b *rawBatch) truncated(i int) bool {
	return b.in[i].hdr.Flags&syscall.MSG_TRUNC != 0
}

func (b *rawBatch) from(i int) netip.AddrPort {
	sa := &b.names[i]
	switch sa.Addr.Family {
	case syscall.AF_INET:
		p := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), port)
	case syscall.AF_INET6:
		p := (*syscall.RawSockaddrInet6)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(p.Addr), port)
	}
	return netip.AddrPort{}
}

func (b *rawBatch) reply(i int, resp []byte) {
	k := b.k
	if k >= b.size {
		return
	}
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

func (b *rawBatch) send() {
	if b.k == 0 {
		return
	}
	if s := b.sock; s != nil {
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
	} else {
		b.sent = 0
		b.rc.Write(b.sendFn)
	}
	b.k = 0
}
