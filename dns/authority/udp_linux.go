//go:build linux

package authority

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawBatch is how many datagrams one recvmmsg/sendmmsg moves at most on
// the Linux fast path.
const rawBatch = 64

// rawInBuf is the receive buffer per datagram: larger queries are cut and
// answered FORMERR (a DNS query over UDP has no reason to be this big).
const rawInBuf = 8192

// mmsghdr is struct mmsghdr of <sys/socket.h>.
type mmsghdr struct {
	hdr syscall.Msghdr
	n   uint32
	_   [4]byte
}

// rawSock is a dup of a UDP socket's descriptor in blocking mode, served
// with raw recvmmsg/sendmmsg: no netpoller round trip when the queue is
// empty, no per-datagram address allocation (the sender's sockaddr is
// reused as the answer's destination). Shutdown wakes the blocked reader
// with shutdown(SHUT_RD).
type rawSock struct {
	mu     sync.Mutex
	fd     int
	closed bool
}

// newRawSock dups c's descriptor and makes it blocking. It fails (and the
// portable path serves) when the descriptor cannot be had.
func newRawSock(c *net.UDPConn) (*rawSock, error) {
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
	// The flag lives in the shared open file description: the UDPConn is
	// never read or written again, only closed.
	if err := syscall.SetNonblock(fd, false); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return &rawSock{fd: fd}, nil
}

// wake makes a blocked recvmmsg return.
func (r *rawSock) wake() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		syscall.Shutdown(r.fd, syscall.SHUT_RD)
	}
}

func (r *rawSock) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		syscall.Close(r.fd)
	}
}

// serveRaw answers datagrams on r until stop is closed.
func (s *Server) serveRaw(r *rawSock, local string) {
	defer s.wg.Done()
	defer r.close()
	// On the heap, so that the kernel's pointers never point into a
	// goroutine stack.
	st := new(struct {
		in     [rawBatch]mmsghdr
		out    [rawBatch]mmsghdr
		inIov  [rawBatch]syscall.Iovec
		outIov [rawBatch]syscall.Iovec
		names  [rawBatch]syscall.RawSockaddrAny
	})
	in, out, inIov, outIov, names := &st.in, &st.out, &st.inIov, &st.outIov, &st.names
	var cache answerCache
	bufs := make([]byte, rawBatch*rawInBuf)
	outBuf := make([][]byte, rawBatch)
	for i := range in {
		inIov[i].Base = &bufs[i*rawInBuf]
		inIov[i].SetLen(rawInBuf)
		in[i].hdr.Iov = &inIov[i]
		in[i].hdr.Iovlen = 1
		in[i].hdr.Name = (*byte)(unsafe.Pointer(&names[i]))
		outBuf[i] = make([]byte, 0, s.cfg.MaxUDPSize)
	}
	for {
		for i := range in {
			in[i].hdr.Namelen = syscall.SizeofSockaddrAny
			in[i].hdr.Flags = 0
		}
		// Under load the queue has datagrams: take them without the
		// runtime's syscall bookkeeping. When it is empty, block (letting
		// the runtime run other goroutines) until the first one comes.
		n, _, errno := syscall.RawSyscall6(unix.SYS_RECVMMSG, uintptr(r.fd), uintptr(unsafe.Pointer(&in[0])), rawBatch, syscall.MSG_DONTWAIT, 0, 0)
		if errno == syscall.EAGAIN {
			n, _, errno = syscall.Syscall6(unix.SYS_RECVMMSG, uintptr(r.fd), uintptr(unsafe.Pointer(&in[0])), rawBatch, msgWaitForOne, 0, 0)
		}
		select {
		case <-s.stop:
			return
		default:
		}
		if errno != 0 || n == 0 {
			continue // EINTR, or a shutdown racing a late packet
		}
		zs := s.zones.Load()
		tracing := s.deps.Trace.Enabled()
		s.m.udpQueries.Add(float64(n))
		k := 0
		for i := 0; i < int(n); i++ {
			q := bufs[i*rawInBuf : i*rawInBuf+int(in[i].n)]
			if in[i].hdr.Flags&syscall.MSG_TRUNC != 0 && len(q) >= 12 {
				// Cut: the header alone says FORMERR.
				q = q[:12]
			}
			resp := cache.get(zs, q, outBuf[i])
			if resp == nil || tracing {
				from, ok := sockaddrPort(&names[i])
				if !ok {
					continue
				}
				var cacheable bool
				resp, cacheable = s.respond(q, from, false, outBuf[i])
				if resp == nil {
					continue
				}
				if cacheable {
					cache.put(zs, q, resp)
				}
				if tracing {
					s.traceMsg(local, from.String(), "dns/udp", resp)
				}
			} else {
				s.m.rcode(int(resp[3] & 0xf))
			}
			if len(resp) == 0 {
				continue
			}
			outBuf[i] = resp[:0]
			outIov[k].Base = &resp[0]
			outIov[k].SetLen(len(resp))
			out[k].hdr = syscall.Msghdr{
				Name:    (*byte)(unsafe.Pointer(&names[i])),
				Namelen: in[i].hdr.Namelen,
				Iov:     &outIov[k],
			}
			out[k].hdr.Iovlen = 1
			k++
		}
		for sent := 0; sent < k; {
			m, _, errno := syscall.RawSyscall6(unix.SYS_SENDMMSG, uintptr(r.fd), uintptr(unsafe.Pointer(&out[sent])), uintptr(k-sent), syscall.MSG_DONTWAIT, 0, 0)
			if errno == syscall.EAGAIN {
				m, _, errno = syscall.Syscall6(unix.SYS_SENDMMSG, uintptr(r.fd), uintptr(unsafe.Pointer(&out[sent])), uintptr(k-sent), 0, 0, 0)
			}
			switch {
			case errno == syscall.EINTR || errno == syscall.EAGAIN:
			case errno != 0:
				sent++ // skip the datagram that failed
			default:
				sent += int(m)
			}
		}
	}
}

// msgWaitForOne is MSG_WAITFORONE: block for the first datagram only.
const msgWaitForOne = 0x10000

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
