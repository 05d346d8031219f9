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

// TestDDoSQuick: during a 6 s flood of random names at the root and the
// TLD, at least 90% of the attack's datagrams are dropped at their links;
// the warm resolvers answer at least 90% of their clients' queries while
// their TTLs (capped at 4 s) last; after, the one with serve-stale still
// answers at least 90% (stale) and the one without at most 20%, at least
// half less; the cold ones (emptied before each query), with serve-stale
// or not, answer at most 20%. Lateness only helps: the windows before and
// after the TTLs run out are bounded conservatively, the warm answers
// come from the resolvers' own caches, and a cold resolver's query gets
// through only when the flood is quiet for the 28 ms its datagram needs.
func TestDDoSQuick(t *testing.T) {
	env, out := quickEnvDDoS(t)
	ctx := testkit.Context(t, 90*time.Second)
	res, err := DDoS().Run(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out)
	if len(res.Rows) != 7 {
		t.Fatalf("%d rows, want 7", len(res.Rows))
	}
	if err := res.Check(); err != nil {
		t.Error(err)
	}
	// Serve-stale is what keeps the warm resolver answering once its
	// TTLs ran out: the two warm ones differ by at least half.
	if stale, nostale := res.Rows[2].Measured, res.Rows[4].Measured; stale-nostale < 0.5 {
		t.Errorf("after the TTLs ran out: warm with serve-stale answered %.2f, without %.2f", stale, nostale)
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
