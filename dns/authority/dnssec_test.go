package authority

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

func signedServer(t *testing.T, nsec3 bool, alg string) *Server {
	t.Helper()
	return newTestServer(t, Config{Zones: []ZoneConfig{{
		Origin: "example.com.", File: "testdata/example.com.zone",
		Sign: &SignConfig{KeyDir: t.TempDir(), NSEC3: nsec3, Algorithm: alg},
	}}})
}

// verify checks every RRSIG in the sections against the zone's DNSKEYs.
func verify(t *testing.T, s *Server, m *dns.Msg) int {
	t.Helper()
	keys := map[uint16]*dns.DNSKEY{}
	for _, rr := range s.Zone("example.com").Node("example.com.").Set(dns.TypeDNSKEY).RRs {
		k := rr.(*dns.DNSKEY)
		keys[k.KeyTag()] = k
	}
	n := 0
	for _, sec := range [][]dns.RR{m.Answer, m.Ns} {
		for _, rr := range sec {
			sig, ok := rr.(*dns.RRSIG)
			if !ok {
				continue
			}
			var set []dns.RR
			for _, x := range sec {
				if x.Header().Rrtype == sig.TypeCovered && strings.EqualFold(x.Header().Name, sig.Hdr.Name) {
					set = append(set, x)
				}
			}
			if err := sig.Verify(keys[sig.KeyTag], set); err != nil {
				t.Errorf("RRSIG %s %s does not verify: %v", sig.Hdr.Name, dns.TypeToString[sig.TypeCovered], err)
			}
			n++
		}
	}
	return n
}

func TestSignedAnswers(t *testing.T) {
	for _, mode := range []struct {
		name  string
		nsec3 bool
		alg   string
	}{{"nsec ecdsa", false, ""}, {"nsec3 ed25519", true, "ed25519"}} {
		t.Run(mode.name, func(t *testing.T) {
			s := signedServer(t, mode.nsec3, mode.alg)
			denial := "NSEC"
			if mode.nsec3 {
				denial = "NSEC3"
			}
			tests := []struct {
				qname    string
				qtype    uint16
				rcode    int
				answer   string
				nsHas    string
				minSigs  int
				wildcard bool
			}{
				{qname: "www.example.com.", qtype: dns.TypeA, answer: "A,A,A,RRSIG", minSigs: 1},
				{qname: "example.com.", qtype: dns.TypeDNSKEY, answer: "DNSKEY,DNSKEY,RRSIG", minSigs: 1},
				{qname: "nope.example.com.", qtype: dns.TypeA, rcode: dns.RcodeNameError, nsHas: denial, minSigs: 2},
				{qname: "www.example.com.", qtype: dns.TypeTXT, nsHas: denial, minSigs: 2},
				{qname: "x.wild.example.com.", qtype: dns.TypeTXT, answer: "TXT,RRSIG", nsHas: denial, minSigs: 2, wildcard: true},
				{qname: "b.c.example.com.", qtype: dns.TypeTXT, nsHas: denial, minSigs: 2},
				{qname: "www.sub.example.com.", qtype: dns.TypeA, nsHas: denial, minSigs: 1},
			}
			for _, tc := range tests {
				t.Run(tc.qname+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
					q := new(dns.Msg)
					q.SetQuestion(tc.qname, tc.qtype)
					q.SetEdns0(4096, true)
					m := s.Handle(q, client, true)
					if m.Rcode != tc.rcode {
						t.Errorf("rcode %s", dns.RcodeToString[m.Rcode])
					}
					if got := types(m.Answer); got != tc.answer {
						t.Errorf("answer %q, want %q", got, tc.answer)
					}
					if tc.nsHas != "" && !strings.Contains(types(m.Ns), tc.nsHas) {
						t.Errorf("authority %q lacks %s", types(m.Ns), tc.nsHas)
					}
					if n := verify(t, s, m); n < tc.minSigs {
						t.Errorf("%d signatures, want at least %d: %v", n, tc.minSigs, rrString(append(m.Answer, m.Ns...)))
					}
					if tc.wildcard {
						sig := m.Answer[1].(*dns.RRSIG)
						if sig.Labels != 3 {
							t.Errorf("wildcard RRSIG labels %d, want 3", sig.Labels)
						}
					}
				})
			}
			t.Run("RRSIG question gets the name's signatures", func(t *testing.T) {
				q := new(dns.Msg)
				q.SetQuestion("www.example.com.", dns.TypeRRSIG)
				q.SetEdns0(4096, true)
				m := s.Handle(q, client, true)
				if m.Rcode != dns.RcodeSuccess || len(m.Answer) == 0 {
					t.Fatalf("rcode %s answer %q, want the name's RRSIGs", dns.RcodeToString[m.Rcode], types(m.Answer))
				}
				coversA := false
				for _, rr := range m.Answer {
					sig, ok := rr.(*dns.RRSIG)
					if !ok || sig.Header().Name != "www.example.com." {
						t.Fatalf("answer holds %v, want only RRSIGs at the name", rr)
					}
					coversA = coversA || sig.TypeCovered == dns.TypeA
				}
				if !coversA {
					t.Errorf("no signature over the A set: %v", rrString(m.Answer))
				}
			})
			t.Run("no DO no signatures", func(t *testing.T) {
				q := new(dns.Msg)
				q.SetQuestion("www.example.com.", dns.TypeA)
				if m := s.Handle(q, client, false); types(m.Answer) != "A,A,A" {
					t.Errorf("answer %s", types(m.Answer))
				}
			})
		})
	}
}

// TestSignedZoneVerifies has ldns-verify-zone check the whole zone we
// signed: signatures, NSEC/NSEC3 chain, delegations.
func TestSignedZoneVerifies(t *testing.T) {
	peer(t, "ldns-verify-zone")
	for _, nsec3 := range []bool{false, true} {
		s := signedServer(t, nsec3, "")
		var b strings.Builder
		for _, rr := range s.Zone("example.com").Records() {
			b.WriteString(rr.String() + "\n")
		}
		f := filepath.Join(t.TempDir(), "signed.zone")
		if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("ldns-verify-zone", f).CombinedOutput()
		if err != nil {
			t.Fatalf("nsec3=%v: ldns-verify-zone: %v\n%s", nsec3, err, out)
		}
	}
}

// TestPreSigned serves a zone signed by ldns-signzone at test time.
func TestPreSigned(t *testing.T) {
	peer(t, "ldns-signzone")
	peer(t, "ldns-keygen")
	dir := t.TempDir()
	zf := filepath.Join(dir, "example.com.zone")
	data, _ := os.ReadFile("testdata/example.com.zone")
	os.WriteFile(zf, data, 0o644)
	keygen := func(args ...string) string {
		cmd := exec.Command("ldns-keygen", args...)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("ldns-keygen: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	ksk := keygen("-a", "ECDSAP256SHA256", "-k", "example.com")
	zsk := keygen("-a", "ECDSAP256SHA256", "example.com")
	for _, nsec3 := range []bool{false, true} {
		args := []string{"-f", zf + ".signed"}
		if nsec3 {
			args = append(args, "-n", "-t", "0")
		}
		args = append(args, zf, filepath.Join(dir, ksk), filepath.Join(dir, zsk))
		if out, err := exec.Command("ldns-signzone", args...).CombinedOutput(); err != nil {
			t.Fatalf("ldns-signzone: %v\n%s", err, out)
		}
		s := newTestServer(t, Config{Zones: []ZoneConfig{{Origin: "example.com.", File: zf + ".signed"}}})
		for _, q := range []struct {
			name  string
			qtype uint16
			rcode int
		}{{"www.example.com.", dns.TypeA, 0}, {"nope.example.com.", dns.TypeA, dns.RcodeNameError}, {"www.example.com.", dns.TypeMX, 0}, {"x.wild.example.com.", dns.TypeTXT, 0}} {
			m := new(dns.Msg)
			m.SetQuestion(q.name, q.qtype)
			m.SetEdns0(4096, true)
			r := s.Handle(m, client, true)
			if r.Rcode != q.rcode {
				t.Errorf("nsec3=%v %s: rcode %s", nsec3, q.name, dns.RcodeToString[r.Rcode])
			}
			if n := verify(t, s, r); n == 0 {
				t.Errorf("nsec3=%v %s: no signatures: %v", nsec3, q.name, rrString(append(r.Answer, r.Ns...)))
			}
		}
	}
}

func TestResignBeforeExpiry(t *testing.T) {
	now := time.Now()
	clock := now
	s, err := New(Config{Addr: "127.0.0.1:0", Zones: []ZoneConfig{{
		Origin: "example.com.", File: "testdata/example.com.zone",
		Sign: &SignConfig{KeyDir: t.TempDir(), Validity: config.Duration(time.Hour)},
	}}}, service.Deps{Logger: testkit.Logger(t), Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	first := s.Zone("example.com").Expiry()
	clock = now.Add(30 * time.Minute) // 30 min left: more than a quarter
	s.resignDue()
	if got := s.Zone("example.com").Expiry(); !got.Equal(first) {
		t.Fatalf("re-signed too early: %v -> %v", first, got)
	}
	clock = now.Add(50 * time.Minute) // 10 min left: under a quarter
	s.resignDue()
	if got := s.Zone("example.com").Expiry(); !got.After(first) {
		t.Fatalf("not re-signed: expiry still %v", got)
	}
}
