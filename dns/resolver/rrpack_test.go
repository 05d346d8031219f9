package resolver

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func mustRRs(t *testing.T, lines ...string) []dns.RR {
	t.Helper()
	var out []dns.RR
	for _, l := range lines {
		out = append(out, mustRR(t, l))
	}
	return out
}

// presentation returns rrs as text with the owner names lower-cased (the
// packed cache keeps an owner equal to its key's name once, lower-case).
func presentation(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		c := dns.Copy(rr)
		c.Header().Name = strings.ToLower(c.Header().Name)
		out = append(out, c.String())
	}
	return out
}

// TestPackedRRRoundTrip packs and unpacks every kind of record the RRset
// cache holds (answers of every common type, RRSIGs, DNSKEY/DS of the
// chain of trust, a negative answer's SOA and NSEC/NSEC3 proofs, an
// unknown type) with their metadata, owners in mixed case and owners other
// than the key's name.
func TestPackedRRRoundTrip(t *testing.T) {
	// An even nanosecond: the lowest bit of the stored time is the
	// CLOCK bit's.
	now := time.Unix(1_800_000_000, 123456788)
	sig := "WwW.Example.TEST. 300 IN RRSIG A 13 3 300 20300101000000 20200101000000 12345 example.test. dGVzdHNpZ25hdHVyZQ=="
	cases := []struct {
		name  string
		key   string
		qtype uint16
		e     rrEntry
	}{
		{"A with RRSIG", "www.example.test.", dns.TypeA, rrEntry{
			rrs: mustRRs(t, "WwW.Example.TEST. 300 IN A 192.0.2.10", "www.example.test. 200 IN A 192.0.2.11"),
			x:   &rrExtra{sigs: mustRRs(t, sig)}, rank: rankAnswer, sec: secSecure}},
		{"AAAA", "www.example.test.", dns.TypeAAAA, rrEntry{rrs: mustRRs(t, "www.example.test. 300 IN AAAA 2001:db8::10"), rank: rankAnswer}},
		{"NS glue rank", "example.test.", dns.TypeNS, rrEntry{rrs: mustRRs(t, "example.test. 3600 IN NS ns.example.test.", "example.test. 3600 IN NS NS2.Other.test."), rank: rankGlue}},
		{"CNAME", "alias.example.test.", dns.TypeCNAME, rrEntry{rrs: mustRRs(t, "alias.example.test. 300 IN CNAME www.example.test."), rank: rankAnswer, sec: secInsecure}},
		{"DNAME", "dn.example.test.", dns.TypeDNAME, rrEntry{rrs: mustRRs(t, "dn.example.test. 300 IN DNAME example.test.")}},
		{"MX", "example.test.", dns.TypeMX, rrEntry{rrs: mustRRs(t, "example.test. 300 IN MX 10 mail.example.test.")}},
		{"TXT large", "txt.example.test.", dns.TypeTXT, rrEntry{rrs: mustRRs(t, `txt.example.test. 300 IN TXT "`+strings.Repeat("x", 255)+`" "second string"`)}},
		{"SRV", "_sip._udp.example.test.", dns.TypeSRV, rrEntry{rrs: mustRRs(t, "_sip._udp.example.test. 300 IN SRV 10 60 5060 sip.example.test.")}},
		{"PTR", "10.2.0.192.in-addr.arpa.", dns.TypePTR, rrEntry{rrs: mustRRs(t, "10.2.0.192.in-addr.arpa. 300 IN PTR www.example.test.")}},
		{"CAA", "example.test.", dns.TypeCAA, rrEntry{rrs: mustRRs(t, `example.test. 300 IN CAA 0 issue "ca.example"`)}},
		{"HTTPS", "example.test.", dns.TypeHTTPS, rrEntry{rrs: mustRRs(t, `example.test. 300 IN HTTPS 1 . alpn="h2,h3" port=443`)}},
		{"TLSA", "_443._tcp.example.test.", dns.TypeTLSA, rrEntry{rrs: mustRRs(t, "_443._tcp.example.test. 300 IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")}},
		{"unknown type", "x.example.test.", 65280, rrEntry{rrs: mustRRs(t, `x.example.test. 300 IN TYPE65280 \# 3 010203`)}},
		{"DS ref with zone", "child.example.test.", typeDSRef, rrEntry{
			rrs: mustRRs(t, "child.example.test. 3600 IN DS 12345 13 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
			x:   &rrExtra{zone: "example.test."}, rank: rankAuth}},
		{"zone keys", "example.test.", typeZoneKeys, rrEntry{
			rrs: mustRRs(t, "example.test. 3600 IN DNSKEY 257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ=="),
			sec: secSecure}},
		{"NXDOMAIN with NSEC proof", "nx.example.test.", 0, rrEntry{neg: dns.RcodeNameError, rank: rankAnswer, sec: secSecure,
			ede: &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeDNSBogus, ExtraText: "why"},
			x: &rrExtra{soa: mustRRs(t,
				"example.test. 300 IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 300",
				"mail.example.test. 300 IN NSEC www.example.test. A RRSIG NSEC",
				"example.test. 300 IN NSEC3 1 0 0 - 2VPTU5TIMAMQTTGL4LUU9KG21E0AOR3S A RRSIG",
				sig)}}},
		{"NODATA", "www.example.test.", dns.TypeMX, rrEntry{neg: negNoData, rank: rankAnswer,
			x: &rrExtra{soa: mustRRs(t, "example.test. 300 IN SOA ns.example.test. admin.example.test. 1 3600 600 86400 300")}}},
		{"no expiry, no records", "z.", typeFwdCut, rrEntry{neg: 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.e
			in.stored = now.UnixNano()
			if tc.name != "no expiry, no records" {
				in.expires = now.Add(300*time.Second + 500*time.Millisecond)
			}
			key := rrKey(tc.key, tc.qtype)
			p, err := packRR(key, &in)
			if err != nil {
				t.Fatal(err)
			}
			if string(p.cacheKey()) != string(key) {
				t.Errorf("key %q, want %q", p.cacheKey(), key)
			}
			out, err := p.unpack()
			if err != nil {
				t.Fatal(err)
			}
			if got, want := presentation(out.rrs), presentation(in.rrs); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("rrs\n got %v\nwant %v", got, want)
			}
			var inSigs, inSOA []dns.RR
			if in.x != nil {
				inSigs, inSOA = in.x.sigs, in.x.soa
				if out.zone() != in.x.zone {
					t.Errorf("zone %q, want %q", out.zone(), in.x.zone)
				}
			}
			var outSigs []dns.RR
			if out.x != nil {
				outSigs = out.x.sigs
			}
			if got, want := presentation(outSigs), presentation(inSigs); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("sigs\n got %v\nwant %v", got, want)
			}
			if got, want := presentation(out.soa()), presentation(inSOA); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("soa\n got %v\nwant %v", got, want)
			}
			if out.neg != in.neg || out.rank != in.rank || out.sec != in.sec || out.stored != in.stored || !out.expires.Equal(in.expires) {
				t.Errorf("metadata %+v, want %+v", out, in)
			}
			if (out.ede == nil) != (in.ede == nil) || in.ede != nil && *out.ede != *in.ede {
				t.Errorf("ede %v, want %v", out.ede, in.ede)
			}
			if p.negative() != (in.neg != 0) {
				t.Errorf("negative() = %v", p.negative())
			}
			// The decoded records are fresh: changing them leaves the cache alone.
			for _, rr := range out.rrs {
				rr.Header().Ttl = 1
			}
			if again, _ := p.unpack(); len(again.rrs) > 0 && again.rrs[0].Header().Ttl == 1 {
				t.Errorf("unpack returned the cache's own records")
			}
		})
	}
}

// TestPackedOwnerSharedOnce: an RRset's owner is held once (in the key),
// not once per record.
func TestPackedOwnerSharedOnce(t *testing.T) {
	name := "a-rather-long-owner-name.of-some-zone.example.test."
	var rrs []dns.RR
	for i := range 8 {
		rrs = append(rrs, mustRR(t, fmt.Sprintf("%s 300 IN A 192.0.2.%d", strings.ToUpper(name), i)))
	}
	p, err := packRR(rrKey(name, dns.TypeA), &rrEntry{rrs: rrs, stored: 1, expires: time.Unix(0, 1).Add(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	// Key length, key, fixed fields, counts, then per record: one byte
	// for the owner, 10 of fixed fields, 4 of address.
	if want := 1 + len(name) + 2 + 6 + 4 + 8*(1+10+4); len(p.data) != want {
		t.Errorf("packed %d bytes, want %d", len(p.data), want)
	}
}

// TestPackedTTLDecay: answers built from the packed RRset cache (another
// variant of a cached question: with DO, a different case) and from the
// packed reply cache count their TTLs down, negative answers their SOA's.
func TestPackedTTLDecay(t *testing.T) {
	h := newHierarchy(t, 0)
	r := startResolver(t, h, func(c *Config) { c.NoPrefetch = true })
	ask(t, r.addr, "www.example.test", dns.TypeA)
	ask(t, r.addr, "nx.example.test", dns.TypeA)
	before := h.example.Queries.Load()
	r.clock.Advance(120 * time.Second)
	do := func(m *dns.Msg) { m.SetEdns0(1232, true) }
	for _, q := range []struct {
		name string
		opts []func(*dns.Msg)
		ttl  uint32
	}{
		{"www.example.test", nil, 180},                  // reply cache
		{"WwW.eXample.TEST", nil, 180},                  // reply cache, the client's spelling
		{"www.example.test", []func(*dns.Msg){do}, 180}, // RRset cache (new variant)
	} {
		m := ask(t, r.addr, q.name, dns.TypeA, q.opts...)
		if len(m.Answer) != 2 {
			t.Fatalf("%s: %v", q.name, m)
		}
		for _, rr := range m.Answer {
			if rr.Header().Ttl != q.ttl || rr.Header().Name != dns.Fqdn(q.name) {
				t.Errorf("%s: %s, want TTL %d and the query's spelling", q.name, rr, q.ttl)
			}
		}
		if m.Question[0].Name != dns.Fqdn(q.name) {
			t.Errorf("question %s, want %s", m.Question[0].Name, q.name)
		}
	}
	// NXDOMAIN: the SOA's TTL (300 in the zone) counted down, from the
	// reply cache and from the RRset cache.
	for _, opts := range [][]func(*dns.Msg){nil, {do}} {
		m := ask(t, r.addr, "nx.example.test", dns.TypeA, opts...)
		if m.Rcode != dns.RcodeNameError || len(m.Ns) == 0 {
			t.Fatalf("nx: %v", m)
		}
		if soa := m.Ns[0]; soa.Header().Rrtype != dns.TypeSOA || soa.Header().Ttl != 180 {
			t.Errorf("SOA %s, want TTL 180", soa)
		}
	}
	if h.example.Queries.Load() != before {
		t.Errorf("%d queries went upstream", h.example.Queries.Load()-before)
	}
}

// TestCacheByteAccounting: the bytes the caches account for 20,000
// answers are within 15% of the live heap they take, and negative
// entries are counted apart.
func TestCacheByteAccounting(t *testing.T) {
	const n = 20000
	s, live := filledHeap(t, n)
	rb, neg := s.rr.s.bytes()
	mb, _ := s.msgs.bytes()
	if acc := float64(rb + mb); acc < 0.85*live || acc > 1.15*live {
		t.Errorf("accounted %.0f B/entry, live heap %.0f B/entry", acc/n, live/n)
	}
	if neg != 0 {
		t.Errorf("negative bytes %d with no negative entry", neg)
	}
	now := time.Now()
	soa := mustRRs(t, "fill.bench. 300 IN SOA ns.fill.bench. admin.fill.bench. 1 3600 600 86400 300")
	s.rr.put(rrKey("nx.fill.bench.", 0), &rrEntry{neg: dns.RcodeNameError, x: &rrExtra{soa: soa}, stored: now.UnixNano(), expires: now.Add(time.Minute)})
	rb2, neg := s.rr.s.bytes()
	if neg <= 0 || rb2-rb != neg {
		t.Errorf("negative entry: %d bytes of %d added", neg, rb2-rb)
	}
	s.Flush("fill.bench.")
	if rb, neg = s.rr.s.bytes(); rb != 0 || neg != 0 {
		t.Errorf("after flush: %d bytes, %d negative", rb, neg)
	}
	if mb, _ = s.msgs.bytes(); mb != 0 {
		t.Errorf("after flush: %d reply bytes", mb)
	}
	runtime.KeepAlive(s)
}

// TestCacheBytesBound: a store bounded in bytes stays within it, and the
// sampled CLOCK keeps the entries that are looked up.
func TestCacheBytesBound(t *testing.T) {
	const budget = 16 * 4096
	c := newRRCache(1<<20, budget)
	now := time.Now()
	put := func(i int) {
		rr := mustRR(t, fmt.Sprintf("n%d.example. 300 IN A 192.0.2.1", i))
		c.put(rrKey(rr.Header().Name, dns.TypeA), &rrEntry{rrs: []dns.RR{rr}, stored: now.UnixNano(), expires: now.Add(time.Hour)})
	}
	hot := func(i int) bool { return i%10 == 0 && i < 100 }
	for i := range 5000 {
		put(i)
		for j := 0; j < 100 && j <= i; j += 10 {
			c.get(rrKey(fmt.Sprintf("n%d.example.", j), dns.TypeA))
		}
	}
	total, _ := c.s.bytes()
	if total > budget {
		t.Errorf("%d bytes held, bound %d", total, budget)
	}
	if c.len() < 100 {
		t.Errorf("only %d entries kept in %d bytes", c.len(), budget)
	}
	kept := 0
	for i := range 100 {
		if _, ok := c.get(rrKey(fmt.Sprintf("n%d.example.", i), dns.TypeA)); ok && hot(i) {
			kept++
		}
	}
	if kept < 8 {
		t.Errorf("%d of 10 entries looked up all along survived", kept)
	}
}

// FuzzPackedRR: whatever records an upstream reply carries (a parsed
// message's sections), the RRset cache gives back the same records, with
// owners equal to the key's name lower-cased.
func FuzzPackedRR(f *testing.F) {
	for _, rrs := range [][]string{
		{"www.example.test. 300 IN A 192.0.2.1", "WWW.example.test. 300 IN RRSIG A 13 3 300 20300101000000 20200101000000 1 example.test. dGVzdA=="},
		{"example.test. 300 IN NSEC www.example.test. A NS SOA RRSIG NSEC DNSKEY", "a.example.test. 300 IN NSEC3 1 0 0 - 2VPTU5TIMAMQTTGL4LUU9KG21E0AOR3S A RRSIG"},
		{`t.example.test. 300 IN TXT "a" "b"`, "example.test. 300 IN SOA ns. admin. 1 2 3 4 5", `x.example.test. 300 IN TYPE65280 \# 2 0102`},
		{`example.test. 300 IN HTTPS 1 . alpn="h2" ipv4hint=192.0.2.1`, "example.test. 300 IN DNSKEY 257 3 13 dGVzdA=="},
	} {
		m := new(dns.Msg)
		m.SetQuestion("www.example.test.", dns.TypeA)
		for _, l := range rrs {
			rr, err := dns.NewRR(l)
			if err != nil {
				f.Fatal(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		m := new(dns.Msg)
		if m.Unpack(in) != nil || len(m.Answer) == 0 {
			return
		}
		// Records miekg/dns does not read back from its own packing (a
		// TSIG whose lengths overflow) are not the cache's to round-trip:
		// a lookup that cannot decode an entry is a miss.
		if b, err := m.Pack(); err != nil || new(dns.Msg).Unpack(b) != nil {
			return
		}
		owner := strings.ToLower(m.Answer[0].Header().Name)
		key := rrKey(owner, m.Answer[0].Header().Rrtype)
		e := &rrEntry{rrs: m.Answer, x: &rrExtra{sigs: m.Ns, soa: m.Extra}, stored: 2, expires: time.Unix(0, 2).Add(time.Minute)}
		p, err := packRR(key, e)
		if err != nil {
			return // not cached: a name or key the cache does not take
		}
		out, err := p.unpack()
		if err != nil {
			t.Fatalf("unpack of a packed entry: %v", err)
		}
		if got, want := presentation(out.rrs), presentation(m.Answer); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("rrs\n got %v\nwant %v", got, want)
		}
		var sigs []dns.RR
		if out.x != nil {
			sigs = out.x.sigs
		}
		if got, want := presentation(sigs), presentation(m.Ns); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("sigs\n got %v\nwant %v", got, want)
		}
		if got, want := presentation(out.soa()), presentation(m.Extra); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("soa\n got %v\nwant %v", got, want)
		}
	})
}
