package policy

import (
	"fmt"
	"strings"
)

// Domain describes a mail domain for the records it publishes.
type Domain struct {
	// Name is the domain, e.g. crepes.fr.
	Name string
	// MX is the host name of its mail server (it has its own address
	// records), e.g. mail.crepes.fr.
	MX string
	// DMARC is the policy published: none, quarantine or reject
	// (default reject).
	DMARC string
	// TTL of the records (default 3600).
	TTL int
}

// Records returns the DNS records a mail domain needs, in master-file
// form with fully qualified owners (what a lab kind's Records hook
// returns): the MX; SPF "v=spf1 mx -all" (only the MX hosts send); and
// AuthRecords.
func Records(d Domain, signer *Signer) ([]string, error) {
	name := canonDomain(d.Name)
	mx := canonDomain(d.MX)
	if name == "" || mx == "" {
		return nil, fmt.Errorf("policy: records: domain %q and MX host %q needed", d.Name, d.MX)
	}
	auth, err := AuthRecords(d, signer)
	if err != nil {
		return nil, err
	}
	ttl := d.ttl()
	return append([]string{
		fmt.Sprintf("%s. %d IN MX 10 %s.", name, ttl, mx),
		fmt.Sprintf(`%s. %d IN TXT "v=spf1 mx -all"`, name, ttl),
	}, auth...), nil
}

// AuthRecords returns a domain's message-authentication records without
// the MX and SPF: one DKIM selector TXT per key of the signer for the
// domain (none when signer is nil or has no key for it), and the DMARC
// record, relaxed alignment with the domain's policy.
func AuthRecords(d Domain, signer *Signer) ([]string, error) {
	name := canonDomain(d.Name)
	if name == "" {
		return nil, fmt.Errorf("policy: records: no domain")
	}
	p := d.DMARC
	switch p {
	case "":
		p = "reject"
	case "none", "quarantine", "reject":
	default:
		return nil, fmt.Errorf("policy: records: DMARC policy %q (none, quarantine or reject)", p)
	}
	ttl := d.ttl()
	var out []string
	if signer != nil {
		for _, k := range signer.Keys(name) {
			owner, txt := k.Record()
			out = append(out, fmt.Sprintf("%s %d IN TXT %s", owner, ttl, quoteTXT(txt)))
		}
	}
	return append(out, fmt.Sprintf(`_dmarc.%s. %d IN TXT "v=DMARC1; p=%s; adkim=r; aspf=r"`, name, ttl, p)), nil
}

func (d Domain) ttl() int {
	if d.TTL > 0 {
		return d.TTL
	}
	return 3600
}

// quoteTXT quotes a TXT value as master-file character-strings of at
// most 255 bytes each (an RSA-2048 key record is longer than one); a
// verifier concatenates them (RFC 6376 3.6.2.2).
func quoteTXT(s string) string {
	var parts []string
	for len(s) > 255 {
		parts = append(parts, `"`+s[:255]+`"`)
		s = s[255:]
	}
	parts = append(parts, `"`+s+`"`)
	return strings.Join(parts, " ")
}
