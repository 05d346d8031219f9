package pgtest

import "syscall"

// sysProcAttr runs a server process as uid:gid (when >= 0) and kills it
// when the test process dies, so a crashed test leaves no server behind.
func sysProcAttr(uid, gid int) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if uid >= 0 {
		a.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	return a
}
