// Package rawsys holds the socket system calls the servers' hot paths make
// without telling Go's scheduler (RawSyscall): read, write, send, sendfile,
// accept4 and close on non-blocking descriptors. They never block, and a
// goroutine that does not enter a system call keeps its P, so the
// runtime's sysmon neither hands the P to another thread during a long
// loopback write or close (the peer's receive path runs in the kernel
// meanwhile: a thread switch or two per request with GOMAXPROCS=1) nor
// keeps waking every 20µs to look. The waiting stays the netpoller's (or a
// server's own epoll): callers use these only where EAGAIN is handled.
//
// Linux only; other systems use syscall's wrappers.
package rawsys
