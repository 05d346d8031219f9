//go:build unix && !linux

package fastpath

import "syscall"

// canRaw: the fast path reads and writes the socket itself, inside
// RawConn callbacks (the netpoller still does the waiting and the
// deadlines).
const canRaw = true

// sysRead and sysWrite are read(2) and write(2) on a non-blocking socket.
func sysRead(fd uintptr, b []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), b)
	return max(n, 0), errnoOf(err)
}

func sysWrite(fd uintptr, b []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), b)
	return max(n, 0), errnoOf(err)
}

// sysWriteLast is sysWrite (MSG_MORE is Linux's).
func sysWriteLast(fd uintptr, b []byte) (int, syscall.Errno) { return sysWrite(fd, b) }

func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	if e, ok := err.(syscall.Errno); ok {
		return e
	}
	return syscall.EIO
}

// canSendFile: Writer.SendFile is Linux's (sendfile(2) differs elsewhere).
const canSendFile = false

func sysSendfile(uintptr, int, *int64, int64) (int, syscall.Errno) { return 0, syscall.ENOSYS }
func sysSend(uintptr, []byte, bool) (int, syscall.Errno)           { return 0, syscall.ENOSYS }
