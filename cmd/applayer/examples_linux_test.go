package main

import (
	"os/exec"
	"syscall"
)

// ownGroup puts c in its own process group, killed as a group when its
// context ends, and has the kernel kill it if this test process dies (a
// test timeout must not leave servers behind).
func ownGroup(c *exec.Cmd) {
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
}
