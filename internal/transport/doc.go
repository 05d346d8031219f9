// Package transport is the network layer every applayer server shares. A
// system supplies a protocol handler; this package owns the sockets:
//
//   - Listening: ListenConfig binds TCP listeners and UDP sockets, with
//     SO_REUSEPORT where the system has it (build tags: Linux, the BSDs and
//     darwin through golang.org/x/sys/unix; elsewhere ReusePort is refused
//     with ErrNoReusePort and ListenUDPGroup falls back to one socket).
//   - StreamServer: an accept loop with backoff on errors (5 ms doubling to
//     1 s, as net/http, so EMFILE never spins), one goroutine per
//     connection running the Handler, a connection limit and a per-client-IP
//     limit, an optional drop-the-oldest-idle policy when full, an ACL hook
//     (Refuse) that closes refused clients at once without taking a slot,
//     idle and read timeouts, connection tracking, panics recovered and
//     answered with the protocol's failure reply (OnPanic), and
//     Shutdown(ctx) that stops accepting and drains (Close stops at once).
//   - PacketServer: UDP read loops that hand batches of datagrams to a
//     PacketHandler and send the replies it queues in batches. On Linux the
//     batches are raw recvmmsg/sendmmsg with the sender's address kept as a
//     raw sockaddr, so the hot path allocates nothing per datagram; on other
//     systems (or with NoBatch) one datagram is read per call.
//   - Hand-off: Sniffer reads the first bytes of each connection (with a
//     deadline and a size cap) and hands the connection, those bytes
//     replayed (ReplayConn), to one of several Handoff listeners that
//     net/http or another server accepts from. ReplayConn keeps
//     *net.TCPConn's ReadFrom (sendfile) and CloseWrite.
//   - Front: a StreamServer that hands every connection whole to a
//     library's server (net/http, go-smtp, go-imap) through its Listener,
//     so the library's protocol gets the transport's caps and back-off.
//
// The package logs through the *slog.Logger it is given and reports what
// it does through an optional Observe callback, so each system counts
// accepted, refused, evicted and panicked connections in its own metrics.
// It changes no process-wide setting.
package transport
