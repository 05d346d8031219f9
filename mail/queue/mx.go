package queue

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
)

// MX is one mail exchanger of a domain.
type MX struct {
	Host string // without the trailing dot; "." for a null MX
	Pref uint16
}

// ErrNoDomain is returned (wrapped) by a Resolver for a name that does not
// exist (NXDOMAIN): mail to it fails permanently.
var ErrNoDomain = errors.New("queue: no such domain")

// Resolver answers the queue's DNS questions for remote delivery.
type Resolver interface {
	// LookupMX returns the domain's MX records; none (and no error) when
	// the domain exists without MX; ErrNoDomain when it does not exist.
	LookupMX(ctx context.Context, domain string) ([]MX, error)
	// LookupAddr returns a host's IPv4 and IPv6 addresses (A, then AAAA).
	LookupAddr(ctx context.Context, host string) ([]netip.Addr, error)
}

// DNSResolver asks one recursive resolver (applayer's in the lab) over
// UDP, and over TCP when the answer is truncated, through Dialer.
type DNSResolver struct {
	// Server is the resolver's address, host:port.
	Server string
	// Dialer opens the connections (nil: a net.Dialer).
	Dialer service.Dialer
	// Timeout bounds one exchange (default 5s).
	Timeout time.Duration
	// Trace, when set, gets each answer.
	Trace *trace.Bus
}

func (r *DNSResolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(1232, false)
	d := r.Dialer
	if d == nil {
		d = &net.Dialer{}
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	var in *dns.Msg
	var local string
	for _, network := range []string{"udp", "tcp"} {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		nc, err := d.DialContext(ctx, network, r.Server)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("queue: resolver %s: %w", r.Server, err)
		}
		dl, _ := ctx.Deadline()
		nc.SetDeadline(dl)
		co := &dns.Conn{Conn: nc, UDPSize: 1232}
		local = nc.LocalAddr().String()
		err = co.WriteMsg(m)
		if err == nil {
			in, err = co.ReadMsg()
		}
		nc.Close()
		cancel()
		if err != nil {
			return nil, fmt.Errorf("queue: resolver %s: %s %s: %w", r.Server, dns.TypeToString[qtype], name, err)
		}
		if in.Id != m.Id {
			return nil, fmt.Errorf("queue: resolver %s: answer with the wrong id", r.Server)
		}
		if !in.Truncated {
			break
		}
	}
	if r.Trace.Enabled() {
		var parts []string
		for _, rr := range in.Answer {
			parts = append(parts, strings.Join(strings.Fields(rr.String())[3:], " "))
		}
		r.Trace.Publish(trace.Event{From: r.Server, To: local, Proto: "dns", Summary: fmt.Sprintf("%s %s? %s [%s]", dns.TypeToString[qtype], name, dns.RcodeToString[in.Rcode], strings.Join(parts, ", "))})
	}
	return in, nil
}

// LookupMX implements Resolver.
func (r *DNSResolver) LookupMX(ctx context.Context, domain string) ([]MX, error) {
	in, err := r.exchange(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	switch in.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, fmt.Errorf("%w: %s", ErrNoDomain, domain)
	default:
		return nil, fmt.Errorf("queue: MX %s: %s", domain, dns.RcodeToString[in.Rcode])
	}
	var out []MX
	for _, rr := range in.Answer {
		if mx, ok := rr.(*dns.MX); ok && strings.EqualFold(dns.Fqdn(mx.Hdr.Name), dns.Fqdn(domain)) {
			host := strings.TrimSuffix(mx.Mx, ".")
			if host == "" {
				host = "."
			}
			out = append(out, MX{Host: host, Pref: mx.Preference})
		}
	}
	return out, nil
}

// LookupAddr implements Resolver.
func (r *DNSResolver) LookupAddr(ctx context.Context, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	var errs []error
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		in, err := r.exchange(ctx, host, t)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if in.Rcode == dns.RcodeNameError {
			return nil, fmt.Errorf("%w: %s", ErrNoDomain, host)
		}
		for _, rr := range in.Answer {
			switch a := rr.(type) {
			case *dns.A:
				if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
					out = append(out, ip)
				}
			case *dns.AAAA:
				if ip, ok := netip.AddrFromSlice(a.AAAA); ok {
					out = append(out, ip)
				}
			}
		}
	}
	if len(out) == 0 {
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		return nil, fmt.Errorf("queue: %s has no address", host)
	}
	return out, nil
}

// SystemResolver asks the operating system's resolver (net.Resolver).
type SystemResolver struct{ R *net.Resolver }

// LookupMX implements Resolver. The system resolver does not tell a
// domain without MX from one that does not exist; both come back as no
// MX, and the address lookup that follows tells them apart.
func (s SystemResolver) LookupMX(ctx context.Context, domain string) ([]MX, error) {
	mxs, err := s.R.LookupMX(ctx, domain)
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return nil, nil
	}
	if err != nil && len(mxs) == 0 {
		return nil, fmt.Errorf("queue: MX %s: %w", domain, err)
	}
	var out []MX
	for _, m := range mxs {
		host := strings.TrimSuffix(m.Host, ".")
		if host == "" {
			host = "."
		}
		out = append(out, MX{Host: host, Pref: m.Pref})
	}
	return out, nil
}

// LookupAddr implements Resolver.
func (s SystemResolver) LookupAddr(ctx context.Context, host string) ([]netip.Addr, error) {
	ips, err := s.R.LookupNetIP(ctx, "ip", host)
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return nil, fmt.Errorf("%w: %s", ErrNoDomain, host)
	}
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	for i := range ips {
		ips[i] = ips[i].Unmap()
	}
	return ips, nil
}
