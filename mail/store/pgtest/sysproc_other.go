//go:build !linux

package pgtest

import "syscall"

// sysProcAttr: off Linux the server runs as the test's own user (root
// is not supported there).
func sysProcAttr(uid, gid int) *syscall.SysProcAttr { return nil }
