//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package transport

import "golang.org/x/sys/unix"

const reusePortAvailable = true

func setReusePort(fd uintptr) error {
	return unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
}
