package experiment

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	labexp "github.com/applayer/applayer/lab/experiment"
)

// TestFreeRidersQuick runs `lab experiment free-riders --quick` (a 4 MiB
// file, a 384 KiB/s seed, 12 cooperative peers at 256 KiB/s and one free
// rider) and asserts the mechanism the chapter describes: with tit-for-tat
// the cooperative peers' regular slots (given for their rate) almost never
// go to the free rider (at most a quarter of its share without
// tit-for-tat, which must be at least 10% of rounds), so what it gets from
// peers comes through optimistic unchokes, which the output shows from the
// trace. The outcome in time is reported, not asserted: measured here the
// free rider's time over the cooperative mean with tit-for-tat ranged from
// 0.86 to 1.29 between runs (1.17-1.29 on a loaded machine, 0.86-1.08 on
// a quiet one), against 0.91-0.97 without, because in this swarm the last
// pieces' availability, not the peers' upload, sets everyone's finish.
func TestFreeRidersQuick(t *testing.T) {
	var out bytes.Buffer
	env := labexp.Env{Quick: true, Seed: 7, Out: t.TempDir(), Stdout: &out, Deps: service.Deps{Logger: testkit.Logger(t)}}
	ctx := testkit.Context(t, 3*time.Minute)
	start := time.Now()
	res, err := FreeRidersExperiment().Run(ctx, env)
	t.Logf("%v\n%s", time.Since(start), out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 4 {
		t.Fatalf("rows %+v", res.Rows)
	}
	on, off := res.Rows[0], res.Rows[1]
	t.Logf("free rider / cooperative mean: %.2f with tit-for-tat (%.1fs / %.1fs), %.2f without", on.Measured/on.Formula, on.Measured, on.Formula, off.Measured/off.Formula)
	regOn, regOff := res.Rows[2].Measured, res.Rows[3].Measured
	if regOff < 0.10 || regOn > regOff/4 {
		t.Errorf("free rider's share of regular slots: %.3f with tit-for-tat, %.3f without; want at most a quarter of the share without, which must be >= 0.10", regOn, regOff)
	}
	for _, want := range []string{"optimistic 127.", "leeching: by their upload to us", "FREE RIDER / MEAN"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, p := range res.Plots {
		if st, err := os.Stat(p); err != nil || st.Size() < 1000 {
			t.Errorf("plot %s: %v", p, err)
		}
	}
}
