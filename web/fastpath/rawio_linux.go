//go:build linux

package fastpath

import (
	"syscall"

	"github.com/applayer/applayer/internal/rawsys"
)

// canRaw: the fast path reads and writes the socket itself, inside
// RawConn callbacks (the netpoller still does the waiting and the
// deadlines), with internal/rawsys's system calls: without the runtime's
// entersyscall/exitsyscall, so sysmon neither hands the P away during a
// long loopback write nor keeps waking to look.
const canRaw = true

// sysRead and sysWrite are read(2) and write(2) on a non-blocking socket.
func sysRead(fd uintptr, b []byte) (int, syscall.Errno)  { return rawsys.Read(fd, b) }
func sysWrite(fd uintptr, b []byte) (int, syscall.Errno) { return rawsys.Write(fd, b) }

// sysWriteLast is sysWrite for a connection's last bytes (it is closed
// right after): with MSG_MORE the kernel holds a short last segment back,
// so the close sends it with the FIN in one segment instead of two, as
// nginx's tcp_nopush (TCP_CORK) does.
func sysWriteLast(fd uintptr, b []byte) (int, syscall.Errno) { return rawsys.Send(fd, b, true) }

// canSendFile: Writer.SendFile is available.
const canSendFile = true

// sysSendfile is sendfile(2) from the file in to the socket out (see
// rawsys.Sendfile: a cold file holds the thread while the disk reads).
func sysSendfile(out uintptr, in int, off *int64, n int64) (int, syscall.Errno) {
	return rawsys.Sendfile(out, in, off, n)
}

// sysSend is send(2) of b, with MSG_MORE when more is set (the kernel
// holds a partial segment for what follows).
func sysSend(fd uintptr, b []byte, more bool) (int, syscall.Errno) { return rawsys.Send(fd, b, more) }
