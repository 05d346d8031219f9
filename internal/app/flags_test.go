package app

import (
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestSetGCPercent: the binary's GC choice. A flag given wins over GOGC, a
// default yields to it, 0 leaves the runtime alone, a negative value is
// refused; restore puts the previous value back.
func TestSetGCPercent(t *testing.T) {
	cur := func() int { v := debug.SetGCPercent(100); debug.SetGCPercent(v); return v }
	before := cur()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		name string
		args []string
		gogc string
		want int // during; before when left alone
	}{
		{"default applies", nil, "", 25},
		{"default yields to GOGC", nil, "100", before},
		{"flag wins over GOGC", []string{"--gc-percent=37"}, "100", 37},
		{"zero leaves the runtime", []string{"--gc-percent=0"}, "", before},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOGC", tc.gogc)
			cmd := &cobra.Command{}
			var p int
			gcPercentFlag(cmd.Flags(), &p, 25)
			if err := cmd.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			restore, err := setGCPercent(cmd, p, logger)
			if err != nil {
				t.Fatal(err)
			}
			if got := cur(); got != tc.want {
				t.Errorf("GC percent %d, want %d", got, tc.want)
			}
			restore()
			if got := cur(); got != before {
				t.Errorf("GC percent %d after restore, want %d", got, before)
			}
		})
	}
	cmd := &cobra.Command{}
	if _, err := setGCPercent(cmd, -1, logger); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Errorf("-1: %v, want a refusal", err)
	}
}
