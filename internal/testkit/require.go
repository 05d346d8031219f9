package testkit

import (
	"fmt"
	"os"
	"testing"
)

// RequirePeersEnv is the variable that makes every skip a failure: make
// test and the full-suite runs set it after installing the peers
// (scripts/peers.txt), so a green run proves every interop claim.
const RequirePeersEnv = "APPLAYER_REQUIRE_PEERS"

// Required reports whether APPLAYER_REQUIRE_PEERS is set.
func Required() bool { return os.Getenv(RequirePeersEnv) != "" }

// Skip skips the test for the reason given, or fails it when
// APPLAYER_REQUIRE_PEERS is set: under the variable no test may skip.
// Tests never call t.Skip directly (TestNoDirectSkips checks the tree),
// so this is the one place a skip can happen.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("%s, and %s is set: skipping is a failure", reason, RequirePeersEnv)
	}
	t.Skip(reason)
}
