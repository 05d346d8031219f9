package resolver

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/applayer/applayer/dns/dnstest"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

// signedZone describes one zone of a signed test tree. Signatures are
// made at test time, never committed.
type signedZone struct {
	origin string
	host   byte
	// unsigned zones get no keys and no DS in the parent.
	unsigned bool
	// dsOnly: the parent publishes a DS but the zone is served unsigned.
	dsOnly bool
	nsec3  bool
	iter   uint16
	alg    string
	// expired signs with a validity that ended three days ago.
	expired bool
	// edit rewrites the signed zone's records (tampering).
	edit func(rrs []dns.RR) []dns.RR
	// dsEdit rewrites the DS the parent publishes (before the parent is signed).
	dsEdit func(ds *dns.DS)
}

const leafZone = `
$ORIGIN {Z}
@        3600 IN SOA ns admin 1 3600 600 86400 300
@        3600 IN NS ns
ns       3600 IN A {N}.{H}
www      300  IN A 192.0.2.1
www      300  IN TXT "hello"
alias    300  IN CNAME www
a.b      300  IN A 192.0.2.3
*.wild   300  IN A 192.0.2.2
`

// signedTree serves root -> test. (NSEC) -> the given leaf zones, each
// zone on its own authority server of a random 127.x.y.0/24 (through
// dnstest.StartZones, the one test hierarchy), and returns the resolver
// config pointing at it with the root's DS as trust anchor.
func signedTree(t *testing.T, port int, leaves []signedZone) (*testNet, Config) {
	t.Helper()
	n := newTestNet(t, port)
	signing := func(sz signedZone) *dnstest.Signing {
		if sz.unsigned {
			return nil
		}
		return &dnstest.Signing{Algorithm: sz.alg, NSEC3: sz.nsec3, Iterations: sz.iter, Expired: sz.expired, DSOnly: sz.dsOnly, EditDS: sz.dsEdit}
	}
	tld := "$ORIGIN test.\n@ 3600 IN SOA ns admin 1 3600 600 86400 300\n@ 3600 IN NS ns\nns 3600 IN A {N}.2\n"
	var zones []dnstest.Zone
	for _, l := range leaves {
		label := strings.TrimSuffix(l.origin, ".test.")
		tld += fmt.Sprintf("%s 3600 IN NS ns.%s\nns.%s 3600 IN A {N}.%d\n", label, l.origin, l.origin, l.host)
		text := strings.NewReplacer("{Z}", l.origin, "{H}", fmt.Sprint(l.host)).Replace(leafZone)
		zones = append(zones, dnstest.Zone{Origin: l.origin, Addr: n.ip(l.host), Text: n.zoneText(text), Sign: signing(l), Edit: l.edit})
	}
	root := ". 86400 IN SOA a.root. admin. 1 3600 600 86400 300\n. 86400 IN NS a.root.\na.root. 86400 IN A {N}.1\ntest. 86400 IN NS ns.test.\nns.test. 86400 IN A {N}.2\n"
	zones = append([]dnstest.Zone{
		{Origin: ".", Addr: n.ip(1), Text: n.zoneText(root), Sign: &dnstest.Signing{}},
		{Origin: "test.", Addr: n.ip(2), Text: n.zoneText(tld), Sign: &dnstest.Signing{}},
	}, zones...)
	sv, err := dnstest.StartZones(t, n.port, zones)
	if err != nil {
		t.Fatal(err)
	}
	return n, Config{
		Listen:          "127.0.0.1:0",
		RootHints:       []string{n.ip(1).String()},
		UpstreamPort:    n.port,
		Timeout:         config100ms,
		TrustAnchorFile: sv.Anchor,
	}
}

const config100ms = 100 * 1e6

func startValidating(t *testing.T, cfg Config) *testResolver {
	t.Helper()
	clock := &fakeClock{}
	s, err := New(cfg, service.Deps{Logger: testkit.Logger(t), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, s)
	return &testResolver{Server: s, addr: s.Addrs()[0].String(), clock: clock}
}

func withDO(m *dns.Msg) { m.SetEdns0(1232, true) }
func withCD(m *dns.Msg) { m.CheckingDisabled = true }
func withAD(m *dns.Msg) { m.AuthenticatedData = true }

// checkVerdict fails the test unless m has the rcode and AD bit given
// (fatal) and the Extended DNS Error code ede (-1: no EDE at all).
func checkVerdict(t *testing.T, m *dns.Msg, rcode int, ad bool, ede int) {
	t.Helper()
	if m.Rcode != rcode || m.AuthenticatedData != ad {
		t.Fatalf("rcode %s AD=%v, want %s AD=%v\n%v", dns.RcodeToString[m.Rcode], m.AuthenticatedData, dns.RcodeToString[rcode], ad, m)
	}
	e := edeOf(m)
	switch {
	case ede < 0 && e != nil:
		t.Errorf("unexpected EDE %d %q", e.InfoCode, e.ExtraText)
	case ede >= 0 && (e == nil || int(e.InfoCode) != ede):
		t.Errorf("EDE %v, want code %d", e, ede)
	}
}

func edeOf(m *dns.Msg) *dns.EDNS0_EDE {
	if o := m.IsEdns0(); o != nil {
		for _, op := range o.Option {
			if e, ok := op.(*dns.EDNS0_EDE); ok {
				return e
			}
		}
	}
	return nil
}

func dropTypes(types ...uint16) func([]dns.RR) []dns.RR {
	return func(rrs []dns.RR) []dns.RR {
		var out []dns.RR
	next:
		for _, rr := range rrs {
			t := rr.Header().Rrtype
			if s, ok := rr.(*dns.RRSIG); ok {
				t = s.TypeCovered
			}
			for _, d := range types {
				if t == d {
					continue next
				}
			}
			out = append(out, rr)
		}
		return out
	}
}

// tamper changes www's address after signing: its RRSIG no longer matches.
func tamper(rrs []dns.RR) []dns.RR {
	for _, rr := range rrs {
		if a, ok := rr.(*dns.A); ok && strings.HasPrefix(a.Hdr.Name, "www.") {
			a.A = []byte{192, 0, 2, 66}
		}
	}
	return rrs
}

// keytrap replaces www's A signature with 40 that carry the right key
// tag but do not verify.
func keytrap(rrs []dns.RR) []dns.RR {
	var out []dns.RR
	for _, rr := range rrs {
		s, ok := rr.(*dns.RRSIG)
		if !ok || s.TypeCovered != dns.TypeA || !strings.HasPrefix(s.Hdr.Name, "www.") {
			out = append(out, rr)
			continue
		}
		for i := 0; i < 40; i++ {
			c := dns.Copy(s).(*dns.RRSIG)
			raw, _ := base64.StdEncoding.DecodeString(c.Signature)
			raw[i%len(raw)] ^= 0xff
			c.OrigTtl = s.OrigTtl + uint32(i) // distinct records
			c.Signature = base64.StdEncoding.EncodeToString(raw)
			out = append(out, c)
		}
	}
	return out
}

func TestDNSSECValidation(t *testing.T) {
	_, cfg := signedTree(t, 0, []signedZone{
		{origin: "sec.test.", host: 3},
		{origin: "n3.test.", host: 4, nsec3: true, alg: "ed25519"},
		{origin: "unsigned.test.", host: 5, unsigned: true},
		{origin: "bad.test.", host: 6, edit: tamper},
		{origin: "old.test.", host: 7, expired: true},
		{origin: "strip.test.", host: 8, dsOnly: true},
		{origin: "nonsec.test.", host: 9, edit: dropTypes(dns.TypeNSEC)},
		{origin: "iter.test.", host: 10, nsec3: true, iter: 200},
		{origin: "trap.test.", host: 11, edit: keytrap},
	})
	r := startValidating(t, cfg)
	tests := []struct {
		name  string
		qtype uint16
		rcode int
		ad    bool
		ede   int // -1: none expected
		n     int // answer records (without DO)
	}{
		{"www.sec.test", dns.TypeA, dns.RcodeSuccess, true, -1, 1},
		{"alias.sec.test", dns.TypeA, dns.RcodeSuccess, true, -1, 2},
		{"nx.sec.test", dns.TypeA, dns.RcodeNameError, true, -1, 0},
		{"www.sec.test", dns.TypeAAAA, dns.RcodeSuccess, true, -1, 0},
		{"b.sec.test", dns.TypeA, dns.RcodeSuccess, true, -1, 0}, // empty non-terminal
		{"x.wild.sec.test", dns.TypeA, dns.RcodeSuccess, true, -1, 1},
		{"x.wild.sec.test", dns.TypeAAAA, dns.RcodeSuccess, true, -1, 0}, // wildcard NODATA
		{"www.n3.test", dns.TypeA, dns.RcodeSuccess, true, -1, 1},
		{"nx.n3.test", dns.TypeA, dns.RcodeNameError, true, -1, 0},
		{"www.n3.test", dns.TypeAAAA, dns.RcodeSuccess, true, -1, 0},
		{"b.n3.test", dns.TypeA, dns.RcodeSuccess, true, -1, 0},
		{"x.wild.n3.test", dns.TypeA, dns.RcodeSuccess, true, -1, 1},
		{"x.wild.n3.test", dns.TypeAAAA, dns.RcodeSuccess, true, -1, 0},
		{"www.unsigned.test", dns.TypeA, dns.RcodeSuccess, false, -1, 1},
		{"nx.unsigned.test", dns.TypeA, dns.RcodeNameError, false, -1, 0},
		{"www.bad.test", dns.TypeA, dns.RcodeServerFailure, false, int(dns.ExtendedErrorCodeDNSBogus), 0},
		{"www.old.test", dns.TypeA, dns.RcodeServerFailure, false, int(dns.ExtendedErrorCodeSignatureExpired), 0},
		{"www.strip.test", dns.TypeA, dns.RcodeServerFailure, false, int(dns.ExtendedErrorCodeDNSKEYMissing), 0},
		{"nx.nonsec.test", dns.TypeA, dns.RcodeServerFailure, false, int(dns.ExtendedErrorCodeNSECMissing), 0},
		{"www.nonsec.test", dns.TypeA, dns.RcodeSuccess, true, -1, 1},
		// NSEC3 with 200 iterations (> 150): positive answers stay
		// secure, denial is insecure (RFC 9276).
		{"www.iter.test", dns.TypeA, dns.RcodeSuccess, true, -1, 1},
		{"nx.iter.test", dns.TypeA, dns.RcodeNameError, false, -1, 0},
		{"www.trap.test", dns.TypeA, dns.RcodeServerFailure, false, int(dns.ExtendedErrorCodeDNSBogus), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
			m := ask(t, r.addr, tc.name, tc.qtype, withDO)
			checkVerdict(t, m, tc.rcode, tc.ad, tc.ede)
			// Without DO: the same data without DNSSEC records, and AD
			// only if asked for with the AD bit.
			m2 := ask(t, r.addr, tc.name, tc.qtype)
			if m2.Rcode != tc.rcode || m2.AuthenticatedData || len(m2.Answer) != tc.n {
				t.Errorf("plain query: rcode %s AD=%v %d answers, want %s, no AD, %d answers\n%v", dns.RcodeToString[m2.Rcode], m2.AuthenticatedData, len(m2.Answer), dns.RcodeToString[tc.rcode], tc.n, m2)
			}
			m3 := ask(t, r.addr, tc.name, tc.qtype, withAD)
			if m3.AuthenticatedData != tc.ad {
				t.Errorf("AD query: AD=%v, want %v", m3.AuthenticatedData, tc.ad)
			}
		})
	}
	t.Run("CD bypasses validation", func(t *testing.T) {
		m := ask(t, r.addr, "www.bad.test", dns.TypeA, withDO, withCD)
		if m.Rcode != dns.RcodeSuccess || m.AuthenticatedData || len(m.Answer) == 0 {
			t.Fatalf("CD query: %v", m)
		}
		if a, ok := m.Answer[0].(*dns.A); !ok || a.A.String() != "192.0.2.66" {
			t.Errorf("CD answer %v, want the (tampered) data", m.Answer[0])
		}
		m = ask(t, r.addr, "www.sec.test", dns.TypeA, withDO, withCD)
		if m.Rcode != dns.RcodeSuccess || m.AuthenticatedData {
			t.Errorf("CD on secure data: AD=%v, want no AD (as Unbound)", m.AuthenticatedData)
		}
	})
	t.Run("aggressive NSEC", func(t *testing.T) {
		// nx.sec.test's NXDOMAIN proof (asked above) covers nz.sec.test.
		// (x.wild.sec.test AAAA above was already a wildcard NODATA
		// synthesized from the NSEC records of the wildcard expansion.)
		before, synth := testutil.ToFloat64(r.m.upstreamQueries), testutil.ToFloat64(r.m.aggressive)
		m := ask(t, r.addr, "nz.sec.test", dns.TypeA, withDO)
		if m.Rcode != dns.RcodeNameError || !m.AuthenticatedData {
			t.Fatalf("nz.sec.test: %v", m)
		}
		if n := testutil.ToFloat64(r.m.aggressive) - synth; n != 1 {
			t.Errorf("aggressive_nsec_total +%v, want +1", n)
		}
		if d := testutil.ToFloat64(r.m.upstreamQueries) - before; d != 0 {
			t.Errorf("%v upstream queries, want none", d)
		}
		// Below a delegation the parent's NSEC proves nothing.
		m = ask(t, r.addr, "www.unsigned.test", dns.TypeA, withDO)
		if m.Rcode != dns.RcodeSuccess {
			t.Errorf("www.unsigned.test: %v", m)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		if n := testutil.ToFloat64(r.m.secure); n < 10 {
			t.Errorf("secure_total %v", n)
		}
		if n := testutil.ToFloat64(r.m.bogus); n < 5 {
			t.Errorf("bogus_total %v", n)
		}
		if n := testutil.ToFloat64(r.m.insecure); n < 3 {
			t.Errorf("insecure_total %v", n)
		}
		if n := testutil.ToFloat64(r.m.keytrap); n < 1 {
			t.Errorf("validation_limit_total %v: the KeyTrap zone did not hit the limit", n)
		}
		if n := testutil.ToFloat64(r.m.insecureDelegations); n < 1 {
			t.Errorf("insecure_delegations_total %v", n)
		}
	})
}

// TestDNSSECChapterHierarchy resolves the lab's hierarchy (root, edu and
// umass.edu signed by dns/authority's signer; cs.umass.edu and amazon.com
// unsigned) with the root's DS file as trust anchor, as the lab does.
func TestDNSSECChapterHierarchy(t *testing.T) {
	h := dnstest.Start(t, dnstest.Chapter(), dnstest.Options{Signed: []string{".", "edu", "umass.edu"}})
	root := h.Root(dnstest.Chapter())
	r := startValidating(t, Config{Listen: "127.0.0.1:0", RootHints: []string{root.Addr().String()}, UpstreamPort: h.Port,
		Timeout: config100ms, TrustAnchorFile: h.RootDS})
	tests := []struct {
		name  string
		qtype uint16
		rcode int
		ad    bool
	}{
		{"www.umass.edu", dns.TypeA, dns.RcodeSuccess, true},
		{"dns.umass.edu", dns.TypeA, dns.RcodeSuccess, true},
		{"nothing.umass.edu", dns.TypeA, dns.RcodeNameError, true},
		{"umass.edu", dns.TypeMX, dns.RcodeSuccess, true},
		{"gaia.cs.umass.edu", dns.TypeA, dns.RcodeSuccess, false}, // cs.umass.edu: no DS
		{"dns.amazon.com", dns.TypeA, dns.RcodeSuccess, false},    // com unsigned
		{"nothing.edu", dns.TypeA, dns.RcodeNameError, true},
	}
	for _, tc := range tests {
		m := ask(t, r.addr, tc.name, tc.qtype, withDO)
		if m.Rcode != tc.rcode || m.AuthenticatedData != tc.ad {
			t.Errorf("%s %s: rcode %s AD=%v, want %s AD=%v\n%v", tc.name, dns.TypeToString[tc.qtype], dns.RcodeToString[m.Rcode], m.AuthenticatedData, dns.RcodeToString[tc.rcode], tc.ad, m)
		}
	}
}

// TestDenialProofs checks the NSEC and NSEC3 proof logic on hand-made
// records (signatures are checked elsewhere): right proofs pass, proofs
// for another name or with the type present fail.
func TestDenialProofs(t *testing.T) {
	nsec := func(owner, next string, types ...uint16) dns.RR {
		return &dns.NSEC{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeNSEC, Class: dns.ClassINET}, NextDomain: next, TypeBitMap: types}
	}
	h := func(name string) string { return strings.ToLower(dns.HashName(name, dns.SHA1, 0, "")) }
	// NSEC3 records for a chain around the hash of name: one matching
	// name (types) and a covering one per name in cover.
	n3match := func(name string, types ...uint16) dns.RR {
		return &dns.NSEC3{Hdr: dns.RR_Header{Name: h(name) + ".z.", Rrtype: dns.TypeNSEC3, Class: dns.ClassINET}, Hash: dns.SHA1, NextDomain: strings.ToUpper(nextHash(h(name))), TypeBitMap: types}
	}
	n3cover := func(name string, optout bool) dns.RR {
		x := h(name)
		r := &dns.NSEC3{Hdr: dns.RR_Header{Name: prevHash(x) + ".z.", Rrtype: dns.TypeNSEC3, Class: dns.ClassINET}, Hash: dns.SHA1, NextDomain: strings.ToUpper(nextHash(x))}
		if optout {
			r.Flags = 1
		}
		return r
	}
	r := &Engine{cfg: Config{}}
	r.cfg.defaults()
	den := func(rrs ...dns.RR) *denial {
		d := &denial{r: r, t: &task{}}
		for _, s := range groupSets(rrs, nil) {
			d.add(s)
		}
		return d
	}
	A, AAAA := dns.TypeA, dns.TypeAAAA
	tests := []struct {
		name string
		got  proof
		want proof
	}{
		{"nsec nxdomain", den(nsec("a.z.", "c.z.", A), nsec("z.", "a.z.", dns.TypeSOA)).nxdomain("b.z."), proofOK},
		{"nsec nxdomain no wildcard proof", den(nsec("a.z.", "c.z.", A)).nxdomain("b.z."), proofFail},
		{"nsec nxdomain wrong range", den(nsec("c.z.", "d.z.", A), nsec("z.", "a.z.", dns.TypeSOA)).nxdomain("b.z."), proofFail},
		{"nsec nxdomain below a delegation", den(nsec("b.z.", "c.z.", dns.TypeNS), nsec("z.", "a.z.", dns.TypeSOA)).nxdomain("x.b.z."), proofFail},
		{"nsec nxdomain name exists", den(nsec("b.z.", "c.z.", A), nsec("z.", "a.z.", dns.TypeSOA)).nxdomain("b.z."), proofFail},
		{"nsec nodata", den(nsec("b.z.", "c.z.", A)).nodata("b.z.", AAAA), proofOK},
		{"nsec nodata type present", den(nsec("b.z.", "c.z.", A, AAAA)).nodata("b.z.", AAAA), proofFail},
		{"nsec nodata cname", den(nsec("b.z.", "c.z.", dns.TypeCNAME)).nodata("b.z.", AAAA), proofFail},
		{"nsec nodata parent side of a cut", den(nsec("b.z.", "c.z.", dns.TypeNS)).nodata("b.z.", A), proofFail},
		{"nsec nodata DS at a cut", den(nsec("b.z.", "c.z.", dns.TypeNS)).nodata("b.z.", dns.TypeDS), proofOK},
		{"nsec empty non-terminal", den(nsec("a.z.", "x.b.z.", A)).nodata("b.z.", A), proofOK},
		{"nsec wildcard expansion", den(nsec("a.z.", "c.z.", A)).wildcard("b.z.", "z."), proofOK},
		{"nsec wildcard expansion, name exists", den(nsec("b.z.", "c.z.", A)).wildcard("b.z.", "z."), proofFail},
		{"nsec3 nxdomain", den(n3match("z.", dns.TypeSOA), n3cover("b.z.", false), n3cover("*.z.", false)).nxdomain("b.z."), proofOK},
		{"nsec3 nxdomain opt-out", den(n3match("z.", dns.TypeSOA), n3cover("b.z.", true), n3cover("*.z.", false)).nxdomain("b.z."), proofInsecure},
		{"nsec3 nxdomain no wildcard", den(n3match("z.", dns.TypeSOA), n3cover("b.z.", false)).nxdomain("b.z."), proofFail},
		{"nsec3 nxdomain no encloser", den(n3cover("b.z.", false), n3cover("*.z.", false)).nxdomain("b.z."), proofFail},
		{"nsec3 nodata", den(n3match("b.z.", A)).nodata("b.z.", AAAA), proofOK},
		{"nsec3 nodata type present", den(n3match("b.z.", AAAA)).nodata("b.z.", AAAA), proofFail},
		{"nsec3 DS opt-out", den(n3match("z.", dns.TypeSOA), n3cover("b.z.", true)).nodata("b.z.", dns.TypeDS), proofInsecure},
		{"nsec3 no DS", den(n3match("b.z.", dns.TypeNS)).noDS("b.z."), proofOK},
		{"nsec3 DS present", den(n3match("b.z.", dns.TypeNS, dns.TypeDS)).noDS("b.z."), proofFail},
		{"nsec no DS", den(nsec("b.z.", "c.z.", dns.TypeNS)).noDS("b.z."), proofOK},
		{"nsec no DS without NS bit", den(nsec("b.z.", "c.z.", A)).noDS("b.z."), proofFail},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}

// nextHash and prevHash return base32hex strings just after and before h.
func nextHash(h string) string { return bumpHash(h, 1) }
func prevHash(h string) string { return bumpHash(h, -1) }

func bumpHash(h string, d int) string {
	const digits = "0123456789abcdefghijklmnopqrstuv"
	b := []byte(h)
	i := len(b) - 1
	for i >= 0 {
		v := strings.IndexByte(digits, b[i]) + d
		if v >= 0 && v < 32 {
			b[i] = digits[v]
			break
		}
		b[i] = digits[(v+32)%32]
		i--
	}
	return string(b)
}

// TestInteropDNSSECVersusUnbound validates the same signed tree with
// applayer, with Unbound (validator module) and with applayer forwarding
// to Unbound: each must give the case's own expected rcode, AD bit,
// answer (case-exact, signatures present when secure) and SOA for
// negative answers.
func TestInteropDNSSECVersusUnbound(t *testing.T) {
	needPeer(t, "unbound")
	n := newTestNet(t, 53)
	needPort53(t, n)
	n, cfg := signedTree(t, 53, []signedZone{
		{origin: "sec.test.", host: 3},
		{origin: "n3.test.", host: 4, nsec3: true, alg: "ed25519"},
		{origin: "unsigned.test.", host: 5, unsigned: true},
		{origin: "bad.test.", host: 6, edit: tamper},
		{origin: "old.test.", host: 7, expired: true},
		{origin: "strip.test.", host: 8, dsOnly: true},
		{origin: "nonsec.test.", host: 9, edit: dropTypes(dns.TypeNSEC)},
	})
	ub, _ := startUnbound(t, n,
		fmt.Sprintf("trust-anchor-file: %q", cfg.TrustAnchorFile),
		`module-config: "validator iterator"`,
		`local-zone: "test." nodefault`)
	cfg.UpstreamPort = 53
	r := startValidating(t, cfg)
	// The same, validated by applayer in forwarding mode through Unbound
	// (queries with CD: Unbound hands over the data unvalidated).
	fcfg := cfg
	fcfg.RootHints, fcfg.UpstreamPort, fcfg.Forwarders = nil, 0, []string{ub + ":53"}
	fwd := startValidating(t, fcfg)
	www := func(z string) []string { return []string{"www." + z + ". 0 IN A 192.0.2.1"} }
	for _, tc := range []diffCase{
		{name: "www.sec.test", qtype: dns.TypeA, ad: true, answer: www("sec.test")},
		{name: "WWW.Sec.test", qtype: dns.TypeA, ad: true, answer: []string{"WWW.Sec.test. 0 IN A 192.0.2.1"}},
		{name: "nx.sec.test", qtype: dns.TypeA, rcode: dns.RcodeNameError, ad: true, soa: "sec.test."},
		{name: "www.sec.test", qtype: dns.TypeAAAA, ad: true, soa: "sec.test."},
		{name: "x.wild.sec.test", qtype: dns.TypeA, ad: true, answer: []string{"x.wild.sec.test. 0 IN A 192.0.2.2"}},
		{name: "www.n3.test", qtype: dns.TypeA, ad: true, answer: www("n3.test")},
		{name: "nx.n3.test", qtype: dns.TypeA, rcode: dns.RcodeNameError, ad: true, soa: "n3.test."},
		{name: "b.n3.test", qtype: dns.TypeA, ad: true, soa: "n3.test."}, // empty non-terminal
		{name: "x.wild.n3.test", qtype: dns.TypeAAAA, ad: true, soa: "n3.test."},
		{name: "www.unsigned.test", qtype: dns.TypeA, answer: www("unsigned.test")},
		{name: "www.bad.test", qtype: dns.TypeA, rcode: dns.RcodeServerFailure},
		{name: "www.old.test", qtype: dns.TypeA, rcode: dns.RcodeServerFailure},
		{name: "www.strip.test", qtype: dns.TypeA, rcode: dns.RcodeServerFailure},
		{name: "nx.nonsec.test", qtype: dns.TypeA, rcode: dns.RcodeServerFailure},
	} {
		t.Run(tc.name+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
			tc.check(t, "applayer", ask(t, r.addr, tc.name, tc.qtype, withDO))
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(tc.name), tc.qtype)
			m.SetEdns0(1232, true)
			c := &dns.Client{Timeout: 4 * time.Second}
			theirs, _, err := c.Exchange(m, ub+":53")
			if err != nil {
				t.Fatalf("unbound %s: %v", tc.name, err)
			}
			tc.check(t, "unbound", theirs)
			tc.check(t, "applayer forwarding to unbound", ask(t, fwd.addr, tc.name, tc.qtype, withDO))
		})
	}
}
