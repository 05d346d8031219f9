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
// peers at 96 KiB/s that leave once complete, and one free rider; the
// swarms with and without tit-for-tat at once) and asserts the chapter's
// lesson within tolerances that held in the runs under -race at load 8-18
// listed in docs/EXPERIMENTS.md (all but one, at load 13 with five swarms
// of that session at once, where the seed-bound swarm let the free rider
// keep up):
//   - the free rider finishes last, or, if a cooperative peer that fell
//     behind early (starved by tit-for-tat like the free rider until it
//     has something to trade) is slower, within 10% of its time
//     (measured: last in most runs, else 0.92-1.0 of the slowest);
//   - with tit-for-tat it takes at least the cooperative mean (measured
//     1.03-1.26); without, it is among the others: 0.75-1.15 of the mean
//     (measured 0.86-1.09). With was more than without in all runs but
//     two, in which the swarm ran seed-bound (it had 89% and 99% when the
//     first cooperative peer finished), so the difference is printed, and
//     the mechanism below is asserted instead;
//   - the mechanism: in the cooperative peers' contested rounds (someone
//     had to be left out) their regular slots, given for rate, go to the
//     free rider at most half as often as without tit-for-tat (where
//     they go at random, at least 10% of rounds; measured 0-0.39 of
//     it: a slot with tit-for-tat is a tie among peers that never sent
//     the chooser anything), so what it gets from peers comes through
//     optimistic unchokes, which the output shows from the trace.
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
	if len(res.Rows) != 10 {
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
		place   = "free rider's place by completion time (1: first)"
	)
	on, off := row(mean, true), row(mean, false)
	ratioOn, ratioOff := on.Measured/on.Formula, off.Measured/off.Formula
	last := row(slowest, true)
	t.Logf("free rider / cooperative mean: %.2f with tit-for-tat (%.1fs / %.1fs; the slowest cooperative peer %.1fs), %.2f without",
		ratioOn, on.Measured, on.Formula, last.Formula, ratioOff)
	// The free rider finishes last, within the stated tolerance: if a
	// cooperative peer is slower, by less than 10% of its time.
	pl := row(place, true)
	t.Logf("free rider's place with tit-for-tat: %.0f of %.0f (%.1fs; the slowest cooperative peer %.1fs)", pl.Measured, pl.Formula, on.Measured, last.Formula)
	if on.Measured < 0.9*last.Formula {
		t.Errorf("with tit-for-tat the free rider finished %.0f of %.0f in %.1fs, the slowest cooperative peer in %.1fs: want last, or within 10%% of the slowest",
			pl.Measured, pl.Formula, on.Measured, last.Formula)
	}
	if ratioOn < 1 {
		t.Errorf("with tit-for-tat the free rider took %.2f of the cooperative mean: want at least the mean", ratioOn)
	}
	if ratioOff < 0.75 || ratioOff > 1.15 {
		t.Errorf("without tit-for-tat the free rider took %.2f of the cooperative mean: want 0.75-1.15 (among the others)", ratioOff)
	}
	regOn, regOff := row(share, true).Measured, row(share, false).Measured
	if regOff < 0.10 || regOn > regOff/2 {
		t.Errorf("free rider's share of regular slots in contested rounds: %.3f with tit-for-tat, %.3f without; want at most half the share without, which must be >= 0.10", regOn, regOff)
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
