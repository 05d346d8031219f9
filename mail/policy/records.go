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
}

// Records returns the DNS records a mail domain needs, in master-file
// form with fully qualified owners (what a lab kind's Records hook
// returns): the MX; SPF "v=spf1 mx -all" (only the MX hosts send); one
// DKIM selector TXT per key of the signer for the domain (none when
// signer is nil or has no key for it); and the DMARC record, relaxed
// alignment with the given policy.
func Records(d Domain, signer *Signer) ([]string, error) {
	name := canonDomain(d.Name)
	mx := canonDomain(d.MX)
	if name == "" || mx == "" {
		return nil, fmt.Errorf("policy: records: domain %q and MX host %q needed", d.Name, d.MX)
	}
	p := d.DMARC
	switch p {
	case "":
		p = "reject"
	case "none", "quarantine", "reject":
	default:
		return nil, fmt.Errorf("policy: records: DMARC policy %q (none, quarantine or reject)", p)
	}
	out := []string{
		fmt.Sprintf("%s. 3600 IN MX 10 %s.", name, mx),
		fmt.Sprintf(`%s. 3600 IN TXT "v=spf1 mx -all"`, name),
	}
	if signer != nil {
		for _, k := range signer.Keys(name) {
			owner, txt := k.Record()
			out = append(out, fmt.Sprintf("%s 3600 IN TXT %s", owner, quoteTXT(txt)))
		}
	}
	out = append(out, fmt.Sprintf(`_dmarc.%s. 3600 IN TXT "v=DMARC1; p=%s; adkim=r; aspf=r"`, name, p))
	return out, nil
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
