package experiment

import (
	"context"
	"math"
	"strings"
	"testing"
)

func TestRowTolerance(t *testing.T) {
	for _, tc := range []struct {
		row  Row
		ok   bool
		off  float64
		name string
	}{
		{Row{Measured: 1.05, Formula: 1, Tolerance: 0.1}, true, 0.05, "within"},
		{Row{Measured: 1.2, Formula: 1, Tolerance: 0.1}, false, 0.2, "outside"},
		{Row{Measured: 1.2, Formula: 1, Tolerance: 0.1, Slack: 0.15}, true, 0.2, "slack"},
		{Row{Measured: 5, Formula: 1}, true, 4, "unchecked"},
		{Row{Measured: 0.004, Formula: 0, Tolerance: 0.1, Slack: 0.01}, true, math.Inf(1), "zero formula with slack"},
		{Row{Measured: 0.5, Formula: 0, Tolerance: 0.1, Slack: 0.01}, false, math.Inf(1), "zero formula"},
	} {
		if got := tc.row.OK(); got != tc.ok {
			t.Errorf("%s: OK = %v, want %v", tc.name, got, tc.ok)
		}
		if got := tc.row.Off(); math.Abs(got-tc.off) > 1e-9 && !(math.IsInf(got, 1) && math.IsInf(tc.off, 1)) {
			t.Errorf("%s: Off = %g, want %g", tc.name, got, tc.off)
		}
	}
	res := &Result{Rows: []Row{{Case: "good", Measured: 1, Formula: 1, Tolerance: 0.1}, {Case: "bad", Measured: 2, Formula: 1, Unit: "s", Tolerance: 0.1}}}
	err := res.Check()
	if err == nil || !strings.Contains(err.Error(), "bad: measured 2 s, formula 1 (100.0% off") || strings.Contains(err.Error(), "good") {
		t.Errorf("Check = %v", err)
	}
	var b strings.Builder
	if err := WriteTable(&b, res.Rows); err != nil || !strings.Contains(b.String(), "100.0%") || !strings.Contains(b.String(), "CASE") {
		t.Errorf("table:\n%s", b.String())
	}
}

// A measured-only row prints no formula and no difference, and is never
// checked: a formula column of "0" would claim the chapter predicts zero.
func TestMeasuredOnlyRow(t *testing.T) {
	row := Row{Case: "HTTP/1.1 x6, loss 5%", Measured: 0.42, Unit: "s", NoFormula: true, Tolerance: 0.1}
	if !row.OK() {
		t.Error("a row without a formula failed its check")
	}
	var b strings.Builder
	if err := WriteTable(&b, []Row{row}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("table:\n%s", b.String())
	}
	fields := strings.Fields(lines[1])
	// ... loss 5%  0.42  -  s  -
	if n := len(fields); n < 4 || fields[n-4] != "0.42" || fields[n-3] != "-" || fields[n-2] != "s" || fields[n-1] != "-" {
		t.Errorf("measured-only row printed as %q", lines[1])
	}
}

func TestRegistry(t *testing.T) {
	run := func(context.Context, Env) (*Result, error) { return &Result{}, nil }
	r := NewRegistry(Experiment{Name: "b", Run: run}, Experiment{Name: "a", Run: run})
	if r.Names() != "a, b" {
		t.Errorf("Names = %q", r.Names())
	}
	if _, ok := r.Get("a"); !ok {
		t.Error("a not found")
	}
	if _, ok := r.Get("c"); ok {
		t.Error("c found")
	}
	defer func() {
		if recover() == nil {
			t.Error("a duplicate name did not panic")
		}
	}()
	r.Register(Experiment{Name: "a", Run: run})
}
