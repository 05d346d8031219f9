package store

import (
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/mail/store/pgtest"
)

// The PostgreSQL server is shared by the package's tests (each gets a
// database of its own), started by the first test that needs it and
// stopped when they are done.
var (
	pgOnce sync.Once
	pgSrv  *pgtest.Server
	pgErr  error
)

func pgServer(t *testing.T) *pgtest.Server {
	t.Helper()
	pgtest.Require(t)
	pgOnce.Do(func() { pgSrv, pgErr = pgtest.StartServer() })
	if pgErr != nil {
		t.Fatal(pgErr)
	}
	return pgSrv
}

func TestMain(m *testing.M) {
	testkit.VerifyNoLeaks(m, goleak.Cleanup(func(int) {
		if pgSrv != nil {
			pgSrv.Stop()
		}
	}))
}
