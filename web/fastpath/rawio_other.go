//go:build !unix

package fastpath

import "syscall"

// Without non-blocking socket calls of its own the fast path reads and
// writes through net.Conn (an idle connection keeps its buffer while it
// waits).
const canRaw = false

func sysRead(uintptr, []byte) (int, syscall.Errno)      { return 0, syscall.EINVAL }
func sysWrite(uintptr, []byte) (int, syscall.Errno)     { return 0, syscall.EINVAL }
func sysWriteLast(uintptr, []byte) (int, syscall.Errno) { return 0, syscall.EINVAL }

const canSendFile = false

func sysSendfile(uintptr, int, *int64, int64) (int, syscall.Errno) { return 0, syscall.EINVAL }
func sysSend(uintptr, []byte, bool) (int, syscall.Errno)           { return 0, syscall.EINVAL }
