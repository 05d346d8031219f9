package authority

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// TSIGKey is a shared secret for TSIG (RFC 8945), as in NSD's and Knot's
// configs.
type TSIGKey struct {
	// Name is the key's name, e.g. "xfr-key" (made fully qualified).
	Name string `json:"name"`
	// Algorithm is hmac-sha256 (default), hmac-sha1, hmac-sha224,
	// hmac-sha384 or hmac-sha512.
	Algorithm string `json:"algorithm,omitempty"`
	// Secret is the base64 shared secret.
	Secret string `json:"secret"`
}

var tsigAlgorithms = map[string]string{
	"hmac-sha1":   dns.HmacSHA1,
	"hmac-sha224": dns.HmacSHA224,
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha384": dns.HmacSHA384,
	"hmac-sha512": dns.HmacSHA512,
}

// tsigKey is a configured key, ready to use.
type tsigKey struct {
	name, alg, secret string
}

// tsigFudge is the time error allowed on signed messages.
const tsigFudge = 300

func parseTSIGKeys(keys []TSIGKey) (map[string]tsigKey, error) {
	out := map[string]tsigKey{}
	for i, k := range keys {
		f := fmt.Sprintf("tsig_keys[%d]", i)
		if _, ok := dns.IsDomainName(k.Name); !ok || k.Name == "" {
			return nil, fmt.Errorf("%s.name: %q is not a domain name", f, k.Name)
		}
		a := strings.ToLower(k.Algorithm)
		if a == "" {
			a = "hmac-sha256"
		}
		alg, ok := tsigAlgorithms[a]
		if !ok {
			return nil, fmt.Errorf("%s.algorithm: %q is not supported", f, k.Algorithm)
		}
		if raw, err := base64.StdEncoding.DecodeString(k.Secret); err != nil || len(raw) == 0 {
			return nil, fmt.Errorf("%s.secret: not base64", f)
		}
		name := strings.ToLower(dns.Fqdn(k.Name))
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%s.name: key %s listed twice", f, name)
		}
		out[name] = tsigKey{name: name, alg: alg, secret: k.Secret}
	}
	return out, nil
}

// secrets returns the keys as miekg/dns wants them (name -> base64).
func (s *Server) secrets() map[string]string {
	if len(s.tsig) == 0 {
		return nil
	}
	m := make(map[string]string, len(s.tsig))
	for n, k := range s.tsig {
		m[n] = k.secret
	}
	return m
}

// aclEntry is one allow_transfer entry: an address range, a key, or both
// (both must match).
type aclEntry struct {
	prefix *netip.Prefix
	key    string
}

// parseACL reads "192.0.2.1", "127.0.0.0/8", "key:NAME" or
// "127.0.0.1 key:NAME".
func parseACL(s string, keys map[string]tsigKey) (aclEntry, error) {
	var e aclEntry
	for _, f := range strings.Fields(s) {
		if name, ok := strings.CutPrefix(f, "key:"); ok {
			n := strings.ToLower(dns.Fqdn(name))
			if keys != nil {
				if _, ok := keys[n]; !ok {
					return e, fmt.Errorf("unknown TSIG key %q", name)
				}
			}
			e.key = n
			continue
		}
		p, err := parsePrefix(f)
		if err != nil {
			return e, err
		}
		p = p.Masked()
		e.prefix = &p
	}
	if e.prefix == nil && e.key == "" {
		return e, fmt.Errorf("empty entry")
	}
	return e, nil
}

// transferAllowed reports whether from, with the request verified as
// signed by key (empty: unsigned), may transfer zones.
func (s *Server) transferAllowed(from netip.AddrPort, key string) bool {
	a := from.Addr().Unmap()
	for _, e := range s.acl {
		if e.prefix != nil && !e.prefix.Contains(a) {
			continue
		}
		if e.key != "" && e.key != key {
			continue
		}
		return true
	}
	return false
}

// verifyTSIG checks a signed query's TSIG against its wire form. It
// returns the key, or a TSIG error code (BADKEY, BADSIG, BADTIME).
func (s *Server) verifyTSIG(wire []byte, t *dns.TSIG) (tsigKey, int) {
	k, ok := s.tsig[strings.ToLower(t.Hdr.Name)]
	if !ok || !strings.EqualFold(dns.Fqdn(t.Algorithm), k.alg) {
		return k, dns.RcodeBadKey
	}
	if err := dns.TsigVerify(wire, k.secret, "", false); err != nil {
		if err == dns.ErrTime {
			return k, dns.RcodeBadTime
		}
		return k, dns.RcodeBadSig
	}
	return k, 0
}

// tsigReject is the answer to a query whose TSIG fails (RFC 8945 5.2):
// NOTAUTH, with an unsigned TSIG record carrying the error.
func tsigReject(req *dns.Msg, t *dns.TSIG, code int) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(req, dns.RcodeNotAuth)
	m.Extra = append(m.Extra, &dns.TSIG{
		Hdr:        dns.RR_Header{Name: t.Hdr.Name, Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm:  t.Algorithm,
		TimeSigned: uint64(time.Now().Unix()),
		Fudge:      tsigFudge,
		OrigId:     req.Id,
		Error:      uint16(code),
	})
	return m
}

// tsigRejectWire packs tsigReject's answer; when the query's TSIG fields
// make it unpackable or unparsable (fuzzed input), a plain NOTAUTH.
func tsigRejectWire(req *dns.Msg, t *dns.TSIG, code int, buf []byte) []byte {
	out, err := tsigReject(req, t, code).PackBuffer(buf)
	if err == nil {
		if err = new(dns.Msg).Unpack(out); err == nil {
			return out
		}
	}
	m := new(dns.Msg)
	m.SetRcode(req, dns.RcodeNotAuth)
	out, _ = m.PackBuffer(buf)
	return out
}

// signOut adds a TSIG with key to m (sent by us: NOTIFY, SOA checks,
// transfer requests); the connection signs it when written.
func signOut(m *dns.Msg, k *tsigKey) {
	if k != nil {
		m.SetTsig(k.name, k.alg, tsigFudge, time.Now().Unix())
	}
}

// keyFor returns the configured key named name ("" = none).
func (s *Server) keyFor(name string) *tsigKey {
	if name == "" {
		return nil
	}
	k, ok := s.tsig[strings.ToLower(dns.Fqdn(name))]
	if !ok {
		return nil
	}
	return &k
}
