// Package zone holds DNS zones in memory: records loaded from RFC 1035
// master files (or built in code), indexed by owner name for the
// authoritative server's lookups, with the DNSSEC denial chains (NSEC and
// NSEC3) of signed zones. A Zone is immutable once built, so readers need
// no locks; a reload builds a new Zone and swaps it in.
package zone

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/miekg/dns"
)

// RRset is the records of one type at one owner name, with the RRSIGs
// that cover them.
type RRset struct {
	// Type is the records' type (the type covered, for the signatures).
	Type uint16
	RRs  []dns.RR
	Sigs []dns.RR
}

// Node is one owner name of a zone. An empty non-terminal is a Node with no
// sets.
type Node struct {
	// Name is the owner name as written in the zone (case kept).
	Name string
	// sets holds the node's RRsets (a few per name: a slice is smaller
	// and faster than a map). RRSIGs are kept with the set they cover.
	sets []RRset
}

// Empty reports whether the node is an empty non-terminal.
func (n *Node) Empty() bool { return len(n.sets) == 0 }

// Set returns the node's RRset of type t, or nil.
func (n *Node) Set(t uint16) *RRset {
	for i := range n.sets {
		if n.sets[i].Type == t {
			return &n.sets[i]
		}
	}
	return nil
}

// Sets returns the node's RRsets (not to be modified).
func (n *Node) Sets() []RRset { return n.sets }

// Zone is an immutable in-memory zone.
type Zone struct {
	// Origin is the zone's apex, lower case, fully qualified.
	Origin string
	// SOA is the apex SOA record.
	SOA *dns.SOA

	nodes map[string]*Node
	// names are every node's key in canonical DNSSEC order (RFC 4034 6.1).
	names []string
	// nsec3 holds the NSEC3 chain of an NSEC3-signed zone, by lower-case
	// owner name; nsec3Hashes is the sorted list of hashed labels.
	nsec3       map[string]*RRset
	nsec3Hashes []string
	nsec3Param  *dns.NSEC3PARAM
	records     int
	dname       bool
}

// HasDNAME reports whether the zone holds a DNAME record (RFC 6672), so
// that lookups in zones without one skip the search for it.
func (z *Zone) HasDNAME() bool { return z.dname }

// Errors returned by New.
var (
	ErrNoSOA      = errors.New("zone: no SOA record at the apex")
	ErrOutOfZone  = errors.New("zone: record outside the zone")
	ErrCNAMEClash = errors.New("zone: CNAME and other data at the same name")
)

// Key returns the map key of a name: lower case, fully qualified.
func Key(name string) string { return strings.ToLower(dns.Fqdn(name)) }

// New builds a zone with apex origin from rrs.
func New(origin string, rrs []dns.RR) (*Zone, error) {
	z := &Zone{Origin: Key(origin), nodes: map[string]*Node{}, nsec3: map[string]*RRset{}}
	var nsec3Sigs []*dns.RRSIG
	for _, rr := range rrs {
		h := rr.Header()
		if h.Class != dns.ClassINET {
			continue
		}
		key := Key(h.Name)
		if !dns.IsSubDomain(z.Origin, key) {
			return nil, fmt.Errorf("%w: %s is not in %s", ErrOutOfZone, h.Name, z.Origin)
		}
		switch r := rr.(type) {
		case *dns.NSEC3:
			set := z.nsec3[key]
			if set == nil {
				set = &RRset{}
				z.nsec3[key] = set
			}
			set.RRs = append(set.RRs, rr)
			z.records++
			continue
		case *dns.RRSIG:
			if r.TypeCovered == dns.TypeNSEC3 {
				nsec3Sigs = append(nsec3Sigs, r)
				z.records++
				continue
			}
		case *dns.SOA:
			if key != z.Origin {
				return nil, fmt.Errorf("zone: SOA at %s, not at the apex %s", h.Name, z.Origin)
			}
			if z.SOA != nil {
				return nil, fmt.Errorf("zone: two SOA records in %s", z.Origin)
			}
			z.SOA = r
		case *dns.NSEC3PARAM:
			if key == z.Origin {
				z.nsec3Param = r
			}
		case *dns.DNAME:
			z.dname = true
		}
		n := z.node(key, h.Name)
		t := h.Rrtype
		if sig, ok := rr.(*dns.RRSIG); ok {
			t = sig.TypeCovered
		}
		set := n.Set(t)
		if set == nil {
			n.sets = append(n.sets, RRset{Type: t})
			set = &n.sets[len(n.sets)-1]
		}
		if _, ok := rr.(*dns.RRSIG); ok {
			set.Sigs = append(set.Sigs, rr)
		} else {
			if dup(set.RRs, rr) {
				continue
			}
			set.RRs = append(set.RRs, rr)
		}
		z.records++
	}
	if z.SOA == nil {
		return nil, fmt.Errorf("%w %s", ErrNoSOA, z.Origin)
	}
	for _, s := range nsec3Sigs {
		key := Key(s.Hdr.Name)
		if set := z.nsec3[key]; set != nil {
			set.Sigs = append(set.Sigs, s)
		}
	}
	for key, n := range z.nodes {
		if c := n.Set(dns.TypeCNAME); c != nil && len(c.RRs) > 0 {
			for _, s := range n.sets {
				if t := s.Type; t != dns.TypeCNAME && t != dns.TypeRRSIG && t != dns.TypeNSEC && len(s.RRs) > 0 {
					return nil, fmt.Errorf("%w: %s has CNAME and %s", ErrCNAMEClash, key, dns.TypeToString[t])
				}
			}
			if len(c.RRs) > 1 {
				return nil, fmt.Errorf("%w: %s has more than one CNAME", ErrCNAMEClash, key)
			}
		}
		if d := n.Set(dns.TypeDNAME); d != nil && len(d.RRs) > 1 {
			return nil, fmt.Errorf("zone: %s has more than one DNAME (RFC 6672 2.4)", key)
		}
		// RRSIG-only sets (a signature with nothing to cover) are dropped.
		kept := n.sets[:0]
		for _, s := range n.sets {
			if len(s.RRs) > 0 {
				kept = append(kept, s)
			}
		}
		n.sets = kept
	}
	// Empty non-terminals: every name between an owner and the apex exists.
	for key := range z.nodes {
		for p := parent(key); p != "" && dns.IsSubDomain(z.Origin, p) && p != z.Origin; p = parent(p) {
			if _, ok := z.nodes[p]; ok {
				break
			}
			z.nodes[p] = &Node{Name: p}
		}
	}
	z.names = make([]string, 0, len(z.nodes))
	for k := range z.nodes {
		z.names = append(z.names, k)
	}
	sort.Slice(z.names, func(i, j int) bool { return Compare(z.names[i], z.names[j]) < 0 })
	if len(z.nsec3) > 0 {
		for k := range z.nsec3 {
			z.nsec3Hashes = append(z.nsec3Hashes, firstLabel(k))
		}
		sort.Strings(z.nsec3Hashes)
	}
	return z, nil
}

func dup(set []dns.RR, rr dns.RR) bool {
	for _, x := range set {
		if dns.IsDuplicate(x, rr) {
			return true
		}
	}
	return false
}

func (z *Zone) node(key, name string) *Node {
	n := z.nodes[key]
	if n == nil {
		n = &Node{Name: name}
		z.nodes[key] = n
	} else if n.Name == key && name != key {
		n.Name = name
	}
	return n
}

// parent returns the name with its first label removed, "" for the root.
func parent(name string) string {
	if name == "." || name == "" {
		return ""
	}
	i, end := dns.NextLabel(name, 0)
	if end {
		return "."
	}
	return name[i:]
}

// Parent returns name without its first label; the root's parent is "".
func Parent(name string) string { return parent(name) }

func firstLabel(name string) string {
	i, _ := dns.NextLabel(name, 0)
	if i == 0 {
		return name
	}
	return name[:i-1]
}

// Node returns the node with the given lower-case key, or nil.
func (z *Zone) Node(key string) *Node { return z.nodes[key] }

// Len returns the number of records in the zone.
func (z *Zone) Len() int { return z.records }

// Names returns the zone's owner names in canonical order (lower case).
func (z *Zone) Names() []string { return z.names }

// Signed reports whether the zone has a DNSKEY at its apex.
func (z *Zone) Signed() bool {
	n := z.nodes[z.Origin]
	return n != nil && n.Set(dns.TypeDNSKEY) != nil
}

// NSEC3Hashes returns the hashed owner labels of the zone's NSEC3 chain,
// lower case, sorted (not to be modified); nil without a chain.
func (z *Zone) NSEC3Hashes() []string { return z.nsec3Hashes }

// NSEC3Param returns the zone's NSEC3PARAM, or nil for an NSEC or unsigned
// zone.
func (z *Zone) NSEC3Param() *dns.NSEC3PARAM {
	if len(z.nsec3) == 0 {
		return nil
	}
	if z.nsec3Param != nil {
		return z.nsec3Param
	}
	for _, s := range z.nsec3 {
		n := s.RRs[0].(*dns.NSEC3)
		return &dns.NSEC3PARAM{Hash: n.Hash, Iterations: n.Iterations, SaltLength: n.SaltLength, Salt: n.Salt}
	}
	return nil
}

// Records returns every record of the zone, SOA first, for a transfer.
// NSEC3 records and their signatures are included.
func (z *Zone) Records() []dns.RR {
	out := make([]dns.RR, 0, z.records)
	out = append(out, z.SOA)
	for _, k := range z.names {
		n := z.nodes[k]
		sets := append([]RRset(nil), n.sets...)
		sort.Slice(sets, func(i, j int) bool { return sets[i].Type < sets[j].Type })
		for _, s := range sets {
			for _, rr := range s.RRs {
				if rr == dns.RR(z.SOA) {
					continue
				}
				out = append(out, rr)
			}
			out = append(out, s.Sigs...)
		}
	}
	for _, h := range z.nsec3Hashes {
		s := z.nsec3[h+"."+z.Origin]
		if z.Origin == "." {
			s = z.nsec3[h+"."]
		}
		if s != nil {
			out = append(out, s.RRs...)
			out = append(out, s.Sigs...)
		}
	}
	return out
}

// CoveringNSEC returns the node holding the NSEC record that covers or
// matches key: the closest name at or before key in canonical order that
// has an NSEC set. It returns nil when the zone has no NSEC chain.
func (z *Zone) CoveringNSEC(key string) *Node {
	i := sort.Search(len(z.names), func(i int) bool { return Compare(z.names[i], key) > 0 })
	for j := i - 1; j >= 0; j-- {
		if n := z.nodes[z.names[j]]; n.Set(dns.TypeNSEC) != nil {
			return n
		}
	}
	// Wrap around: the last NSEC covers names before the first.
	for j := len(z.names) - 1; j >= i; j-- {
		if n := z.nodes[z.names[j]]; n.Set(dns.TypeNSEC) != nil {
			return n
		}
	}
	return nil
}

// NSEC3For returns the NSEC3 set whose hash matches the hash of key (match
// true) or covers it (match false). It returns nil when the zone has no
// NSEC3 chain.
func (z *Zone) NSEC3For(key string) (set *RRset, match bool) {
	p := z.NSEC3Param()
	if p == nil {
		return nil, false
	}
	h := strings.ToLower(dns.HashName(key, p.Hash, p.Iterations, p.Salt))
	i := sort.SearchStrings(z.nsec3Hashes, h)
	if i < len(z.nsec3Hashes) && z.nsec3Hashes[i] == h {
		return z.nsec3Set(h), true
	}
	j := i - 1
	if j < 0 {
		j = len(z.nsec3Hashes) - 1
	}
	return z.nsec3Set(z.nsec3Hashes[j]), false
}

func (z *Zone) nsec3Set(hash string) *RRset {
	if z.Origin == "." {
		return z.nsec3[hash+"."]
	}
	return z.nsec3[hash+"."+z.Origin]
}

// Compare orders two lower-case fully qualified names canonically (RFC 4034
// section 6.1): label by label from the right, as octet strings.
func Compare(a, b string) int {
	if strings.IndexByte(a, '\\') >= 0 || strings.IndexByte(b, '\\') >= 0 {
		return compareEscaped(a, b)
	}
	a, b = strings.TrimSuffix(a, "."), strings.TrimSuffix(b, ".")
	for {
		switch {
		case a == "" && b == "":
			return 0
		case a == "":
			return -1
		case b == "":
			return 1
		}
		var la, lb string
		if i := strings.LastIndexByte(a, '.'); i >= 0 {
			la, a = a[i+1:], a[:i]
		} else {
			la, a = a, ""
		}
		if i := strings.LastIndexByte(b, '.'); i >= 0 {
			lb, b = b[i+1:], b[:i]
		} else {
			lb, b = b, ""
		}
		if c := strings.Compare(la, lb); c != 0 {
			return c
		}
	}
}

func compareEscaped(a, b string) int {
	la, lb := dns.SplitDomainName(a), dns.SplitDomainName(b)
	i, j := len(la)-1, len(lb)-1
	for i >= 0 && j >= 0 {
		if c := strings.Compare(unescape(la[i]), unescape(lb[j])); c != 0 {
			return c
		}
		i--
		j--
	}
	switch {
	case i < 0 && j < 0:
		return 0
	case i < 0:
		return -1
	default:
		return 1
	}
}

func unescape(l string) string {
	if !strings.Contains(l, `\`) {
		return l
	}
	var b strings.Builder
	for i := 0; i < len(l); i++ {
		c := l[i]
		if c == '\\' && i+1 < len(l) {
			if i+3 < len(l) && isDigit(l[i+1]) && isDigit(l[i+2]) && isDigit(l[i+3]) {
				b.WriteByte((l[i+1]-'0')*100 + (l[i+2]-'0')*10 + (l[i+3] - '0'))
				i += 3
				continue
			}
			i++
			c = l[i]
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// MaxRecords caps the records one master file may hold, so a runaway
// $INCLUDE or generated file cannot exhaust memory.
const MaxRecords = 20_000_000

// Parse reads a master file from r. origin is the zone's apex; file names
// the source in errors (file:line). $INCLUDE is honoured relative to the
// working directory only when allowInclude is true.
func Parse(r io.Reader, origin, file string, allowInclude bool) (*Zone, error) {
	zp := dns.NewZoneParser(r, dns.Fqdn(origin), file)
	zp.SetIncludeAllowed(allowInclude)
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
		if len(rrs) > MaxRecords {
			return nil, fmt.Errorf("zone: %s: more than %d records", file, MaxRecords)
		}
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("zone: %w", err)
	}
	z, err := New(origin, rrs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return z, nil
}

// Load reads the master file at path for the zone origin.
func Load(path, origin string) (*Zone, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("zone: %w", err)
	}
	defer f.Close()
	return Parse(f, origin, path, true)
}
