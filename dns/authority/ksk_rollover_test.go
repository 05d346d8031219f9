package authority

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

// kskVersion is one version of the DNSKEY set as served, from..to.
type kskVersion struct {
	from, to time.Time
	serial   uint32
	ksks     []uint16 // KSK tags in the DNSKEY set
	signers  []uint16 // tags of the RRSIGs over the DNSKEY set
	answer   *dns.Msg // the DNSKEY answer (with DO)
}

// validatesWith reports whether a validator holding ds accepts the DNSKEY
// set of m: a DNSKEY of the set matches ds and an RRSIG by it verifies.
func validatesWith(m *dns.Msg, ds *dns.DS, when time.Time) bool {
	var set []dns.RR
	for _, rr := range m.Answer {
		if rr.Header().Rrtype == dns.TypeDNSKEY {
			set = append(set, rr)
		}
	}
	for _, rr := range set {
		k := rr.(*dns.DNSKEY)
		if k.Flags&dns.SEP == 0 || !strings.EqualFold(k.ToDS(dns.SHA256).Digest, ds.Digest) {
			continue
		}
		for _, x := range m.Answer {
			sig, ok := x.(*dns.RRSIG)
			if ok && sig.TypeCovered == dns.TypeDNSKEY && sig.KeyTag == k.KeyTag() && sig.Verify(k, set) == nil && sig.ValidityPeriod(when) {
				return true
			}
		}
	}
	return false
}

// TestKSKRollover walks a double-signature KSK rollover with a fake clock:
// the new KSK is published and signs the DNSKEY set beside the old one,
// its DS is written for the parent once the new set has reached caches,
// nothing moves on without the operator's confirmation (K<zone>.ds-seen),
// the old KSK stops signing the parent's DS TTL + propagation after it and
// leaves the DNSKEY set a DNSKEY TTL later. The server restarts while it
// waits and after the confirmation. A validator holding the old DS (until
// it can have left caches) or the new DS (once the parent publishes it)
// validates every DNSKEY set it can hold.
func TestKSKRollover(t *testing.T) {
	const (
		lifetime = 10 * 24 * time.Hour
		prop     = 5 * time.Minute
		ttl      = time.Hour // DNSKEY TTL and the zone's largest TTL
		dsTTL    = 2 * time.Hour
		step     = 10 * time.Minute
		wait     = 2 * 24 * time.Hour // the operator's delay
	)
	clock := testkit.NewClock(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	start := clock.Now()
	keyDir, stateDir := t.TempDir(), t.TempDir()
	cfg := Config{Addr: "127.0.0.1:0", StateDir: stateDir, Zones: []ZoneConfig{{
		Origin: "example.com.", File: "testdata/example.com.zone",
		Sign: &SignConfig{KeyDir: keyDir, KSKLifetime: config.Duration(lifetime), ParentDSTTL: config.Duration(dsTTL), PropagationDelay: config.Duration(prop)},
	}}}
	newServer := func() *Server {
		s, err := New(cfg, service.Deps{Logger: testkit.Logger(t), Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := newServer()
	oldDS := s.Keys("example.com.").DS()
	oldTag := s.Keys("example.com.").KSK.DNSKEY.KeyTag()
	zskTag := s.Keys("example.com.").ZSK.DNSKEY.KeyTag()

	var versions []kskVersion
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
		req := new(dns.Msg)
		req.SetQuestion("example.com.", dns.TypeDNSKEY)
		req.SetEdns0(1232, true)
		m := s.Handle(req, netip.MustParseAddrPort("127.0.0.1:5353"), true)
		v := kskVersion{from: now, to: now, serial: z.SOA.Serial, answer: m}
		for _, rr := range m.Answer {
			switch rr := rr.(type) {
			case *dns.DNSKEY:
				if rr.Flags&dns.SEP != 0 {
					v.ksks = append(v.ksks, rr.KeyTag())
				}
			case *dns.RRSIG:
				v.signers = append(v.signers, rr.KeyTag)
			}
		}
		slices.Sort(v.ksks)
		slices.Sort(v.signers)
		versions = append(versions, v)
		verifyAnswers(t, s, now)
		if pub, sig := zskState(t, z); !slices.Equal(pub, []uint16{zskTag}) || !slices.Equal(sig, []uint16{zskTag}) {
			t.Fatalf("%s: the ZSK changed: published %v, signing %v", now, pub, sig)
		}
	}
	dsFiles := func() []string {
		f, _ := filepath.Glob(filepath.Join(keyDir, "*.ds"))
		return f
	}
	walk := func(until time.Time, each func()) {
		for clock.Now().Before(until) {
			clock.Advance(step)
			s.resignDue()
			observe()
			if each != nil {
				each()
			}
		}
	}
	observe()

	// Before its lifetime is up, one KSK; then the new one is published and
	// both sign; its DS is written once the new DNSKEY set has reached
	// caches; without confirmation nothing more happens for days, across a
	// restart.
	var written time.Time
	walk(start.Add(lifetime+wait), func() {
		if f := dsFiles(); len(f) > 0 && written.IsZero() {
			written = clock.Now()
		}
	})
	if written.IsZero() {
		t.Fatal("no DS file written for the new KSK")
	}
	last := versions[len(versions)-1]
	if len(last.ksks) != 2 || !slices.Equal(last.signers, last.ksks) {
		t.Fatalf("without confirmation: KSKs %v, DNSKEY signed by %v", last.ksks, last.signers)
	}
	newTag := last.ksks[0]
	if newTag == oldTag {
		newTag = last.ksks[1]
	}
	f := dsFiles()
	b, err := os.ReadFile(f[0])
	if err != nil {
		t.Fatal(err)
	}
	rr, err := dns.NewRR(string(b))
	if err != nil {
		t.Fatalf("DS file %s: %v", f[0], err)
	}
	newDS, ok := rr.(*dns.DS)
	if !ok || newDS.KeyTag != newTag || newDS.DigestType != dns.SHA256 {
		t.Fatalf("DS file has %v, want the DS of key %d", rr, newTag)
	}
	s = newServer() // restart while waiting for the parent
	observe()
	if v := versions[len(versions)-1]; !slices.Equal(v.ksks, last.ksks) || !slices.Equal(v.signers, last.signers) {
		t.Fatalf("after restart: KSKs %v signers %v, before %v %v", v.ksks, v.signers, last.ksks, last.signers)
	}

	// The parent publishes the new DS (the old one withdrawn) and the
	// operator confirms it.
	published := clock.Now()
	seen := filepath.Join(keyDir, "Kexample.com.ds-seen")
	if err := os.WriteFile(seen, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	restarted := false
	walk(published.Add(dsTTL+prop+ttl+prop+3*step), func() {
		if !restarted && clock.Now().After(published.Add(dsTTL/2)) {
			s = newServer() // the confirmation's time is kept
			restarted = true
			observe()
		}
	})
	if _, err := os.Stat(seen); !os.IsNotExist(err) {
		t.Errorf("the confirmation file is still there: %v", err)
	}

	// The four stages, in order.
	type stage struct {
		ksks, signers []uint16
		from          time.Time
	}
	var stages []stage
	for _, v := range versions {
		if n := len(stages); n > 0 && slices.Equal(stages[n-1].ksks, v.ksks) && slices.Equal(stages[n-1].signers, v.signers) {
			continue
		}
		stages = append(stages, stage{v.ksks, v.signers, v.from})
	}
	// The server sees the confirmation at its next check (a tick later).
	noticed := published.Add(step)
	both := []uint16{oldTag, newTag}
	slices.Sort(both)
	want := []stage{
		{[]uint16{oldTag}, []uint16{oldTag}, start},
		{both, both, start.Add(lifetime)},
		{both, []uint16{newTag}, noticed.Add(dsTTL + prop)},
		{[]uint16{newTag}, []uint16{newTag}, noticed.Add(dsTTL + prop + ttl + prop)},
	}
	if len(stages) != len(want) {
		t.Fatalf("want %d stages, got %d: %+v", len(want), len(stages), stages)
	}
	for i, w := range want {
		g := stages[i]
		if !slices.Equal(g.ksks, w.ksks) || !slices.Equal(g.signers, w.signers) {
			t.Errorf("stage %d: KSKs %v signed by %v, want %v by %v", i+1, g.ksks, g.signers, w.ksks, w.signers)
		}
		if g.from.Before(w.from) || g.from.After(w.from.Add(step)) {
			t.Errorf("stage %d at %s, want %s (+%s)", i+1, g.from, w.from, step)
		}
	}
	if w := start.Add(lifetime + ttl + prop); written.Before(w) || written.After(w.Add(step)) {
		t.Errorf("DS file written at %s, want %s (+%s): after the new DNSKEY set reached caches", written, w, step)
	}

	// Validators: a DNSKEY set of version v is held from v.from until
	// v.to+step (the next version) + its TTL. The old DS can be held until
	// the parent's DS TTL + propagation after the switch; the new one
	// from the switch on.
	oldUntil := published.Add(dsTTL + prop)
	for _, v := range versions {
		held := v.to.Add(step + ttl)
		if v.from.Before(oldUntil) && !validatesWith(v.answer, oldDS, v.from) {
			t.Errorf("serial %d (%s..%s): a validator with the old DS cannot validate the DNSKEY set (KSKs %v, signers %v)", v.serial, v.from, v.to, v.ksks, v.signers)
		}
		if held.After(published) && !validatesWith(v.answer, newDS, v.from) {
			t.Errorf("serial %d (%s..%s): a validator with the new DS cannot validate the DNSKEY set (KSKs %v, signers %v)", v.serial, v.from, v.to, v.ksks, v.signers)
		}
	}
}
