package dnsexp

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
)

// TestPoisoningQuick: Kaminsky's attack poisons the lab resolver when its
// IDs are sequential and its port fixed (every race), and when only its
// 16-bit IDs are random (within the time box, at the rate K/65536 within
// the 99% interval); with the bailiwick checks the forged reply still
// wins the race but nothing is poisoned; with DNSSEC validation the
// forged answer and the hijacked zone both come back as SERVFAIL, never
// as the attacker's address.
func TestPoisoningQuick(t *testing.T) {
	env, out := quickEnvDDoS(t)
	res, err := Poisoning().Run(testkit.Context(t, 150*time.Second), env)
	t.Logf("\n%s", out)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Check(); err != nil {
		t.Error(err)
	}
	find := func(prefix string) float64 {
		for _, r := range res.Rows {
			if strings.HasPrefix(r.Case, prefix) {
				return r.Measured
			}
		}
		t.Fatalf("no row %q", prefix)
		return 0
	}
	if p := find("no defence: poisoned"); p < 0.99 {
		t.Errorf("no defence: poisoned in %.0f%% of races, want every race", p*100)
	}
	if p := find("random IDs: poisoned"); p == 0 {
		t.Errorf("16-bit random IDs alone were never poisoned")
	}
	if p := find("bailiwick: poisoned"); p != 0 {
		t.Errorf("bailiwick checks on: poisoned in %.0f%% of races", p*100)
	}
	if w := find("bailiwick: forged reply won"); w < 0.99 {
		t.Errorf("bailiwick checks on: the forged reply won %.0f%% of races, want all (the check acts after the race)", w*100)
	}
	if p := find("DNSSEC: poisoned"); p != 0 {
		t.Errorf("DNSSEC on: poisoned in %.0f%% of races", p*100)
	}
	if s := find("DNSSEC: a won race gave clients SERVFAIL"); s < 0.99 {
		t.Errorf("DNSSEC on: %.0f%% of won races gave SERVFAIL, want all", s*100)
	}
	for _, p := range res.Plots {
		if st, err := os.Stat(p); err != nil || st.Size() < 500 {
			t.Errorf("plot %s: %v", p, err)
		}
	}
}
