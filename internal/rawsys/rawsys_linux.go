//go:build linux

package rawsys

import (
	"syscall"
	"unsafe"
)

// Read is read(2) of b; an empty b reads nothing and returns 0, 0.
func Read(fd uintptr, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), e
}

// Write is write(2) of b; an empty b writes nothing and returns 0, 0.
func Write(fd uintptr, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), e
}

// Send is send(2) of b, with MSG_MORE when more is set (the kernel holds
// a partial segment for what follows, or for the FIN of a close).
// MSG_NOSIGNAL: a client already gone is EPIPE, without the signal.
func Send(fd uintptr, b []byte, more bool) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	flags := syscall.MSG_NOSIGNAL
	if more {
		flags |= syscall.MSG_MORE
	}
	n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(flags), 0, 0)
	return int(n), e
}

// Sendfile is sendfile(2) of up to n bytes (at most 1 GiB) at *off of the
// file in to the socket out, *off advanced by what was sent. Reading the
// file may wait for the disk, as nginx's sendfile does, holding the
// thread and its P meanwhile.
func Sendfile(out uintptr, in int, off *int64, n int64) (int, syscall.Errno) {
	n = min(n, 1<<30)
	r, _, e := syscall.RawSyscall6(syscall.SYS_SENDFILE, out, uintptr(in), uintptr(unsafe.Pointer(off)), uintptr(n), 0, 0)
	return int(r), e
}

// Accept4 is accept4(2) on the listening descriptor fd, the new descriptor
// non-blocking and close-on-exec, the peer's address in sa.
func Accept4(fd uintptr, sa *syscall.RawSockaddrAny) (int, syscall.Errno) {
	l := uint32(syscall.SizeofSockaddrAny)
	r, _, e := syscall.RawSyscall6(syscall.SYS_ACCEPT4, fd, uintptr(unsafe.Pointer(sa)), uintptr(unsafe.Pointer(&l)),
		syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0, 0)
	return int(r), e
}

// Close is close(2).
func Close(fd uintptr) syscall.Errno {
	_, _, e := syscall.RawSyscall(syscall.SYS_CLOSE, fd, 0, 0)
	return e
}
