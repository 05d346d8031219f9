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
func sysWriteLast(fd uintptr, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		syscall.MSG_MORE|syscall.MSG_NOSIGNAL, 0, 0)
	return int(n), e
}
