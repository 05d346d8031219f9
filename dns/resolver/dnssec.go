package resolver

import (
	"context"
	"time"

	"github.com/miekg/dns"
)

// security is the DNSSEC state of an answer (RFC 4035 section 4.3).
type security uint8

const (
	secUnset security = iota
	secInsecure
	secSecure
	secBogus
)

// mergeSec folds the state of one more piece of an answer into res: an
// answer is secure only if every piece is.
func (res *result) mergeSec(s security) {
	switch {
	case s == secBogus || res.sec == secBogus:
		res.sec = secBogus
	case s == secUnset:
	case res.sec == secUnset:
		res.sec = s
	case s == secInsecure || res.sec == secInsecure:
		res.sec = secInsecure
	}
}

// fromEntry folds a cached entry's state (and bogus reason) into res.
func (res *result) fromEntry(e *rrEntry) {
	wasBogus := res.sec == secBogus
	res.mergeSec(e.sec)
	switch {
	case e.sec == secBogus && !wasBogus:
		res.ede = e.ede // the first bogus reason wins over an insecure one
	case e.sec == secInsecure && res.ede == nil:
		res.ede = e.ede
	}
}

// verdict is the outcome of validating one reply.
type verdict struct {
	state security
	ede   *dns.EDNS0_EDE
}

// validate checks a final reply's signatures and denial proofs against
// the chain of trust. Without a trust anchor every answer is insecure.
func (r *Engine) validate(ctx context.Context, t *task, m *dns.Msg, zone, qname string, qtype uint16) verdict {
	if !r.validating() {
		return verdict{state: secInsecure}
	}
	return r.validateReply(ctx, t, m, zone, qname, qtype)
}

// cacheReferralDS remembers the DS RRset (with its signatures) or the
// proof of its absence from a referral, for the chain of trust.
// It is validated, with the parent's keys, when the child's keys are
// needed (zoneKeys).
func (r *Engine) cacheReferralDS(m *dns.Msg, child, parent string, now time.Time) {
	if !r.validating() {
		return
	}
	var rrs []dns.RR
	for _, rr := range m.Ns {
		switch rr.Header().Rrtype {
		case dns.TypeDS, dns.TypeNSEC, dns.TypeNSEC3, dns.TypeRRSIG:
			rrs = append(rrs, rr)
		}
	}
	ttl := r.cfg.BogusTTL.D()
	if len(rrs) > 0 {
		ttl = min(time.Duration(rrsetTTL(rrs))*time.Second, r.cfg.MaxTTL.D())
	}
	r.rr.put(rrKey(child, typeDSRef), &rrEntry{rrs: rrs, x: &rrExtra{zone: parent}, rank: rankAuth, stored: now.UnixNano(), expires: now.Add(ttl)})
}
