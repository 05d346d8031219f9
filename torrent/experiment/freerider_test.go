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
// rider). The chapter's claim, with the tolerance stated: with tit-for-tat
// the free rider takes at least 1.10x the cooperative peers' mean time,
// and its ratio is at least 0.10 above the ratio without tit-for-tat
// (measured 1.17-1.28 against 0.92-0.97; it is usually, not always, the
// very last: the slowest cooperative peer can trail it by milliseconds,
// so its place is not asserted); without tit-for-tat it is within 10% of
// the mean. With tit-for-tat the
// cooperative peers' regular slots (given for their rate) almost never go
// to it: it gets peers' bytes through optimistic unchokes, which the
// trace shows; without tit-for-tat it also wins regular slots.
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
	if len(res.Rows) != 2 {
		t.Fatalf("rows %+v", res.Rows)
	}
	on, off := res.Rows[0], res.Rows[1]
	ron, roff := on.Measured/on.Formula, off.Measured/off.Formula
	if ron < 1.10 || ron-roff < 0.10 {
		t.Errorf("free rider / cooperative mean: %.2f with tit-for-tat (%.1fs / %.1fs), %.2f without; want >= 1.10 with, and at least 0.10 more than without",
			ron, on.Measured, on.Formula, roff)
	}
	if roff > 1.10 {
		t.Errorf("tit-for-tat off: free rider %.1fs is %.2fx the cooperative mean %.1fs, want <= 1.10x", off.Measured, roff, off.Formula)
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
