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

// TestFreeRidersQuick runs `lab experiment free-riders --quick` (a 2 MiB
// file, a 256 KiB/s seed rotating its slots round robin, 12 cooperative
// peers at 96 KiB/s that leave once complete, and one free rider: a swarm
// whose peers' upload, not the seed, binds) and asserts the chapter's
// lesson within tolerances that held in 27 runs under -race at load 6-20
// (docs/EXPERIMENTS.md):
//   - tit-for-tat sets the free rider back: its time over the cooperative
//     mean is at least 0.03 higher with tit-for-tat than without
//     (measured 0.05-0.40 higher);
//   - without tit-for-tat it is among the others: 0.75-1.15 of the
//     cooperative mean (measured 0.78-1.06);
//   - the mechanism: in the cooperative peers' contested rounds (someone
//     had to be left out) their regular slots, given for rate, go to the
//     free rider at most a third as often as without tit-for-tat (where
//     they go at random, at least 10% of rounds; measured 0-0.10 against
//     0.29-0.37), so what it gets from peers comes through optimistic
//     unchokes, which the output shows from the trace.
//
// "The free rider finishes last" is printed (PLACE), not asserted: in
// those runs it was last in 15 of 27 and last or next to last in 24 (its
// time 0.97-1.33 of the cooperative mean with tit-for-tat); the slowest
// cooperative peer, left with the seed alone once the others have gone,
// sometimes finishes after it.
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
	if len(res.Rows) != 8 {
		t.Fatalf("rows %+v", res.Rows)
	}
	row := func(prefix string, tft bool) labexp.Row {
		t.Helper()
		c := prefix + ", tit-for-tat " + onOff(tft)
		for _, r := range res.Rows {
			if r.Case == c {
				return r
			}
		}
		t.Fatalf("no row %q in %+v", c, res.Rows)
		return labexp.Row{}
	}
	const (
		mean    = "free rider's time vs the cooperative mean"
		slowest = "free rider's time vs the slowest cooperative peer's"
		behind  = "free rider's fraction of the file when the first cooperative peer completed vs theirs"
		share   = "free rider's share of regular slots in contested rounds"
	)
	on, off := row(mean, true), row(mean, false)
	ratioOn, ratioOff := on.Measured/on.Formula, off.Measured/off.Formula
	last := row(slowest, true)
	t.Logf("free rider / cooperative mean: %.2f with tit-for-tat (%.1fs / %.1fs; the slowest cooperative peer %.1fs), %.2f without",
		ratioOn, on.Measured, on.Formula, last.Formula, ratioOff)
	if ratioOn < ratioOff+0.03 {
		t.Errorf("free rider / cooperative mean: %.2f with tit-for-tat, %.2f without; want at least 0.03 more with", ratioOn, ratioOff)
	}
	if ratioOff < 0.75 || ratioOff > 1.15 {
		t.Errorf("without tit-for-tat the free rider took %.2f of the cooperative mean: want 0.75-1.15 (among the others)", ratioOff)
	}
	regOn, regOff := row(share, true).Measured, row(share, false).Measured
	if regOff < 0.10 || regOn > regOff/3 {
		t.Errorf("free rider's share of regular slots in contested rounds: %.3f with tit-for-tat, %.3f without; want at most a third of the share without, which must be >= 0.10", regOn, regOff)
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
