package resolver

import (
	"strings"

	"github.com/miekg/dns"
)

// Spelling of names. Upstream queries go out in 0x20 random case, and
// servers that compress names against the question (NSD, Knot, ours)
// hand that spelling back inside records: "ns1.nYu.edu." in an NS answer
// to "nYu.edu.", a CNAME target "tp.c95e7e602-frontier.AMAzoN.coM.".
// undo0x20 puts the resolver's own (lower-case) spelling back before
// anything is cached. Replies to clients then spell, as Unbound does, every
// name that shares a suffix with the question the way the client spelled
// the question (clientSpelling): the client sees its own case, never a
// random one, and never another client's.

// respell returns name with its longest label-aligned suffix that matches
// a label-aligned suffix of from replaced by the same suffix of to (from
// and to are the same name in two spellings). exact compares byte for
// byte, otherwise case-insensitively.
func respell(name, from, to string, exact bool) string {
	if len(from) != len(to) || name == "" {
		return name
	}
	for i := 0; i < len(name); i++ {
		if i > 0 && name[i-1] != '.' {
			continue
		}
		suf := name[i:]
		n := len(suf)
		if n > len(from) || n < len(from) && from[len(from)-n-1] != '.' {
			continue
		}
		tail := from[len(from)-n:]
		if exact && suf == tail || !exact && strings.EqualFold(suf, tail) {
			if suf == to[len(to)-n:] {
				return name
			}
			return name[:i] + to[len(to)-n:]
		}
	}
	return name
}

// undo0x20 puts back qname's spelling wherever the server copied sent (our
// random spelling of qname), in whole names or their suffixes: owner names
// and every name inside records. A zone's own spelling is left alone (it
// matches sent byte for byte only by chance, and then lower case is as
// good).
func undo0x20(m *dns.Msg, sent, qname string) {
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			forNames(rr, true, func(name *string) { *name = respell(*name, sent, qname, true) })
		}
	}
	// A CNAME synthesized from a DNAME (RFC 6672) carries the question's
	// leading labels, in our random spelling, in front of the DNAME's
	// target ("wWw.example.test." for "wWw.dN.eXample.TEST."), and so do
	// the records the server found there.
	for _, rr := range m.Answer {
		d, ok := rr.(*dns.DNAME)
		if !ok || len(d.Hdr.Name) >= len(qname) || !strings.EqualFold(d.Hdr.Name, qname[len(qname)-len(d.Hdr.Name):]) {
			continue
		}
		n := len(qname) - len(d.Hdr.Name)
		for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
			for _, rr := range sec {
				forNames(rr, true, func(name *string) {
					if len(*name) > n && strings.HasPrefix(*name, sent[:n]) && !strings.EqualFold(*name, qname) {
						*name = qname[:n] + (*name)[n:]
					}
				})
			}
		}
	}
}

// clientSpelling returns rrs with every name that the reply compresses
// (owner names, and the names inside CNAME, NS, MX, SOA, PTR and the other
// RFC 1035 types) spelled as the client spelled qname wherever it shares a
// suffix with it; records are copied, never changed in place (they are
// the cache's).
func clientSpelling(rrs []dns.RR, qname string) []dns.RR {
	lower := strings.ToLower(qname)
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		changed := false
		forNames(rr, false, func(name *string) {
			if respell(*name, lower, qname, false) != *name {
				changed = true
			}
		})
		if !changed {
			out[i] = rr
			continue
		}
		c := dns.Copy(rr)
		forNames(c, false, func(name *string) { *name = respell(*name, lower, qname, false) })
		out[i] = c
	}
	return out
}

// forNames calls f for rr's owner name and the names in its data: the
// compressible ones (RFC 1035 types) always, the others when all is set.
func forNames(rr dns.RR, all bool, f func(*string)) {
	f(&rr.Header().Name)
	switch v := rr.(type) {
	case *dns.CNAME:
		f(&v.Target)
	case *dns.NS:
		f(&v.Ns)
	case *dns.MX:
		f(&v.Mx)
	case *dns.PTR:
		f(&v.Ptr)
	case *dns.SOA:
		f(&v.Ns)
		f(&v.Mbox)
	case *dns.MB:
		f(&v.Mb)
	case *dns.MD:
		f(&v.Md)
	case *dns.MF:
		f(&v.Mf)
	case *dns.MG:
		f(&v.Mg)
	case *dns.MR:
		f(&v.Mr)
	case *dns.MINFO:
		f(&v.Rmail)
		f(&v.Email)
	}
	if !all {
		return
	}
	switch v := rr.(type) {
	case *dns.DNAME:
		f(&v.Target)
	case *dns.SRV:
		f(&v.Target)
	case *dns.RRSIG:
		f(&v.SignerName)
	case *dns.NSEC:
		f(&v.NextDomain)
	case *dns.NAPTR:
		f(&v.Replacement)
	case *dns.KX:
		f(&v.Exchanger)
	case *dns.AFSDB:
		f(&v.Hostname)
	case *dns.RT:
		f(&v.Host)
	case *dns.RP:
		f(&v.Mbox)
		f(&v.Txt)
	case *dns.SVCB:
		f(&v.Target)
	case *dns.HTTPS:
		f(&v.Target)
	}
}
