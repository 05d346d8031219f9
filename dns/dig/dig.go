// Package dig is applayer's DNS query tool: one query printed the way dig
// prints it (header with flags, sections, query time, server, size), and
// +trace, which resolves a name iteratively from the root hints with the
// resolver's engine (package resolver) and prints each referral, like the
// textbook's iterated-query figure.
package dig

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/resolver"
	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
)

// Options are one dig invocation.
type Options struct {
	// Server is host:port, or host (port 53). Empty: the first nameserver
	// of /etc/resolv.conf.
	Server string
	Name   string
	Type   uint16
	// TCP queries over TCP (+tcp); otherwise UDP with TCP fallback on TC.
	TCP bool
	// DNSSEC sets the DO bit (+dnssec).
	DNSSEC bool
	// NoRecurse clears RD (+norecurse).
	NoRecurse bool
	// Short prints only the answers' data (+short).
	Short bool
	// CD sets the checking-disabled bit (+cd): a validating resolver
	// answers without validating.
	CD bool
	// NSID asks the server for its name server identifier (+nsid).
	NSID bool
	// Multi prints long records (SOA, DNSKEY, RRSIG, DS) over several
	// lines with comments (+multi).
	Multi bool
	// Display chooses the parts printed (+noall +answer, +nostats...).
	Display Display
	// JSON prints the answer as one JSON object instead (--json).
	JSON bool
	// Trace resolves iteratively from Roots (+trace).
	Trace bool
	// Roots are the root servers' addresses (host:port) for +trace.
	Roots []string
	// Port is the port of name servers found by referral during +trace.
	// Default 53.
	Port int
	// Timeout per query. Default 3s.
	Timeout time.Duration
	// Dialer opens connections; nil uses net.Dialer.
	Dialer service.Dialer
	// Args is the command line echoed in the banner.
	Args string
}

func (o *Options) defaults() {
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Second
	}
	if o.Port == 0 {
		o.Port = 53
	}
	if o.Dialer == nil {
		o.Dialer = &net.Dialer{}
	}
	if o.Type == 0 {
		o.Type = dns.TypeA
	}
	o.Name = dns.Fqdn(o.Name)
}

// Result is one exchange.
type Result struct {
	Msg    *dns.Msg
	Server string
	Proto  string
	RTT    time.Duration
	Size   int
}

// Exchange sends one query for name/qtype to server and returns the
// answer, retrying over TCP when a UDP answer comes back truncated.
func Exchange(ctx context.Context, o Options, server, name string, qtype uint16, rd bool) (*Result, error) {
	o.defaults()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.RecursionDesired = rd
	q.CheckingDisabled = o.CD
	q.SetEdns0(1232, o.DNSSEC)
	if o.NSID {
		opt := q.IsEdns0()
		opt.Option = append(opt.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID})
	}
	proto := "udp"
	if o.TCP {
		proto = "tcp"
	}
	r, err := exchange(ctx, o, q, server, proto)
	if err == nil && r.Msg.Truncated && proto == "udp" {
		r, err = exchange(ctx, o, q, server, "tcp")
	}
	return r, err
}

func exchange(ctx context.Context, o Options, q *dns.Msg, server, proto string) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	start := time.Now()
	c, err := o.Dialer.DialContext(ctx, proto, server)
	if err != nil {
		return nil, fmt.Errorf("dig: %w", err)
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	co := &dns.Conn{Conn: c, UDPSize: 65535}
	if err := co.WriteMsg(q); err != nil {
		return nil, fmt.Errorf("dig: %w", err)
	}
	for {
		r, err := co.ReadMsg()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, fmt.Errorf("dig: no answer from %s within %s", server, o.Timeout)
			}
			return nil, fmt.Errorf("dig: %w", err)
		}
		if r.Id != q.Id {
			continue // a stray answer
		}
		size := r.Len()
		if wire, err := r.Pack(); err == nil {
			size = len(wire)
		}
		return &Result{Msg: r, Server: server, Proto: strings.ToUpper(proto), RTT: time.Since(start), Size: size}, nil
	}
}

// Run performs the invocation o and prints it to w.
func Run(ctx context.Context, w io.Writer, o Options) error {
	o.defaults()
	if o.Trace {
		return Trace(ctx, w, o)
	}
	if o.Server == "" {
		s, err := systemServer()
		if err != nil {
			return err
		}
		o.Server = s
	}
	o.Server = withPort(o.Server, 53)
	r, err := Exchange(ctx, o, o.Server, o.Name, o.Type, !o.NoRecurse)
	if err != nil {
		return err
	}
	switch {
	case o.JSON:
		return PrintJSON(w, r)
	case o.Short:
		PrintShort(w, r.Msg)
		return nil
	}
	if !o.Display.NoCmd {
		fmt.Fprintf(w, "\n; <<>> applayer dig <<>> %s\n;; global options: +cmd\n", o.Args)
	}
	PrintWith(w, r, o.Display, o.Multi)
	return nil
}

func withPort(s string, port int) string {
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s
	}
	return net.JoinHostPort(strings.Trim(s, "[]"), strconv.Itoa(port))
}

func systemServer() (string, error) {
	cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil || len(cc.Servers) == 0 {
		return "", errors.New("dig: no server given (@server) and none in /etc/resolv.conf")
	}
	return net.JoinHostPort(cc.Servers[0], cc.Port), nil
}

// ReadHints reads a root hints file (named.root format: ". NS name" and
// "name A addr" lines) and returns the root servers' addresses with port.
func ReadHints(path string, port int) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dig: %w", err)
	}
	defer f.Close()
	zp := dns.NewZoneParser(f, ".", path)
	var out []string
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		switch r := rr.(type) {
		case *dns.A:
			out = append(out, net.JoinHostPort(r.A.String(), strconv.Itoa(port)))
		case *dns.AAAA:
			out = append(out, net.JoinHostPort(r.AAAA.String(), strconv.Itoa(port)))
		}
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("dig: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("dig: %s has no root server addresses", path)
	}
	return out, nil
}

// Trace resolves o.Name iteratively with the resolver's engine (the same
// iteration the resolver runs, without QNAME minimisation, so that every
// server is asked the full name as dig asks it): it asks a root server
// for the root's NS set, then prints every referral followed and the
// final answer, each with the server that gave it.
func Trace(ctx context.Context, w io.Writer, o Options) error {
	o.defaults()
	if len(o.Roots) == 0 {
		return errors.New("dig: +trace needs root servers (--root or --hints)")
	}
	o.NoRecurse = true
	// The root's NS set first, as dig prints it.
	var lastErr error
	var r *Result
	for _, root := range o.Roots {
		r, lastErr = Exchange(ctx, o, root, ".", dns.TypeNS, false)
		if lastErr == nil {
			break
		}
	}
	if r == nil {
		return lastErr
	}
	printStep(w, r, "", r.Msg.Answer)
	names := map[string]string{}
	for _, rr := range r.Msg.Answer {
		if ns, ok := rr.(*dns.NS); ok {
			names[r.Server] = ns.Ns
			break
		}
	}
	roots, err := rootAddrs(ctx, o.Roots)
	if err != nil {
		return err
	}
	eng, err := resolver.NewEngine(resolver.Config{
		RootHints:           roots,
		UpstreamPort:        o.Port,
		NoQNAMEMinimisation: true,
		NoPrefetch:          true,
		ResolveTimeout:      config.Duration(maxReferrals * o.Timeout),
	}, service.Deps{Dialer: o.Dialer})
	if err != nil {
		return fmt.Errorf("dig: %w", err)
	}
	step := func(s resolver.Step) {
		if s.Nested {
			return // glueless name server lookups are not printed
		}
		m := s.Reply
		res := &Result{Msg: m, Server: s.Server.String(), Proto: s.Proto, RTT: s.RTT, Size: s.Size}
		name := s.ServerName
		if name == "" {
			name = names[res.Server]
		}
		var recs []dns.RR
		if len(m.Answer) > 0 || m.Rcode != dns.RcodeSuccess || m.Authoritative {
			recs = append(recs, m.Answer...)
			recs = append(recs, m.Ns...)
		} else {
			for _, rr := range m.Ns {
				if rr.Header().Rrtype == dns.TypeNS {
					recs = append(recs, rr)
				}
			}
		}
		if o.DNSSEC && !m.Authoritative && len(m.Answer) == 0 && m.Rcode == dns.RcodeSuccess {
			recs = m.Ns // a referral with its DS records and signatures
		}
		if !o.DNSSEC {
			recs = withoutDNSSEC(recs, o.Type)
		}
		printStep(w, res, name, recs)
	}
	if _, err := eng.Resolve(ctx, o.Name, o.Type, step); err != nil {
		return fmt.Errorf("dig: %w", err)
	}
	return nil
}

// rootAddrs returns the roots as address:port, looking up the ones given
// by host name.
func rootAddrs(ctx context.Context, roots []string) ([]string, error) {
	var out []string
	for _, r := range roots {
		host, port, err := net.SplitHostPort(r)
		if err != nil {
			return nil, fmt.Errorf("dig: root %q: %w", r, err)
		}
		if _, err := netip.ParseAddr(host); err == nil {
			out = append(out, r)
			continue
		}
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, fmt.Errorf("dig: root %q: %w", r, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("dig: root %q: bad port", r)
		}
		for _, ip := range ips {
			out = append(out, netip.AddrPortFrom(ip.Unmap(), uint16(p)).String())
		}
	}
	return out, nil
}

// maxReferrals bounds the time of an iterative resolution: this many
// query timeouts.
const maxReferrals = 30

// withoutDNSSEC drops the DNSSEC records a query without DO would not
// have got (the engine always sets DO), unless they were asked for.
func withoutDNSSEC(rrs []dns.RR, qtype uint16) []dns.RR {
	var out []dns.RR
	for _, rr := range rrs {
		switch t := rr.Header().Rrtype; t {
		case dns.TypeRRSIG, dns.TypeNSEC, dns.TypeNSEC3, dns.TypeDS:
			if t != qtype {
				continue
			}
		}
		out = append(out, rr)
	}
	return out
}

func printStep(w io.Writer, r *Result, name string, rrs []dns.RR) {
	for _, rr := range rrs {
		fmt.Fprintln(w, rr.String())
	}
	host, port, _ := net.SplitHostPort(r.Server)
	if name == "" {
		name = host
	}
	fmt.Fprintf(w, ";; Received %d bytes from %s#%s(%s) in %d ms\n\n", r.Size, host, port, strings.TrimSuffix(name, "."), r.RTT.Milliseconds())
}
