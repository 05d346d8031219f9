//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package transport

const reusePortAvailable = false

func setReusePort(uintptr) error { return ErrNoReusePort }
