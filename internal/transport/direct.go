package transport

// Direct accept (StreamConfig.DirectAccept, Linux): the accept loop calls
// accept4 on the listener's descriptor itself (waiting in Go's netpoller
// only when the backlog is empty) and hands each handler a connection
// whose reads and writes are plain non-blocking system calls on the
// accepted descriptor, which is never registered with Go's netpoller
// while they succeed. A short request answered with one write and a
// close then costs four system calls (accept4, read, write, close)
// instead of Go's eight (its accept adds getsockname and TCP_NODELAY, its
// netpoller epoll_ctl ADD and DEL). The first read or write that would
// block moves the descriptor to Go's netpoller (net.FileConn) and goes on
// there, deadlines included, so a slow client, a partial request or a
// keep-alive connection waiting for its next request behaves as on the
// portable path. Detach moves the connection first, so a library server
// taking it (net/http through a Handoff) gets a *net.TCPConn with
// sendfile. A listener that is not a *net.TCPListener (a lab link's
// wrapper) and other systems take the portable path.
