package dnsexp

import (
	"bytes"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/applayer/applayer/dns/authority"
	"github.com/applayer/applayer/dns/resolver"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/lab/experiment"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// TestDNSCachingQuick: a cold resolution of gaia.cs.umass.edu walks the
// hierarchy (one query to the root) and takes the sum of the round trips
// to the servers asked, within 10% (+10 ms); warm, the same name costs no
// query and a sibling in a cached zone asks the root nothing.
func TestDNSCachingQuick(t *testing.T) {
	var out bytes.Buffer
	env := experiment.Env{Quick: true, Seed: 1, Out: t.TempDir(), Stdout: &out,
		Kinds: lab.NewKinds(slices.Concat(authority.LabKinds(), resolver.LabKinds())...),
		Deps:  service.Deps{}.Defaults()}
	res, err := Caching().Run(testkit.Context(t, 60*time.Second), env)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out.String())
	if err := res.Check(); err != nil {
		t.Error(err)
	}
	if len(res.Rows) != 6 {
		t.Fatalf("%d rows, want latency and root queries for 3 queries", len(res.Rows))
	}
	if cold, warm := res.Rows[0].Measured, res.Rows[2].Measured; warm > cold/5 {
		t.Errorf("warm resolution %.1f ms is not much faster than cold %.1f ms", warm, cold)
	}
	for _, p := range res.Plots {
		if st, err := os.Stat(p); err != nil || st.Size() < 500 {
			t.Errorf("plot %s missing or empty: %v", p, err)
		}
	}
}

// TestDDoSQuick: during a 4 s flood of random names at the root and the
// TLD, at least 90% of the attack's datagrams are dropped at their links
// and the warm resolver still answers at least 90% of its clients' queries
// for names it has cached. (The cold resolver's share is reported only: it
// recovers as soon as one referral each gets through.)
func TestDDoSQuick(t *testing.T) {
	env, out := quickEnvDDoS(t)
	ctx := testkit.Context(t, 60*time.Second)
	res, err := DDoS().Run(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out)
	if len(res.Rows) != 4 {
		t.Errorf("%d rows, want 4", len(res.Rows))
	}
	if err := res.Check(); err != nil {
		t.Error(err)
	}
	for _, p := range res.Plots {
		if st, err := os.Stat(p); err != nil || st.Size() < 500 {
			t.Errorf("plot %s: %v", p, err)
		}
	}
}

func quickEnvDDoS(t *testing.T) (experiment.Env, *bytes.Buffer) {
	var out bytes.Buffer
	return experiment.Env{Quick: true, Seed: 1, Out: t.TempDir(), Stdout: &out,
		Kinds: lab.NewKinds(slices.Concat(authority.LabKinds(), resolver.LabKinds())...),
		Deps:  service.Deps{}.Defaults()}, &out
}
