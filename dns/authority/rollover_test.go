package authority

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/zone"
	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

// rollVersion is one version of the signed zone as served, from..to.
type rollVersion struct {
	from, to  time.Time
	serial    uint32
	published []uint16 // ZSK tags in the DNSKEY set
	signing   []uint16 // tags of the keys signing the non-DNSKEY sets
}

// zskState reads the ZSKs published in z and the keys that sign its data.
func zskState(t *testing.T, z *zone.Zone) (published, signing []uint16) {
	t.Helper()
	for _, rr := range z.Node(z.Origin).Set(dns.TypeDNSKEY).RRs {
		if k := rr.(*dns.DNSKEY); k.Flags&dns.SEP == 0 {
			published = append(published, k.KeyTag())
		}
	}
	for _, rr := range z.Records() {
		if sig, ok := rr.(*dns.RRSIG); ok && sig.TypeCovered != dns.TypeDNSKEY && !slices.Contains(signing, sig.KeyTag) {
			signing = append(signing, sig.KeyTag)
		}
	}
	slices.Sort(published)
	slices.Sort(signing)
	return published, signing
}

// verifyAnswers queries s with DO and checks that every RRSIG in the
// answers is made by a key of the zone's DNSKEY set and verifies.
func verifyAnswers(t *testing.T, s *Server, when time.Time) {
	t.Helper()
	keys := map[uint16]*dns.DNSKEY{}
	for _, rr := range s.Zone("example.com").Node("example.com.").Set(dns.TypeDNSKEY).RRs {
		k := rr.(*dns.DNSKEY)
		keys[k.KeyTag()] = k
	}
	n := 0
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"www.example.com.", dns.TypeA}, {"example.com.", dns.TypeDNSKEY}, {"example.com.", dns.TypeSOA}, {"nope.example.com.", dns.TypeA}, {"www.example.com.", dns.TypeTXT}} {
		req := new(dns.Msg)
		req.SetQuestion(q.name, q.qtype)
		req.SetEdns0(1232, true)
		m := s.Handle(req, netip.MustParseAddrPort("127.0.0.1:5353"), true)
		for _, sec := range [][]dns.RR{m.Answer, m.Ns} {
			for _, rr := range sec {
				sig, ok := rr.(*dns.RRSIG)
				if !ok {
					continue
				}
				k := keys[sig.KeyTag]
				if k == nil {
					t.Fatalf("%s: RRSIG %s %s by key %d, which is not published", when, sig.Hdr.Name, dns.TypeToString[sig.TypeCovered], sig.KeyTag)
				}
				var set []dns.RR
				for _, x := range sec {
					if x.Header().Rrtype == sig.TypeCovered && dns.CanonicalName(x.Header().Name) == dns.CanonicalName(sig.Hdr.Name) {
						set = append(set, x)
					}
				}
				if err := sig.Verify(k, set); err != nil {
					t.Fatalf("%s: RRSIG %s %s does not verify: %v", when, sig.Hdr.Name, dns.TypeToString[sig.TypeCovered], err)
				}
				if !sig.ValidityPeriod(when) {
					t.Fatalf("%s: RRSIG %s %s not valid now", when, sig.Hdr.Name, dns.TypeToString[sig.TypeCovered])
				}
				n++
			}
		}
	}
	if n < 5 {
		t.Fatalf("%s: only %d signatures in the answers", when, n)
	}
}

// TestZSKRollover walks a pre-publish ZSK rollover with a fake clock,
// restarting the server in the middle, and checks each stage's DNSKEY set
// and signatures, that every answer verifies with the published keys, and
// that no validator cache (DNSKEY set cached for its TTL, signatures for
// the zone's largest TTL) ever holds a signature whose key is not in the
// DNSKEY set it holds.
func TestZSKRollover(t *testing.T) {
	const (
		lifetime = 30 * 24 * time.Hour
		prop     = 5 * time.Minute
		ttl      = time.Hour // the zone's $TTL: DNSKEY TTL and largest TTL
		step     = 10 * time.Minute
	)
	clock := testkit.NewClock(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	start := clock.Now()
	keyDir, stateDir := t.TempDir(), t.TempDir()
	cfg := Config{Addr: "127.0.0.1:0", StateDir: stateDir, Zones: []ZoneConfig{{
		Origin: "example.com.", File: "testdata/example.com.zone",
		Sign: &SignConfig{KeyDir: keyDir, ZSKLifetime: config.Duration(lifetime), PropagationDelay: config.Duration(prop)},
	}}}
	newServer := func() *Server {
		s, err := New(cfg, service.Deps{Logger: testkit.Logger(t), Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := newServer()

	var versions []rollVersion
	observe := func() {
		z := s.Zone("example.com")
		now := clock.Now()
		if len(versions) > 0 && versions[len(versions)-1].serial == z.SOA.Serial {
			versions[len(versions)-1].to = now
			return
		}
		if len(versions) > 0 && !serialLess(versions[len(versions)-1].serial, z.SOA.Serial) {
			t.Fatalf("%s: serial went from %d to %d", now, versions[len(versions)-1].serial, z.SOA.Serial)
		}
		pub, sig := zskState(t, z)
		versions = append(versions, rollVersion{from: now, to: now, serial: z.SOA.Serial, published: pub, signing: sig})
		verifyAnswers(t, s, now)
	}
	observe()
	restarted := false
	for clock.Now().Before(start.Add(lifetime + 2*ttl + 2*prop + 2*step)) {
		clock.Advance(step)
		if !restarted && clock.Now().After(start.Add(lifetime-ttl/2)) {
			// In the middle of the pre-publish stage: a restart carries on.
			before := s.Zone("example.com").SOA.Serial
			pubBefore, _ := zskState(t, s.Zone("example.com"))
			s = newServer()
			restarted = true
			pub, _ := zskState(t, s.Zone("example.com"))
			if !slices.Equal(pub, pubBefore) || len(pub) != 2 {
				t.Fatalf("after restart the ZSKs are %v, before %v", pub, pubBefore)
			}
			if !serialLess(before, s.Zone("example.com").SOA.Serial) {
				t.Fatalf("serial after restart %d, before %d", s.Zone("example.com").SOA.Serial, before)
			}
		}
		s.resignDue()
		observe()
	}

	// The stages, in order, with the serial bumped at each: one ZSK; the
	// new one published; the new one signing; the old one removed.
	type stage struct{ published, signing []uint16 }
	var stages []stage
	var stageStart []time.Time
	for _, v := range versions {
		st := stage{v.published, v.signing}
		if len(stages) > 0 && slices.Equal(stages[len(stages)-1].published, st.published) && slices.Equal(stages[len(stages)-1].signing, st.signing) {
			continue
		}
		stages = append(stages, st)
		stageStart = append(stageStart, v.from)
	}
	if len(stages) != 4 {
		t.Fatalf("want 4 stages, got %d: %+v", len(stages), stages)
	}
	z1 := stages[0].signing
	if len(z1) != 1 || !slices.Equal(stages[0].published, z1) {
		t.Fatalf("stage 1: published %v, signing %v", stages[0].published, stages[0].signing)
	}
	var z2 []uint16
	for _, tag := range stages[1].published {
		if tag != z1[0] {
			z2 = append(z2, tag)
		}
	}
	if len(z2) != 1 || len(stages[1].published) != 2 || !slices.Equal(stages[1].signing, z1) {
		t.Fatalf("stage 2 (pre-publish): published %v, signing %v", stages[1].published, stages[1].signing)
	}
	if !slices.Equal(stages[2].published, stages[1].published) || !slices.Equal(stages[2].signing, z2) {
		t.Fatalf("stage 3 (new ZSK signs): published %v, signing %v", stages[2].published, stages[2].signing)
	}
	if !slices.Equal(stages[3].published, z2) || !slices.Equal(stages[3].signing, z2) {
		t.Fatalf("stage 4 (old ZSK removed): published %v, signing %v", stages[3].published, stages[3].signing)
	}
	// Timing: pre-publish when the lifetime less the publish wait is up;
	// switch after the DNSKEY TTL and propagation; removal after the
	// largest TTL and propagation.
	within := func(name string, got, want time.Time) {
		if got.Before(want) || got.After(want.Add(step)) {
			t.Errorf("%s at %s, want %s (+%s)", name, got, want, step)
		}
	}
	within("pre-publish", stageStart[1], start.Add(lifetime-ttl-prop))
	within("switch", stageStart[2], stageStart[1].Add(ttl+prop))
	within("removal", stageStart[3], stageStart[2].Add(ttl+prop))

	// Validator caches: a DNSKEY set fetched from version a is held until
	// a.to+ttl, signatures from version b until b.to+ttl; whenever both
	// can be held together, b's signing keys must be in a's DNSKEY set.
	for _, a := range versions {
		for _, b := range versions {
			if a.from.Before(b.to.Add(ttl)) && b.from.Before(a.to.Add(ttl)) {
				for _, tag := range b.signing {
					if !slices.Contains(a.published, tag) {
						t.Errorf("a DNSKEY set of serial %d (%s..%s) can be cached with signatures of serial %d (%s..%s) by key %d it lacks",
							a.serial, a.from, a.to, b.serial, b.from, b.to, tag)
					}
				}
			}
		}
	}

	// The key directory has both ZSKs' timing for the next restart.
	st, err := zone.OpenKeyStore(keyDir, "example.com.", "")
	if err != nil {
		t.Fatal(err)
	}
	var summary []string
	for _, k := range st.All() {
		summary = append(summary, fmt.Sprintf("%d ksk=%v %+v", k.DNSKEY.KeyTag(), k.KSK(), k.Timing))
		if k.DNSKEY.KeyTag() == z1[0] && (k.Timing.Removed.IsZero() || k.Timing.Removed.After(clock.Now())) {
			t.Errorf("old ZSK not recorded as removed: %+v", k.Timing)
		}
	}
	if len(summary) != 3 {
		t.Errorf("key store: %v", summary)
	}
}
