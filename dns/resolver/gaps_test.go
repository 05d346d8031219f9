package resolver

import (
	"context"
	"crypto"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

// TestGluelessIPv6OnlyNameServer: the only name server of v6only. has no
// A record, only an AAAA (IPv4-mapped, since tests run on IPv4 loopback):
// the resolver looks up AAAA after the A lookup comes back empty.
func TestGluelessIPv6OnlyNameServer(t *testing.T) {
	n := newTestNet(t, 0)
	startAuth(t, n, 1, map[string]string{".": `
.            86400 IN SOA a.root. admin. 1 3600 600 86400 300
.            86400 IN NS a.root.
a.root.      86400 IN A {N}.1
helper.      86400 IN NS ns.helper.
ns.helper.   86400 IN A {N}.2
v6only.      86400 IN NS ns6.helper.
`})
	helper := startAuth(t, n, 2, map[string]string{"helper.": `
helper.      3600 IN SOA ns.helper. admin.helper. 1 3600 600 86400 60
helper.      3600 IN NS ns.helper.
ns.helper.   3600 IN A {N}.2
ns6.helper.  3600 IN AAAA ::ffff:{N}.3
`})
	v6 := startAuth(t, n, 3, map[string]string{"v6only.": `
v6only.      3600 IN SOA ns6.helper. admin.helper. 1 3600 600 86400 60
v6only.      3600 IN NS ns6.helper.
www.v6only.  300  IN A 192.0.2.66
`})
	r := startResolver(t, &hierarchy{net: n}, nil)
	m := ask(t, r.addr, "www.v6only", dns.TypeA)
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != "192.0.2.66" {
		t.Fatalf("www.v6only: %v", m)
	}
	if v6.Queries.Load() == 0 || helper.Queries.Load() < 2 {
		t.Errorf("queries: v6only server %d, helper %d (want the A and AAAA lookups)", v6.Queries.Load(), helper.Queries.Load())
	}
}

// TestPanicAnswersServfail: a panic while answering is recovered and the
// client gets SERVFAIL, over UDP and TCP; the server keeps serving.
func TestPanicAnswersServfail(t *testing.T) {
	h := newHierarchy(t, 0)
	s, err := New(Config{Listen: "127.0.0.1:0", RootHints: []string{h.net.ip(1).String()}, UpstreamPort: h.net.port},
		service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	s.testHook = func(m *dns.Msg) {
		if strings.HasPrefix(m.Question[0].Name, "boom.") {
			panic("injected")
		}
	}
	r := struct{ addr string }{testkit.Start(t, s).Addrs()[0].String()}
	for _, proto := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: proto, Timeout: 3 * time.Second}
		m := new(dns.Msg)
		m.SetQuestion("boom.example.test.", dns.TypeA)
		resp, _, err := c.Exchange(m, r.addr)
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		if resp.Rcode != dns.RcodeServerFailure || resp.Id != m.Id {
			t.Errorf("%s: rcode %s id %d, want SERVFAIL id %d", proto, dns.RcodeToString[resp.Rcode], resp.Id, m.Id)
		}
	}
	if m := ask(t, r.addr, "www.example.test", dns.TypeA); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 2 {
		t.Errorf("after the panic: %v", m)
	}
}

// TestTrustAnchorWait: the lab's resolver may start before the root has
// written root.ds; it waits for the file, and never runs unvalidated
// silently.
func TestTrustAnchorWait(t *testing.T) {
	ds := ". 3600 IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n"
	start := func(t *testing.T, file string, optional bool, wait time.Duration) (*Server, error) {
		s, err := New(Config{Listen: "127.0.0.1:0", RootHints: []string{"127.0.0.1"}, TrustAnchorFile: file,
			TrustAnchorOptional: optional, TrustAnchorWait: config.Duration(wait)}, service.Deps{Logger: testkit.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		err = s.Start(context.Background())
		if err == nil {
			t.Cleanup(func() { s.Shutdown(context.Background()) })
		}
		return s, err
	}
	t.Run("appears while waiting", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "root.ds")
		written := make(chan error, 1)
		go func() { written <- os.WriteFile(file, []byte(ds), 0o644) }()
		s, err := start(t, file, false, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-written; err != nil {
			t.Fatal(err)
		}
		if !s.validating() {
			t.Error("not validating")
		}
	})
	t.Run("required and missing", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "root.ds")
		if _, err := start(t, file, false, 100*time.Millisecond); err == nil || !strings.Contains(err.Error(), "root.ds") {
			t.Errorf("Start: %v, want an error naming the file", err)
		}
	})
	t.Run("optional and missing", func(t *testing.T) {
		s, err := start(t, filepath.Join(t.TempDir(), "root.ds"), true, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if s.validating() {
			t.Error("validating without an anchor")
		}
	})
}

// TestForwardingValidation: a validating resolver forwarding to a plain
// (non-validating) iterating resolver in front of a signed tree builds
// the chain of trust through the forwarder (DS and DNSKEY queries with DO
// and CD): AD on secure answers, none below an insecure delegation,
// SERVFAIL with an EDE on bogus ones, CD returns the data.
func TestForwardingValidation(t *testing.T) {
	_, cfg := signedTree(t, 0, []signedZone{
		{origin: "sec.test.", host: 3},
		{origin: "n3.test.", host: 4, nsec3: true, alg: "ed25519"},
		{origin: "unsigned.test.", host: 5, unsigned: true},
		{origin: "bad.test.", host: 6, edit: tamper},
		{origin: "strip.test.", host: 8, dsOnly: true},
		{origin: "nonsec.test.", host: 9, edit: dropTypes(dns.TypeNSEC)},
	})
	plainCfg := cfg
	plainCfg.TrustAnchorFile = ""
	plain := startValidating(t, plainCfg)
	fwdCfg := cfg
	fwdCfg.RootHints, fwdCfg.UpstreamPort = nil, 0
	fwdCfg.Forwarders = []string{plain.addr}
	r := startValidating(t, fwdCfg)
	if !r.validating() || !r.forwarding() {
		t.Fatal("not a validating forwarder")
	}
	tests := []struct {
		name  string
		qtype uint16
		rcode int
		ad    bool
		ede   int // -1: none expected
	}{
		{"www.sec.test", dns.TypeA, dns.RcodeSuccess, true, -1},
		{"alias.sec.test", dns.TypeA, dns.RcodeSuccess, true, -1},
		{"nx.sec.test", dns.TypeA, dns.RcodeNameError, true, -1},
		{"www.sec.test", dns.TypeAAAA, dns.RcodeSuccess, true, -1},
		{"b.sec.test", dns.TypeA, dns.RcodeSuccess, true, -1}, // empty non-terminal
		{"a.b.sec.test", dns.TypeA, dns.RcodeSuccess, true, -1},
		{"x.wild.sec.test", dns.TypeAAAA, dns.RcodeSuccess, true, -1},
		{"x.wild.sec.test", dns.TypeA, dns.RcodeSuccess, true, -1},
		{"x.wild.n3.test", dns.TypeA, dns.RcodeSuccess, true, -1},
		{"www.n3.test", dns.TypeA, dns.RcodeSuccess, true, -1},
		{"nx.n3.test", dns.TypeA, dns.RcodeNameError, true, -1},
		{"b.n3.test", dns.TypeA, dns.RcodeSuccess, true, -1},
		{"sec.test", dns.TypeDS, dns.RcodeSuccess, true, -1},
		{"sec.test", dns.TypeDNSKEY, dns.RcodeSuccess, true, -1},
		// Below an insecure delegation: unsigned answers, no AD.
		{"www.unsigned.test", dns.TypeA, dns.RcodeSuccess, false, -1},
		{"a.b.unsigned.test", dns.TypeA, dns.RcodeSuccess, false, -1},
		{"alias.unsigned.test", dns.TypeA, dns.RcodeSuccess, false, -1},
		{"nx.unsigned.test", dns.TypeA, dns.RcodeNameError, false, -1},
		{"www.unsigned.test", dns.TypeAAAA, dns.RcodeSuccess, false, -1},
		{"unsigned.test", dns.TypeDS, dns.RcodeSuccess, true, -1}, // signed proof of no DS
		{"www.bad.test", dns.TypeA, dns.RcodeServerFailure, false, int(dns.ExtendedErrorCodeDNSBogus)},
		{"www.strip.test", dns.TypeA, dns.RcodeServerFailure, false, int(dns.ExtendedErrorCodeDNSKEYMissing)},
		{"nx.nonsec.test", dns.TypeA, dns.RcodeServerFailure, false, int(dns.ExtendedErrorCodeNSECMissing)},
		{"www.nonsec.test", dns.TypeA, dns.RcodeSuccess, true, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
			m := ask(t, r.addr, tc.name, tc.qtype, withDO)
			checkVerdict(t, m, tc.rcode, tc.ad, tc.ede)
			// The plain resolver itself never sets AD.
			if p := ask(t, plain.addr, tc.name, tc.qtype, withDO); p.AuthenticatedData {
				t.Errorf("the non-validating forwarder set AD")
			}
		})
	}
	t.Run("wildcard proof passed on", func(t *testing.T) {
		// The plain resolver hands a DO client the NSEC proof of a
		// wildcard expansion, fresh and from its caches.
		for i := 0; i < 2; i++ {
			m := ask(t, plain.addr, "y.wild.n3.test", dns.TypeA, withDO)
			n := 0
			for _, rr := range m.Ns {
				if rr.Header().Rrtype == dns.TypeNSEC3 {
					n++
				}
			}
			if len(m.Answer) == 0 || n == 0 {
				t.Fatalf("ask %d: no NSEC3 proof with the wildcard answer: %v", i, m)
			}
		}
		if m := ask(t, plain.addr, "y.wild.n3.test", dns.TypeA); len(m.Ns) != 0 {
			t.Errorf("proof records sent to a client without DO: %v", m.Ns)
		}
	})
	t.Run("CD bypasses validation", func(t *testing.T) {
		m := ask(t, r.addr, "www.bad.test", dns.TypeA, withDO, withCD)
		if m.Rcode != dns.RcodeSuccess || m.AuthenticatedData || len(m.Answer) == 0 {
			t.Fatalf("CD query: %v", m)
		}
		if a, ok := m.Answer[0].(*dns.A); !ok || a.A.String() != "192.0.2.66" {
			t.Errorf("CD answer %v, want the (tampered) data", m.Answer[0])
		}
	})
	t.Run("metrics", func(t *testing.T) {
		if n := testutil.ToFloat64(r.m.insecureDelegations); n < 1 {
			t.Errorf("insecure_delegations_total %v", n)
		}
		if n := testutil.ToFloat64(r.m.bogus); n < 3 {
			t.Errorf("bogus_total %v", n)
		}
	})
}

// TestKeyTagCollisionLimit: keys sharing the signature's key tag and
// algorithm (KeyTrap, CVE-2023-50387) are tried at most
// max_key_tag_collisions times per signature.
func TestKeyTagCollisionLimit(t *testing.T) {
	key := &dns.DNSKEY{Hdr: dns.RR_Header{Name: "zone.test.", Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: 3600},
		Flags: 257, Protocol: 3, Algorithm: dns.ECDSAP256SHA256}
	priv, err := key.Generate(256)
	if err != nil {
		t.Fatal(err)
	}
	rrset := []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "www.zone.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: []byte{192, 0, 2, 1}}}
	now := time.Now()
	sig := &dns.RRSIG{Hdr: dns.RR_Header{Name: "www.zone.test.", Rrtype: dns.TypeRRSIG, Class: dns.ClassINET, Ttl: 300},
		KeyTag: key.KeyTag(), SignerName: "zone.test.", Algorithm: key.Algorithm,
		Inception: uint32(now.Add(-time.Hour).Unix()), Expiration: uint32(now.Add(time.Hour).Unix())}
	if err := sig.Sign(priv.(crypto.Signer), rrset); err != nil {
		t.Fatal(err)
	}
	// Fakes with the same tag: swapping two public-key bytes of the same
	// parity keeps the key tag's checksum and breaks the key.
	pub, err := base64.StdEncoding.DecodeString(key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	var fakes []dns.RR
	for j := 0; j+2 < len(pub) && len(fakes) < 5; j++ {
		if pub[j] == pub[j+2] {
			continue
		}
		b := append([]byte(nil), pub...)
		b[j], b[j+2] = b[j+2], b[j]
		f := *key
		f.PublicKey = base64.StdEncoding.EncodeToString(b)
		if f.KeyTag() != key.KeyTag() {
			t.Fatalf("fake key tag %d, want %d", f.KeyTag(), key.KeyTag())
		}
		fakes = append(fakes, &f)
	}
	s, err := New(Config{Listen: "127.0.0.1:0", RootHints: []string{"127.0.0.1"}, MaxKeyTagCollisions: 4}, service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		keys   []dns.RR
		state  security
		checks int
	}{
		{"real key first", append([]dns.RR{key}, fakes...), secSecure, 1},
		{"real key fourth", append(append([]dns.RR(nil), fakes[:3]...), key), secSecure, 4},
		{"real key beyond the limit", append(append([]dns.RR(nil), fakes...), key), secBogus, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tk := &task{}
			v := s.verifySet(tk, rrset, []*dns.RRSIG{sig}, tc.keys)
			if v.state != tc.state || tk.sigChecks != tc.checks {
				t.Errorf("state %v after %d checks, want %v after %d", v.state, tk.sigChecks, tc.state, tc.checks)
			}
		})
	}
}

// TestUnsupportedAlgorithmOrDigestEDE: a zone whose DS records all use an
// unsupported algorithm or digest type is insecure (RFC 4035 5.2): its
// answers come without AD and carry EDE 1 or 2 (RFC 8914).
func TestUnsupportedAlgorithmOrDigestEDE(t *testing.T) {
	_, cfg := signedTree(t, 0, []signedZone{
		{origin: "alg.test.", host: 3, dsEdit: func(ds *dns.DS) { ds.Algorithm = dns.PRIVATEDNS }},
		{origin: "digest.test.", host: 4, dsEdit: func(ds *dns.DS) { ds.DigestType = dns.GOST94 }},
		{origin: "sec.test.", host: 5},
	})
	r := startValidating(t, cfg)
	tests := []struct {
		name string
		ede  uint16 // 0: none
		ad   bool
	}{
		{"www.alg.test", dns.ExtendedErrorCodeUnsupportedDNSKEYAlgorithm, false},
		{"www.digest.test", dns.ExtendedErrorCodeUnsupportedDSDigestType, false},
		{"nope.digest.test", dns.ExtendedErrorCodeUnsupportedDSDigestType, false},
		{"www.sec.test", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i := range 2 { // resolved, then from the cache
				m := ask(t, r.addr, tc.name, dns.TypeA, withDO)
				if m.Rcode == dns.RcodeServerFailure || m.AuthenticatedData != tc.ad {
					t.Fatalf("try %d: rcode %s AD %v, want an answer with AD %v", i, dns.RcodeToString[m.Rcode], m.AuthenticatedData, tc.ad)
				}
				e := edeOf(m)
				switch {
				case tc.ede == 0 && e != nil:
					t.Errorf("try %d: unexpected EDE %v", i, e)
				case tc.ede != 0 && (e == nil || e.InfoCode != tc.ede):
					t.Errorf("try %d: EDE %v, want code %d", i, e, tc.ede)
				}
			}
		})
	}
}
