//go:build linux

package fastpath

import (
	"syscall"
	"unsafe"
)

// canRaw: the fast path reads and writes the socket itself, inside
// RawConn callbacks (the netpoller still does the waiting and the
// deadlines).
const canRaw = true

// sysRead and sysWrite are read(2) and write(2) on a non-blocking
// socket without the runtime's entersyscall/exitsyscall: they never
// block, and a goroutine that does not enter a system call keeps its P,
// so the runtime's sysmon neither hands the P to another thread during a
// long loopback write (a thread switch per request under load) nor keeps
// waking every 20µs to look.
func sysRead(fd uintptr, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), e
}

func sysWrite(fd uintptr, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), e
}

// sysWriteLast is sysWrite for a connection's last bytes (it is closed
// right after): send(2) with MSG_MORE holds a short last segment back, so
// the close sends it with the FIN in one segment instead of two, as
// nginx's tcp_nopush (TCP_CORK) does. MSG_NOSIGNAL: a client already gone
// is EPIPE, without the signal.
func sysWriteLast(fd uintptr, b []byte) (int, syscall.Errno) { return sysSend(fd, b, true) }

// canSendFile: Writer.SendFile is available.
const canSendFile = true

// sysSendfile is sendfile(2) of up to n bytes at *off of the file in to
// the non-blocking socket out (*off advanced by what was sent), without
// entersyscall as sysWrite. Reading the file may wait for the disk, as
// nginx's sendfile does, holding the thread and its P meanwhile.
func sysSendfile(out uintptr, in int, off *int64, n int64) (int, syscall.Errno) {
	n = min(n, 1<<30)
	r, _, e := syscall.RawSyscall6(syscall.SYS_SENDFILE, out, uintptr(in), uintptr(unsafe.Pointer(off)), uintptr(n), 0, 0)
	return int(r), e
}

// sysSend is send(2) of b, with MSG_MORE when more is set (the kernel
// holds a partial segment for what follows). MSG_NOSIGNAL: a client
// already gone is EPIPE, without the signal.
func sysSend(fd uintptr, b []byte, more bool) (int, syscall.Errno) {
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
