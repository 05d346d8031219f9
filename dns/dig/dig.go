// Package dig is applayer's DNS query tool: one query printed the way dig
// prints it (header with flags, sections, query time, server, size), and
// +trace, which resolves a name iteratively from the root hints and prints
// each referral, like the textbook's iterated-query figure.
package dig

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/zone"
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

// maxReferrals bounds an iterative resolution.
const maxReferrals = 30

// Trace resolves o.Name iteratively: it asks a root server, follows each
// referral (using glue, or resolving the name server's name from the root
// when there is none) and prints every step.
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
	servers := o.Roots
	names := map[string]string{}
	for _, rr := range r.Msg.Answer {
		if ns, ok := rr.(*dns.NS); ok {
			names[servers[0]] = ns.Ns
			break
		}
	}
	for step := 0; step < maxReferrals; step++ {
		var res *Result
		var err error
		var used string
		for _, srv := range servers {
			res, err = Exchange(ctx, o, srv, o.Name, o.Type, false)
			if err == nil {
				used = srv
				break
			}
		}
		if res == nil {
			return err
		}
		m := res.Msg
		if len(m.Answer) > 0 || m.Rcode != dns.RcodeSuccess || m.Authoritative {
			recs := append(append([]dns.RR(nil), m.Answer...), m.Ns...)
			printStep(w, res, names[used], recs)
			return nil
		}
		var nsNames []string
		for _, rr := range m.Ns {
			if ns, ok := rr.(*dns.NS); ok {
				nsNames = append(nsNames, ns.Ns)
			}
		}
		recs := m.Ns
		if !o.DNSSEC {
			recs = nil
			for _, rr := range m.Ns {
				if rr.Header().Rrtype == dns.TypeNS {
					recs = append(recs, rr)
				}
			}
		}
		printStep(w, res, names[used], recs)
		if len(nsNames) == 0 {
			return fmt.Errorf("dig: %s gave neither an answer nor a referral", used)
		}
		next := map[string]string{}
		var addrs []string
		for _, n := range nsNames {
			for _, rr := range m.Extra {
				if a, ok := rr.(*dns.A); ok && strings.EqualFold(a.Hdr.Name, n) {
					addr := net.JoinHostPort(a.A.String(), strconv.Itoa(o.Port))
					addrs = append(addrs, addr)
					next[addr] = n
				}
			}
		}
		if len(addrs) == 0 {
			// No glue: resolve a name server's address from the root.
			for _, n := range nsNames {
				a, err := resolveA(ctx, o, n, 0)
				if err == nil {
					addr := net.JoinHostPort(a, strconv.Itoa(o.Port))
					addrs = append(addrs, addr)
					next[addr] = n
					break
				}
			}
		}
		if len(addrs) == 0 {
			return fmt.Errorf("dig: no address for any of %s", strings.Join(nsNames, ", "))
		}
		servers, names = addrs, next
	}
	return errors.New("dig: too many referrals")
}

// resolveA resolves name's first address iteratively from the roots,
// silently.
func resolveA(ctx context.Context, o Options, name string, depth int) (string, error) {
	if depth > 4 {
		return "", errors.New("dig: name server resolution too deep")
	}
	servers := o.Roots
	for step := 0; step < maxReferrals; step++ {
		var m *dns.Msg
		for _, srv := range servers {
			r, err := Exchange(ctx, o, srv, name, dns.TypeA, false)
			if err == nil {
				m = r.Msg
				break
			}
		}
		if m == nil {
			return "", fmt.Errorf("dig: cannot resolve %s", name)
		}
		for _, rr := range m.Answer {
			if a, ok := rr.(*dns.A); ok {
				return a.A.String(), nil
			}
		}
		if len(m.Answer) > 0 || m.Rcode != dns.RcodeSuccess || m.Authoritative {
			return "", fmt.Errorf("dig: %s has no address", name)
		}
		var next []string
		for _, rr := range m.Ns {
			ns, ok := rr.(*dns.NS)
			if !ok {
				continue
			}
			for _, x := range m.Extra {
				if a, ok := x.(*dns.A); ok && strings.EqualFold(a.Hdr.Name, ns.Ns) {
					next = append(next, net.JoinHostPort(a.A.String(), strconv.Itoa(o.Port)))
				}
			}
			if len(next) == 0 && !dns.IsSubDomain(zone.Key(ns.Ns), zone.Key(name)) {
				if a, err := resolveA(ctx, o, ns.Ns, depth+1); err == nil {
					next = append(next, net.JoinHostPort(a, strconv.Itoa(o.Port)))
				}
			}
		}
		if len(next) == 0 {
			return "", fmt.Errorf("dig: lame delegation for %s", name)
		}
		servers = next
	}
	return "", errors.New("dig: too many referrals")
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
