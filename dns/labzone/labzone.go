// Package labzone generates the zones of a DNS hierarchy from a list of
// hosts: every host name gets its A record in the deepest zone that
// contains it, every zone gets NS records naming the hosts that serve it,
// and every parent zone gets the delegation (NS, glue, and DS when the
// child is signed). The lab uses it so that any host of the topology
// resolves through the root, with no zone file written by hand.
package labzone

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/zone"
)

// Host is one host of the hierarchy.
type Host struct {
	// Name is the host's DNS name.
	Name string
	// Addr is its address (A or AAAA record).
	Addr netip.Addr
	// Zones are the zones the host serves as an authoritative server.
	Zones []string
}

// Options tune the generated zones.
type Options struct {
	// TTL of every record. Default 3600.
	TTL uint32
	// Serial of every SOA. Default 1.
	Serial uint32
	// NegativeTTL is the SOA minimum. Default 300.
	NegativeTTL uint32
	// Records are extra master-file lines per zone origin (relative names
	// are relative to the zone), e.g. "www CNAME web.g".
	Records map[string][]string
	// Placed are extra master-file lines with fully qualified owner
	// names, each added to the deepest zone that contains its owner (a
	// delegation's NS records to the parent of the cut), e.g.
	// "nyu.edu. MX 10 mail.nyu.edu.". A line no zone contains is an error.
	Placed []string
	// DS returns the DS records of a signed child zone, or nil when the
	// zone is not signed.
	DS func(origin string) ([]dns.RR, error)
}

// Zones returns the master-file text of every zone some host serves, by
// lower-case fully qualified origin.
func Zones(hosts []Host, opt Options) (map[string]string, error) {
	if opt.TTL == 0 {
		opt.TTL = 3600
	}
	if opt.Serial == 0 {
		opt.Serial = 1
	}
	if opt.NegativeTTL == 0 {
		opt.NegativeTTL = 300
	}
	servers := map[string][]Host{}
	var origins []string
	for _, h := range hosts {
		for _, z := range h.Zones {
			k := zone.Key(z)
			if _, ok := servers[k]; !ok {
				origins = append(origins, k)
			}
			servers[k] = append(servers[k], h)
		}
	}
	sort.Slice(origins, func(i, j int) bool { return zone.Compare(origins[i], origins[j]) < 0 })
	deepest := func(name string, except string) string {
		for n := zone.Key(name); n != ""; n = zone.Parent(n) {
			if n == except {
				continue
			}
			if _, ok := servers[n]; ok {
				return n
			}
		}
		return ""
	}
	records := map[string][]string{}
	for z, ls := range opt.Records {
		records[zone.Key(z)] = append(records[zone.Key(z)], ls...)
	}
	for _, l := range opt.Placed {
		rr, err := dns.NewRR(l)
		if err != nil {
			return nil, fmt.Errorf("labzone: record %q: %w", l, err)
		}
		if rr == nil || !dns.IsFqdn(rr.Header().Name) || !strings.HasSuffix(strings.Fields(l)[0], ".") {
			return nil, fmt.Errorf("labzone: record %q: the owner name must be fully qualified", l)
		}
		owner := rr.Header().Name
		except := ""
		if rr.Header().Rrtype == dns.TypeNS || rr.Header().Rrtype == dns.TypeDS {
			// A delegation's records belong to the parent side of the cut.
			except = zone.Key(owner)
		}
		z := deepest(owner, except)
		if z == "" {
			return nil, fmt.Errorf("labzone: record %q: no zone of the lab contains %s", l, owner)
		}
		records[z] = append(records[z], l)
	}
	opt.Records = records
	out := map[string]string{}
	for _, z := range origins {
		var b strings.Builder
		ttl := opt.TTL
		mbox := "hostmaster." + z
		if z == "." {
			mbox = "hostmaster."
		}
		fmt.Fprintf(&b, "$ORIGIN %s\n$TTL %d\n", z, ttl)
		fmt.Fprintf(&b, "%s %d IN SOA %s %s %d 3600 600 86400 %d\n", z, ttl, dns.Fqdn(servers[z][0].Name), mbox, opt.Serial, opt.NegativeTTL)
		addrDone := map[string]bool{}
		// Names the extra records make aliases get no generated address.
		zp := dns.NewZoneParser(strings.NewReader(fmt.Sprintf("$TTL %d\n", ttl)+strings.Join(opt.Records[z], "\n")), z, "records of "+z)
		for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
			if rr.Header().Rrtype == dns.TypeCNAME {
				addrDone[zone.Key(rr.Header().Name)] = true
			}
		}
		if err := zp.Err(); err != nil {
			return nil, fmt.Errorf("labzone: %w", err)
		}
		addAddr := func(h Host) {
			k := zone.Key(h.Name)
			if addrDone[k] || !dns.IsSubDomain(z, k) {
				return
			}
			addrDone[k] = true
			t := "A"
			if h.Addr.Is6() && !h.Addr.Is4In6() {
				t = "AAAA"
			}
			fmt.Fprintf(&b, "%s %d IN %s %s\n", k, ttl, t, h.Addr.Unmap())
		}
		for _, h := range servers[z] {
			fmt.Fprintf(&b, "%s %d IN NS %s\n", z, ttl, zone.Key(h.Name))
		}
		for _, h := range servers[z] {
			addAddr(h)
		}
		// Delegations to child zones.
		for _, c := range origins {
			if c == z || deepest(c, c) != z {
				continue
			}
			for _, h := range servers[c] {
				fmt.Fprintf(&b, "%s %d IN NS %s\n", c, ttl, zone.Key(h.Name))
			}
			if opt.DS != nil {
				ds, err := opt.DS(c)
				if err != nil {
					return nil, fmt.Errorf("labzone: DS of %s: %w", c, err)
				}
				for _, rr := range ds {
					r := dns.Copy(rr)
					r.Header().Name = c
					r.Header().Ttl = ttl
					b.WriteString(r.String() + "\n")
				}
			}
			for _, h := range servers[c] {
				addAddr(h)
			}
		}
		// Every host whose deepest zone is z.
		for _, h := range hosts {
			if deepest(h.Name, "") == z {
				addAddr(h)
			}
		}
		for _, l := range opt.Records[z] {
			b.WriteString(l + "\n")
		}
		out[z] = b.String()
	}
	return out, nil
}
