package resolver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/dnsserver"
	"github.com/applayer/applayer/internal/trace"
)

// serverStat is what the resolver remembers about one authoritative server
// (its "infrastructure cache" entry).
type serverStat struct {
	srtt    time.Duration // smoothed round-trip time; 0 = unknown
	noEDNS  bool
	timeout int // consecutive timeouts
}

type infra struct {
	mu sync.Mutex
	m  map[netip.AddrPort]*serverStat
}

func (in *infra) get(a netip.AddrPort) serverStat {
	in.mu.Lock()
	defer in.mu.Unlock()
	if s, ok := in.m[a]; ok {
		return *s
	}
	return serverStat{}
}

func (in *infra) update(a netip.AddrPort, f func(*serverStat)) {
	in.mu.Lock()
	defer in.mu.Unlock()
	s, ok := in.m[a]
	if !ok {
		if len(in.m) > 10000 {
			clear(in.m)
		}
		s = &serverStat{}
		in.m[a] = s
	}
	f(s)
}

// unknownRTT is the RTT assumed for a server never asked, so new servers
// get tried but a known fast one is preferred.
const unknownRTT = 50 * time.Millisecond

// order returns servers sorted by expected RTT, with a random tie-break.
func (in *infra) order(servers []netip.AddrPort) []netip.AddrPort {
	type sc struct {
		a netip.AddrPort
		r time.Duration
	}
	s := make([]sc, len(servers))
	for i, a := range servers {
		st := in.get(a)
		r := st.srtt
		if r == 0 {
			r = unknownRTT
		}
		s[i] = sc{a, r + time.Duration(rand.IntN(1000))*time.Microsecond}
	}
	// insertion sort: lists are short
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].r < s[j-1].r; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	out := make([]netip.AddrPort, len(s))
	for i := range s {
		out[i] = s[i].a
	}
	return out
}

// errTimeout says a server did not answer in time.
var errTimeout = errors.New("resolver: upstream timeout")

// randomCase applies 0x20 encoding: each letter's case flipped at random.
func randomCase(name string) string {
	b := []byte(name)
	r := rand.Uint64()
	n := 0
	for i, c := range b {
		if ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') {
			if n == 64 {
				r, n = rand.Uint64(), 0
			}
			if r&(1<<n) != 0 {
				b[i] = c ^ 0x20
			} else {
				b[i] = c | 0x20
			}
			n++
		}
	}
	return string(b)
}

// exchange sends one query to server and returns its reply, which is
// accepted only if it comes from server (the socket is connected), has our
// ID and echoes our question exactly, 0x20 case included. Replies that do
// not match are counted and ignored, and reading goes on until timeout.
func (r *Engine) exchange(ctx context.Context, t *task, server netip.AddrPort, qname string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	st := r.infra.get(server)
	q := new(dns.Msg)
	q.Id = r.queryID()
	sent := qname
	if !r.cfg.No0x20 {
		sent = randomCase(qname)
	}
	q.Question = []dns.Question{{Name: sent, Qtype: qtype, Qclass: dns.ClassINET}}
	q.RecursionDesired = len(r.forwarders) > 0
	edns := !st.noEDNS
	if edns {
		// DO always (RFC 4035 3.2.1: a security-aware resolver sets it),
		// so a validating resolver forwarding to this one gets the
		// signatures and proofs; CD when this one validates itself.
		q.SetEdns0(1232, true)
		q.CheckingDisabled = r.validating()
	}
	start := time.Now()
	proto := "UDP"
	resp, size, err := r.exchangeUDP(ctx, server, q, timeout)
	if err == nil && resp.Truncated {
		r.m.tcpFallback.Inc()
		proto = "TCP"
		resp, size, err = r.exchangeTCP(ctx, server, q, timeout)
	}
	rtt := time.Since(start)
	if err != nil {
		if errors.Is(err, errTimeout) {
			r.m.upstreamTimeouts.Inc()
			r.infra.update(server, func(s *serverStat) {
				s.timeout++
				s.srtt = min(max(s.srtt, unknownRTT)*2, 5*time.Second)
			})
		}
		return nil, err
	}
	if edns && resp.IsEdns0() == nil && (resp.Rcode == dns.RcodeFormatError || resp.Rcode == dns.RcodeNotImplemented) {
		// The server does not speak EDNS0: remember and retry plain.
		r.infra.update(server, func(s *serverStat) { s.noEDNS = true })
		return r.exchange(ctx, t, server, qname, qtype, timeout)
	}
	r.infra.update(server, func(s *serverStat) {
		s.timeout = 0
		if s.srtt == 0 {
			s.srtt = rtt
		} else {
			s.srtt = (s.srtt*7 + rtt*3) / 10
		}
	})
	r.m.rtt.Observe(rtt.Seconds())
	// Restore the name as asked, so callers compare case-insensitively.
	resp.Question[0].Name = qname
	if sent != qname {
		undo0x20(resp, sent, qname)
	}
	if t.step != nil {
		t.step(Step{Server: server, ServerName: t.names[server], Name: qname, Type: qtype, Reply: resp,
			Size: size, Proto: proto, RTT: rtt, Nested: t.depth > 0 || t.keyDepth > 0})
	}
	return resp, nil
}

func (r *Engine) validating() bool { return len(r.anchors) > 0 }

// traceQuery and traceReply publish an upstream exchange in the one DNS
// trace format (dnsserver.Summary: a referral says where it points, an
// answer what it holds).
func (r *Engine) traceQuery(local, remote, proto string, q *dns.Msg, n int) {
	if !r.deps.Trace.Enabled() {
		return
	}
	r.deps.Trace.Publish(trace.Event{From: local, To: remote, Proto: proto, Summary: dnsserver.Summary(q), Bytes: n})
}

func (r *Engine) traceReply(local, remote, proto string, m *dns.Msg, n int) {
	if !r.deps.Trace.Enabled() {
		return
	}
	r.deps.Trace.Publish(trace.Event{From: remote, To: local, Proto: proto, Summary: dnsserver.Summary(m), Bytes: n})
}

// exchangeUDP sends q to server over UDP and returns the reply with its
// size on the wire.
func (r *Engine) exchangeUDP(ctx context.Context, server netip.AddrPort, q *dns.Msg, timeout time.Duration) (*dns.Msg, int, error) {
	out, err := q.Pack()
	if err != nil {
		return nil, 0, fmt.Errorf("resolver: pack: %w", err)
	}
	// A fresh connected socket per query: the kernel picks a random source
	// port and drops datagrams from any other address.
	conn, release, err := r.dialUpstreamUDP(ctx, server)
	if err != nil {
		return nil, 0, fmt.Errorf("resolver: dial %s: %w", server, err)
	}
	defer release()
	defer conn.Close()
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	r.m.upstreamQueries.Inc()
	local := conn.LocalAddr().String()
	// Traced before it is sent, so the query comes before its answer.
	r.traceQuery(local, server.String(), "dns/udp", q, len(out))
	if _, err := conn.Write(out); err != nil {
		return nil, 0, fmt.Errorf("resolver: send to %s: %w", server, err)
	}
	// We advertise 1232 bytes (EDNS0): larger replies come truncated.
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, 0, errTimeout
			}
			return nil, 0, fmt.Errorf("resolver: read from %s: %w", server, err)
		}
		resp, ok := r.match(q, buf[:n])
		if !ok {
			r.m.mismatched.Inc()
			continue
		}
		r.traceReply(local, server.String(), "dns/udp", resp, n)
		return resp, n, nil
	}
}

// match unpacks a reply and checks it answers q: QR set, same ID, same
// question with the exact same case.
func (r *Engine) match(q *dns.Msg, b []byte) (*dns.Msg, bool) {
	if len(b) < 12 || binary.BigEndian.Uint16(b) != q.Id {
		return nil, false
	}
	resp := new(dns.Msg)
	if err := resp.Unpack(b); err != nil {
		return nil, false
	}
	if !resp.Response || resp.Opcode != dns.OpcodeQuery || len(resp.Question) != 1 {
		return nil, false
	}
	qq, rq := q.Question[0], resp.Question[0]
	if rq.Name != qq.Name || rq.Qtype != qq.Qtype || rq.Qclass != qq.Qclass {
		return nil, false
	}
	return resp, true
}

// exchangeTCP sends q to server over TCP and returns the reply with its
// size on the wire.
func (r *Engine) exchangeTCP(ctx context.Context, server netip.AddrPort, q *dns.Msg, timeout time.Duration) (*dns.Msg, int, error) {
	out, err := q.Pack()
	if err != nil {
		return nil, 0, fmt.Errorf("resolver: pack: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*timeout)
	defer cancel()
	conn, err := r.deps.Dialer.DialContext(ctx, "tcp", server.String())
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, 0, errTimeout
		}
		return nil, 0, fmt.Errorf("resolver: dial tcp %s: %w", server, err)
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	r.m.upstreamQueries.Inc()
	frame := make([]byte, 2+len(out))
	binary.BigEndian.PutUint16(frame, uint16(len(out)))
	copy(frame[2:], out)
	local := conn.LocalAddr().String()
	r.traceQuery(local, server.String(), "dns/tcp", q, len(out))
	if _, err := conn.Write(frame); err != nil {
		return nil, 0, fmt.Errorf("resolver: tcp send to %s: %w", server, err)
	}
	var l [2]byte
	if _, err := io.ReadFull(conn, l[:]); err != nil {
		return nil, 0, tcpErr(server, err)
	}
	buf := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(conn, buf); err != nil {
		return nil, 0, tcpErr(server, err)
	}
	resp, ok := r.match(q, buf)
	if !ok {
		r.m.mismatched.Inc()
		return nil, 0, fmt.Errorf("resolver: tcp reply from %s does not match the query", server)
	}
	r.traceReply(local, server.String(), "dns/tcp", resp, len(buf))
	return resp, len(buf), nil
}

func tcpErr(server netip.AddrPort, err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errTimeout
	}
	return fmt.Errorf("resolver: tcp read from %s: %w", server, err)
}

// lowerName returns name in lower case, fully qualified.
func lowerName(name string) string { return strings.ToLower(dns.Fqdn(name)) }
