//go:build unix

package fastpath

import "syscall"

const canPeek = true

// peekWouldBlock reports whether a read from the socket fd would block,
// peeking (MSG_PEEK) one byte without consuming it.
func peekWouldBlock(fd uintptr, b []byte) bool {
	_, _, err := syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
}
