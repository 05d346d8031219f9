package authority

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/dnsserver"
	"github.com/applayer/applayer/internal/trace"
)

// Recursion is the chapter's recursive-query mode, for the lab's
// dns-recursive scenario only: an authoritative server that is asked with
// RD set does not refer the asker on but asks the next server itself (with
// RD set, so that one recurses in turn) and returns its answer. A query
// for a name outside its zones goes to Root; a referral to the delegated
// zone's server (its glue address, on Port). Off unless SetRecursion turns
// it on (the lab's admin endpoint); real authoritative servers never
// recurse.
type Recursion struct {
	// Root is the root server's address (host:port), for names outside the
	// server's zones.
	Root string
	// Port is the DNS port of the servers referrals name (the lab's).
	Port int
	// Timeout bounds each forwarded query. Default 4s.
	Timeout time.Duration
}

// SetRecursion turns the recursive mode on (r not nil) or off (nil).
func (s *Server) SetRecursion(r *Recursion) {
	if r != nil && r.Timeout <= 0 {
		c := *r
		c.Timeout = 4 * time.Second
		r = &c
	}
	s.recursion.Store(r)
}

// RecursionHandler is the admin endpoint that turns the recursive mode on
// and off: POST with on=true (or false).
func (s *Server) RecursionHandler(r Recursion) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		on, err := strconv.ParseBool(req.URL.Query().Get("on"))
		if err != nil {
			http.Error(w, "recursion needs on=true or on=false", http.StatusBadRequest)
			return
		}
		if on {
			s.SetRecursion(&r)
		} else {
			s.SetRecursion(nil)
		}
		fmt.Fprintf(w, "{\"recursion\":%v}\n", on)
	})
}

// recursive reports whether req is to be answered recursively.
func (s *Server) recursive(req *dnsserver.Request) (*Recursion, bool) {
	r := s.recursion.Load()
	w := req.Wire
	return r, r != nil && len(w) > 12 && w[2]&0x80 == 0 && w[2]&0x01 != 0
}

// serveRecursive answers req in the recursive mode: over UDP on a
// goroutine of its own (the next server may take a while), over TCP in
// turn.
func (s *Server) serveRecursive(req *dnsserver.Request, out []byte, rc *Recursion) []byte {
	if req.Proto == dnsserver.UDP {
		s.wg.Add(1)
		if req.Clone().Go(func(r *dnsserver.Request) []byte { defer s.wg.Done(); return s.recurse(r, nil, rc) }) {
			return nil
		}
		s.wg.Done()
	}
	return s.recurse(req, out, rc)
}

func (s *Server) recurse(r *dnsserver.Request, out []byte, rc *Recursion) []byte {
	q, err := r.Msg()
	if err != nil {
		return dnsserver.HeaderReply(r.Wire, dns.RcodeFormatError, out)
	}
	m, _ := s.handle(q, r.From, r.Proto == dnsserver.TCP)
	next := ""
	switch {
	case m.Rcode == dns.RcodeRefused:
		next = rc.Root // not ours: from the root down
	case m.Rcode == dns.RcodeSuccess && len(m.Answer) == 0 && !m.Authoritative:
		next = referralAddr(m, rc.Port)
	}
	if next != "" {
		fq := q.Copy()
		fq.Id = dns.Id()
		fq.RecursionDesired = true
		reply, err := s.forward(fq, next, rc.Timeout)
		if err != nil {
			s.log.Debug("recursion: forwarding failed", "to", next, "err", err)
			m = new(dns.Msg)
			m.SetRcode(q, dns.RcodeServerFailure)
		} else {
			reply.Id = q.Id
			reply.Authoritative = false
			m = reply
		}
	}
	m.RecursionAvailable = true
	wire, err := m.PackBuffer(out)
	if err != nil {
		return dnsserver.HeaderReply(r.Wire, dns.RcodeServerFailure, out)
	}
	return wire
}

// referralAddr is the address of the first name server of a referral
// whose glue m carries.
func referralAddr(m *dns.Msg, port int) string {
	for _, rr := range m.Ns {
		ns, ok := rr.(*dns.NS)
		if !ok {
			continue
		}
		for _, x := range m.Extra {
			if a, ok := x.(*dns.A); ok && strings.EqualFold(a.Hdr.Name, ns.Ns) {
				if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
					return netip.AddrPortFrom(ip, uint16(port)).String()
				}
			}
		}
	}
	return ""
}

// forward sends q to server over UDP through the server's dialer and
// returns the answer, tracing both.
func (s *Server) forward(q *dns.Msg, server string, timeout time.Duration) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	conn, err := s.deps.Dialer.DialContext(ctx, "udp", server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	c := &dns.Client{Net: "udp", UDPSize: 1232}
	if q.IsEdns0() == nil {
		q.SetEdns0(1232, true)
	}
	local := conn.LocalAddr().String()
	if s.deps.Trace.Enabled() {
		s.deps.Trace.Publish(trace.Event{From: local, To: server, Proto: "dns/udp", Summary: dnsserver.Summary(q), Bytes: q.Len()})
	}
	reply, _, err := c.ExchangeWithConnContext(ctx, q, &dns.Conn{Conn: conn})
	if err != nil {
		return nil, err
	}
	if s.deps.Trace.Enabled() {
		s.deps.Trace.Publish(trace.Event{From: server, To: local, Proto: "dns/udp", Summary: dnsserver.Summary(reply), Bytes: reply.Len()})
	}
	return reply, nil
}
