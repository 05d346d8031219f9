package zone

import (
	"crypto"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// KeyPair is a DNSSEC key pair.
type KeyPair struct {
	DNSKEY  *dns.DNSKEY
	Private crypto.Signer
}

// Keys are a zone's key-signing and zone-signing keys.
type Keys struct {
	KSK, ZSK KeyPair
	// Published are further keys in the DNSKEY set that do not sign: a
	// ZSK published ahead of its use, or a retired one kept until the
	// signatures it made have left caches.
	Published []KeyPair
	// KSKs are further KSKs that sign the DNSKEY set beside KSK: the new
	// KSK of a double-signature rollover (RFC 6781 4.1.2).
	KSKs []KeyPair
}

// DS returns the DS record (SHA-256) of the KSK, to hand to the parent.
func (k *Keys) DS() *dns.DS { return k.KSK.DNSKEY.ToDS(dns.SHA256) }

// Algorithm numbers by the names the config uses.
var algorithms = map[string]uint8{"": dns.ECDSAP256SHA256, "ecdsap256sha256": dns.ECDSAP256SHA256, "ed25519": dns.ED25519}

// LoadOrCreateKeys reads the zone's KSK and ZSK of algorithm alg from dir
// (files K<zone>+<alg>+<tag>.key and .private, as dnssec-keygen names
// them, with the timing in .state files) and generates and writes
// whichever is missing. The keys are those in use now; no rollover is
// started (see KeyStore).
func LoadOrCreateKeys(dir, origin, alg string) (*Keys, error) {
	ks, err := OpenKeyStore(dir, origin, alg)
	if err != nil {
		return nil, err
	}
	keys, _, err := ks.Step(time.Now(), KeyPolicy{})
	return keys, err
}

func globEscape(s string) string {
	r := strings.NewReplacer("*", `\*`, "?", `\?`, "[", `\[`)
	return r.Replace(s)
}

func readKey(path string) (KeyPair, error) {
	pub, err := os.ReadFile(path)
	if err != nil {
		return KeyPair{}, fmt.Errorf("zone: %w", err)
	}
	rr, err := dns.NewRR(stripComments(string(pub)))
	if err != nil {
		return KeyPair{}, fmt.Errorf("zone: %s: %w", path, err)
	}
	dk, ok := rr.(*dns.DNSKEY)
	if !ok {
		return KeyPair{}, fmt.Errorf("zone: %s: not a DNSKEY", path)
	}
	privPath := strings.TrimSuffix(path, ".key") + ".private"
	f, err := os.Open(privPath)
	if err != nil {
		return KeyPair{}, fmt.Errorf("zone: %w", err)
	}
	defer f.Close()
	priv, err := dk.ReadPrivateKey(f, privPath)
	if err != nil {
		return KeyPair{}, fmt.Errorf("zone: %s: %w", privPath, err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return KeyPair{}, fmt.Errorf("zone: %s: key cannot sign", privPath)
	}
	return KeyPair{DNSKEY: dk, Private: signer}, nil
}

func stripComments(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, ";") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func generateKey(origin string, alg uint8, flags uint16) (KeyPair, error) {
	dk := &dns.DNSKEY{Hdr: dns.RR_Header{Name: origin, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 3600}, Flags: flags, Protocol: 3, Algorithm: alg}
	bits := 256
	priv, err := dk.Generate(bits)
	if err != nil {
		return KeyPair{}, fmt.Errorf("zone: generate key: %w", err)
	}
	return KeyPair{DNSKEY: dk, Private: priv.(crypto.Signer)}, nil
}

// SignOptions tune Sign.
type SignOptions struct {
	// NSEC3 builds an NSEC3 chain (hash SHA-1, 0 iterations, no salt, no
	// opt-out, RFC 9276) instead of NSEC.
	NSEC3 bool
	// Inception and Expiration bound the signatures' validity.
	Inception, Expiration time.Time
	// NSEC3Iterations is the NSEC3 hash's extra iterations (RFC 9276 says
	// 0, the default; tests of resolvers' limits use more).
	NSEC3Iterations uint16
	// Serial, when non-zero, replaces the SOA serial (a re-signed zone
	// needs a new serial for its secondaries to pick it up).
	Serial uint32
}

// Sign returns a signed copy of z: existing DNSSEC records are dropped,
// the keys' DNSKEYs added, an NSEC or NSEC3 chain built and every
// authoritative RRset signed (DNSKEY by the KSK, the rest by the ZSK).
func Sign(z *Zone, keys *Keys, opt SignOptions) (*Zone, error) {
	origin := z.Origin
	negTTL := min(z.SOA.Hdr.Ttl, z.SOA.Minttl)
	var rrs []dns.RR
	for _, rr := range z.Records() {
		switch rr.Header().Rrtype {
		case dns.TypeRRSIG, dns.TypeNSEC, dns.TypeNSEC3, dns.TypeNSEC3PARAM, dns.TypeDNSKEY:
			continue
		case dns.TypeSOA:
			if opt.Serial != 0 {
				soa := dns.Copy(rr).(*dns.SOA)
				soa.Serial = opt.Serial
				rr = soa
			}
		}
		rrs = append(rrs, rr)
	}
	dnskeys := []*dns.DNSKEY{keys.KSK.DNSKEY, keys.ZSK.DNSKEY}
	for _, k := range slices.Concat(keys.KSKs, keys.Published) {
		dnskeys = append(dnskeys, k.DNSKEY)
	}
	for _, k := range dnskeys {
		c := dns.Copy(k).(*dns.DNSKEY)
		c.Hdr.Name = z.SOA.Hdr.Name
		c.Hdr.Ttl = z.SOA.Hdr.Ttl
		rrs = append(rrs, c)
	}
	base, err := New(origin, rrs)
	if err != nil {
		return nil, err
	}
	// Authoritative names: not below a cut. Cuts are delegation points.
	type info struct {
		key  string
		node *Node
		cut  bool
	}
	var auth []info
	for _, k := range base.names {
		if k != origin && below(base, k) {
			continue
		}
		n := base.nodes[k]
		cut := k != origin && n.Set(dns.TypeNS) != nil
		auth = append(auth, info{k, n, cut})
	}
	var denial []dns.RR
	if opt.NSEC3 {
		type h struct {
			hash string
			in   info
		}
		var hs []h
		for _, a := range auth {
			hs = append(hs, h{strings.ToLower(dns.HashName(a.key, dns.SHA1, opt.NSEC3Iterations, "")), a})
		}
		sort.Slice(hs, func(i, j int) bool { return hs[i].hash < hs[j].hash })
		for i, x := range hs {
			next := hs[(i+1)%len(hs)].hash
			var types []uint16
			if !x.in.node.Empty() {
				types = typesOf(x.in.node, x.in.cut)
				if !x.in.cut || x.in.node.Set(dns.TypeDS) != nil {
					types = append(types, dns.TypeRRSIG)
				}
				if x.in.key == origin {
					types = append(types, dns.TypeNSEC3PARAM)
				}
			}
			sortTypes(types)
			owner := x.hash + "." + origin
			if origin == "." {
				owner = x.hash + "."
			}
			denial = append(denial, &dns.NSEC3{
				Hdr:  dns.RR_Header{Name: owner, Rrtype: dns.TypeNSEC3, Class: dns.ClassINET, Ttl: negTTL},
				Hash: dns.SHA1, Iterations: opt.NSEC3Iterations, SaltLength: 0, Salt: "", HashLength: 20,
				NextDomain: strings.ToUpper(next), TypeBitMap: types,
			})
		}
		denial = append(denial, &dns.NSEC3PARAM{Hdr: dns.RR_Header{Name: z.SOA.Hdr.Name, Rrtype: dns.TypeNSEC3PARAM, Class: dns.ClassINET, Ttl: 0}, Hash: dns.SHA1, Iterations: opt.NSEC3Iterations, Salt: ""})
	} else {
		var named []info
		for _, a := range auth {
			if !a.node.Empty() {
				named = append(named, a)
			}
		}
		for i, a := range named {
			next := named[(i+1)%len(named)].node.Name
			types := append(typesOf(a.node, a.cut), dns.TypeNSEC, dns.TypeRRSIG)
			sortTypes(types)
			denial = append(denial, &dns.NSEC{Hdr: dns.RR_Header{Name: a.node.Name, Rrtype: dns.TypeNSEC, Class: dns.ClassINET, Ttl: negTTL}, NextDomain: next, TypeBitMap: types})
		}
	}
	// Sign every authoritative set.
	sigFor := func(set []dns.RR, k KeyPair) (dns.RR, error) {
		sig := &dns.RRSIG{
			Hdr:        dns.RR_Header{Ttl: set[0].Header().Ttl},
			Algorithm:  k.DNSKEY.Algorithm,
			KeyTag:     k.DNSKEY.KeyTag(),
			SignerName: origin,
			Inception:  uint32(opt.Inception.Unix()),
			Expiration: uint32(opt.Expiration.Unix()),
		}
		if err := sig.Sign(k.Private, set); err != nil {
			return nil, fmt.Errorf("zone: sign %s %s: %w", set[0].Header().Name, dns.TypeToString[set[0].Header().Rrtype], err)
		}
		return sig, nil
	}
	out := append([]dns.RR(nil), rrs...)
	out = append(out, denial...)
	for _, a := range auth {
		for _, s := range a.node.sets {
			t := s.Type
			if a.cut && t != dns.TypeDS {
				continue
			}
			signers := []KeyPair{keys.ZSK}
			if t == dns.TypeDNSKEY {
				signers = append([]KeyPair{keys.KSK}, keys.KSKs...)
			}
			for _, k := range signers {
				sig, err := sigFor(s.RRs, k)
				if err != nil {
					return nil, err
				}
				out = append(out, sig)
			}
		}
	}
	for _, d := range denial {
		sig, err := sigFor([]dns.RR{d}, keys.ZSK)
		if err != nil {
			return nil, err
		}
		out = append(out, sig)
	}
	return New(origin, out)
}

// below reports whether key lies strictly below a delegation point of z.
func below(z *Zone, key string) bool {
	for p := parent(key); p != "" && p != z.Origin; p = parent(p) {
		if n := z.nodes[p]; n != nil && n.Set(dns.TypeNS) != nil {
			return true
		}
	}
	return false
}

// Below reports whether key is occluded by a delegation (glue or below).
func (z *Zone) Below(key string) bool { return below(z, key) }

func typesOf(n *Node, cut bool) []uint16 {
	var types []uint16
	for _, s := range n.sets {
		t := s.Type
		if cut && t != dns.TypeNS && t != dns.TypeDS {
			continue
		}
		types = append(types, t)
	}
	return types
}

func sortTypes(t []uint16) { sort.Slice(t, func(i, j int) bool { return t[i] < t[j] }) }

// Expiry returns the earliest RRSIG expiration in the zone, zero for an
// unsigned zone.
func (z *Zone) Expiry() time.Time {
	var min uint32
	for _, n := range z.nodes {
		for _, s := range n.sets {
			for _, sig := range s.Sigs {
				if e := sig.(*dns.RRSIG).Expiration; min == 0 || e < min {
					min = e
				}
			}
		}
	}
	if min == 0 {
		return time.Time{}
	}
	return time.Unix(int64(min), 0)
}
