// Package dnsserver is the DNS server seam: every DNS server of applayer
// (the authority, the resolver, and next the CDN's request router) is a
// Handler that answers wire-format queries, and a Server runs it over UDP
// and TCP on internal/transport.
//
// The Server owns what every DNS server needs and none should write again:
// the UDP read loops (transport.PacketServer: recvmmsg/sendmmsg batches on
// Linux, nothing allocated per datagram), the TCP accept loop and its
// limits (transport.StreamServer: connection and per-client caps, dropping
// the oldest idle connection when full, idle and per-query timeouts, an
// access check that closes refused clients at once), the two-byte framing
// over TCP, truncation of UDP replies to the client's EDNS buffer size
// (Truncate), SERVFAIL for a handler that panics, and the trace of every
// query and reply in one format (Summary).
//
// A query is parsed at most once per request: Request.Query reads the
// question and EDNS fields without allocating (ParseQuery), Request.Msg
// unpacks the whole message, each on first use, shared by the server and
// the handler. The request's bytes are read-only and reused after
// ServeDNS returns: a handler that keeps working on a query takes a Clone,
// and one that changes the message works on a copy (Msg().Copy()).
//
// # Adding a DNS server
//
// A new DNS system (the CDN's request router, say) is a handler:
//
//  1. Write a type with ServeDNS(req *Request, out []byte) []byte. Answer
//     from req.Query() on a fast path (pack into out, allocate nothing),
//     or from req.Msg(). Return nil for silence. A slow answer over UDP
//     goes through req.Clone().Go(func(*Request) []byte {...}); over TCP
//     answer before returning. A reply written as several messages (a
//     zone transfer) goes on req.Stream.
//  2. In the system's New, make its server with New(Config{Addr: ...,
//     limits, Logger, Trace, OnPanic: count it}, handler); Start, Addrs
//     and Shutdown of the system call the Server's.
//  3. Test the handler in-process on 127.0.0.1:0 over UDP and TCP;
//     Server.Respond answers one request without sockets, for fuzz
//     targets.
//
// The authority (package dns/authority) and the resolver (dns/resolver)
// are the two handlers today; Example shows a minimal one.
package dnsserver
