package testkit

import (
	"testing"
	"time"
)

// WaitFor polls ok every 5 ms until it holds, failing the test (naming
// what it waited for) after 5 s.
func WaitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
