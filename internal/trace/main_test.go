package trace

import (
	"testing"

	"github.com/applayer/applayer/internal/testkit"
)

// The JSONL sink schedules its flushes on timers: none may outlive Close.
func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }
