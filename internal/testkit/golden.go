package testkit

import (
	"os"
	"path/filepath"
	"testing"
)

// UpdateGoldenEnv, set to 1, makes Golden rewrite the golden files with
// what the tests produce instead of comparing.
const UpdateGoldenEnv = "APPLAYER_UPDATE_GOLDEN"

// Golden compares got with the golden file at path (relative to the test's
// package directory); with $APPLAYER_UPDATE_GOLDEN=1 it writes got there
// instead.
func Golden(t testing.TB, path, got string) {
	t.Helper()
	if os.Getenv(UpdateGoldenEnv) == "1" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file: %v (run with %s=1 to create it)", err, UpdateGoldenEnv)
	}
	if string(want) != got {
		t.Errorf("output differs from %s (run with %s=1 to update it after checking):\n--- got\n%s\n--- want\n%s", path, UpdateGoldenEnv, got, want)
	}
}
