package dnsserver

import (
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// Proto is the transport a request came over.
type Proto uint8

const (
	UDP Proto = iota
	TCP
)

func (p Proto) String() string {
	if p == TCP {
		return "tcp"
	}
	return "udp"
}

// Request is one query as the server received it. The server reuses a
// Request and its Wire for the next datagram once the handler returns: a
// handler must neither change Wire nor keep the Request; work that
// outlives ServeDNS takes a Clone (and replies through Go over UDP).
type Request struct {
	// Wire is the query's bytes (read-only).
	Wire []byte
	// From is the client; Local the server's address, for traces.
	From  netip.AddrPort
	Local string
	Proto Proto
	// Now is when the request's batch was read (read once per batch).
	Now time.Time
	// MaxUDP is the server's ceiling for UDP replies, whatever the
	// client's EDNS buffer says (0: the client's size alone).
	MaxUDP int
	// Stream, over TCP, writes messages on the connection itself, for a
	// handler that answers one query with several messages (a zone
	// transfer): it then returns nil from ServeDNS. It signs messages
	// that carry a TSIG record with the key the query was verified with
	// (Config.TSIGSecrets). Nil over UDP.
	Stream dns.ResponseWriter

	// Set by the server for Go.
	srv  *Server
	conn *net.UDPConn

	parsed  bool
	parseOK bool
	q       Query
	msg     *dns.Msg
	msgErr  error
	unpackd bool
}

// reset prepares r, reused by a reader, for the next datagram; the key
// buffer of its Query is kept.
func (r *Request) reset() {
	key := r.q.Key
	*r = Request{srv: r.srv, conn: r.conn, Local: r.Local, MaxUDP: r.MaxUDP}
	r.q.Key = key[:0]
}

// Reset prepares r for another query as the server does between
// datagrams: the parsed query goes, its key's storage stays (handlers'
// benchmarks use it to measure allocations as the server runs them).
func (r *Request) Reset() { r.reset() }

// Query returns the query as read by ParseQuery, parsed on the first
// call only. ok is false when it needs a full unpack (Msg).
func (r *Request) Query() (q *Query, ok bool) {
	if !r.parsed {
		r.parsed = true
		r.parseOK = ParseQuery(r.Wire, &r.q) == nil
	}
	return &r.q, r.parseOK
}

// Msg returns the query unpacked, on the first call only: every caller
// gets the same message, which must not be changed (Copy it first).
func (r *Request) Msg() (*dns.Msg, error) {
	if !r.unpackd {
		r.unpackd = true
		r.msg = new(dns.Msg)
		if r.msgErr = r.msg.Unpack(r.Wire); r.msgErr != nil {
			r.msg = nil
		}
	}
	return r.msg, r.msgErr
}

// MaxSize is how large the reply may be: 65535 over TCP; over UDP the
// client's EDNS buffer size (512 without EDNS, never less), capped by
// MaxUDP.
func (r *Request) MaxSize() int {
	if r.Proto == TCP {
		return dns.MaxMsgSize
	}
	size := dns.MinMsgSize
	if q, ok := r.Query(); ok {
		size = q.UDPSize
	} else if m, err := r.Msg(); err == nil {
		if opt := m.IsEdns0(); opt != nil {
			size = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
	}
	if r.MaxUDP > 0 {
		size = min(size, max(r.MaxUDP, dns.MinMsgSize))
	}
	return size
}

// Clone returns a copy of r that the handler may keep after ServeDNS
// returns: Wire is copied, and the parsed query and message with it
// (not parsed again). Stream is not kept.
func (r *Request) Clone() *Request {
	c := &Request{Wire: append([]byte(nil), r.Wire...), From: r.From, Local: r.Local, Proto: r.Proto, Now: r.Now, MaxUDP: r.MaxUDP, srv: r.srv, conn: r.conn}
	if r.parsed {
		c.parsed, c.parseOK, c.q = true, r.parseOK, r.q
		c.q.Key = append([]byte(nil), r.q.Key...)
	}
	if r.unpackd && r.msg != nil {
		c.unpackd, c.msg = true, r.msg.Copy()
	}
	return c
}

// Go answers r later, over UDP: it runs answer on a new goroutine with
// the server's rules (a panic answered with SERVFAIL, a reply too large
// truncated, the reply traced) and sends the reply it returns (nil: no
// reply). r should be a Clone. It reports false, and does nothing, over
// TCP or when r did not come from a started Server: answer TCP queries
// before ServeDNS returns.
func (r *Request) Go(answer func(r *Request) []byte) bool {
	if r.Proto != UDP || r.conn == nil || r.srv == nil {
		return false
	}
	go func() {
		reply := r.srv.answer(r, nil, func(r *Request, _ []byte) []byte { return answer(r) })
		if len(reply) > 0 {
			r.conn.WriteToUDPAddrPort(reply, r.From)
		}
	}()
	return true
}

// LocalAddr is the server address the request came to (Local, else the
// server's own), for traces.
func (r *Request) LocalAddr() string {
	if r.Local != "" || r.srv == nil {
		return r.Local
	}
	return r.srv.local
}
