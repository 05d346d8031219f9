package resolver

import (
	"github.com/miekg/dns"
)

// supportedAlg reports whether signatures of algorithm a can be checked.
func supportedAlg(a uint8) bool {
	switch a {
	case dns.RSASHA1, dns.RSASHA1NSEC3SHA1, dns.RSASHA256, dns.RSASHA512, dns.ECDSAP256SHA256, dns.ECDSAP384SHA384, dns.ED25519:
		return true
	}
	return false
}

func supportedDigest(d uint8) bool {
	return d == dns.SHA1 || d == dns.SHA256 || d == dns.SHA384
}

// verifySet checks rrset's signatures by signer with keys. It returns
// secure when one signature verifies, bogus (with the reason) otherwise.
func (r *Engine) verifySet(t *task, rrset []dns.RR, sigs []*dns.RRSIG, keys []dns.RR) verdict {
	h := rrset[0].Header()
	what := h.Name + " " + dns.TypeToString[h.Rrtype]
	if len(sigs) == 0 {
		return bogus(dns.ExtendedErrorCodeRRSIGsMissing, "no RRSIG for %s", what)
	}
	now := r.deps.Now()
	v := bogus(dns.ExtendedErrorCodeDNSKEYMissing, "no DNSKEY for the RRSIG of %s", what)
	for _, sig := range sigs {
		if !supportedAlg(sig.Algorithm) {
			continue
		}
		if !sig.ValidityPeriod(now) {
			if int64(int32(uint32(now.Unix())-sig.Expiration)) > 0 {
				v = bogus(dns.ExtendedErrorCodeSignatureExpired, "RRSIG of %s expired", what)
			} else {
				v = bogus(dns.ExtendedErrorCodeSignatureNotYetValid, "RRSIG of %s not yet valid", what)
			}
			continue
		}
		tried := 0
		for _, k := range keys {
			key := k.(*dns.DNSKEY)
			if key.Algorithm != sig.Algorithm || key.KeyTag() != sig.KeyTag || !equalName(key.Hdr.Name, sig.SignerName) {
				continue
			}
			if tried >= r.cfg.MaxKeyTagCollisions {
				break
			}
			tried++
			if t.sigChecks >= r.cfg.MaxSigChecks || t.sigFails >= r.cfg.MaxSigFailures {
				r.m.keytrap.Inc()
				return bogus(dns.ExtendedErrorCodeDNSBogus, "signature check limit reached at %s (%d checks, %d failed)", what, t.sigChecks, t.sigFails)
			}
			t.sigChecks++
			if err := sig.Verify(key, rrset); err == nil {
				return verdict{state: secSecure}
			}
			t.sigFails++
			v = bogus(dns.ExtendedErrorCodeDNSBogus, "bad signature on %s", what)
		}
	}
	return v
}
