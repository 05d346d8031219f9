package webexp

import (
	"bytes"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/lab/experiment"
	"github.com/applayer/applayer/web/proxy"
	"github.com/applayer/applayer/web/server"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

func quickEnv(t *testing.T) (experiment.Env, *bytes.Buffer) {
	var out bytes.Buffer
	return experiment.Env{Quick: true, Seed: 1, Out: t.TempDir(), Stdout: &out,
		Kinds: lab.NewKinds(slices.Concat(server.LabKinds(), proxy.LabKinds())...),
		Deps:  service.Deps{}.Defaults()}, &out
}

// TestPageLoadQuick: every mode's page-load time over the link is within
// 10% (+50 ms, for timers late on a loaded machine) of its formula: non-persistent (n+1) x 2 RTT + tx,
// persistent 2 RTT + n RTT + tx, pipelined and HTTP/2 3 RTT + tx.
func TestPageLoadQuick(t *testing.T) {
	env, out := quickEnv(t)
	ctx := testkit.Context(t, 60*time.Second)
	res, err := PageLoad().Run(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out)
	if len(res.Rows) != 8 {
		t.Errorf("%d rows, want 4 modes x 2 RTTs", len(res.Rows))
	}
	if err := res.Check(); err != nil {
		t.Error(err)
	}
	plotsExist(t, res.Plots)
}

// plotsExist fails unless every plot was written and is not empty.
func plotsExist(t *testing.T, paths []string) {
	t.Helper()
	if len(paths) == 0 {
		t.Error("no plots written")
	}
	for _, p := range paths {
		if st, err := os.Stat(p); err != nil || st.Size() < 500 {
			t.Errorf("plot %s: %v (size %d)", p, err, sizeOf(st))
		}
	}
}

func sizeOf(st os.FileInfo) int64 {
	if st == nil {
		return 0
	}
	return st.Size()
}

// TestCachingQuick: the chapter's caching example (time scaled 2x): the
// access link's utilisation is within 10% of 15 (1-h) L / R in every case
// (~97% without a cache, ~1% on the faster link, ~58% with a cache at
// h = 0.4), and the mean delay within 12% (+0.05 s) of (1-h)(2 s + M/M/1
// access delay) + the LAN delay where the queue settles (utilisation <=
// 80%).
func TestCachingQuick(t *testing.T) {
	env, out := quickEnv(t)
	ctx := testkit.Context(t, 90*time.Second)
	res, err := Caching().Run(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out)
	if len(res.Rows) != 6 {
		t.Errorf("%d rows, want utilisation and delay for 3 cases", len(res.Rows))
	}
	if err := res.Check(); err != nil {
		t.Error(err)
	}
	plotsExist(t, res.Plots)
}

// TestQUICvsTCPQuick: on a 40 ms link without loss the handshakes take 2
// RTT (TCP+TLS) and 1 RTT (QUIC) and the page loads take 4 RTT (HTTP/2)
// and 3 RTT (HTTP/3), each within 15% (+40 ms: TLS CPU on a loaded machine); at 5% loss HTTP/3's
// mean page-load time over 8 loads is below HTTP/2's.
func TestQUICvsTCPQuick(t *testing.T) {
	env, out := quickEnv(t)
	ctx := testkit.Context(t, 90*time.Second)
	res, err := QUICvsTCP().Run(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out)
	if len(res.Rows) != 9 {
		t.Errorf("%d rows, want 3 protocols x 2 losses + 2 handshakes + 1 comparison", len(res.Rows))
	}
	if err := res.Check(); err != nil {
		t.Error(err)
	}
	plotsExist(t, res.Plots)
}

// TestTrackingCookiesQuick: with the default (allow) jar the tracker sees
// one ID on both gaia.cs.umass.edu and shop.amazon.com; with the blocking
// and the partitioned jar no ID is seen on both. Every visit hits the
// tracker once (exactly).
func TestTrackingCookiesQuick(t *testing.T) {
	env, out := quickEnv(t)
	ctx := testkit.Context(t, 30*time.Second)
	res, err := TrackingCookies().Run(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out)
	if len(res.Rows) != 6 {
		t.Errorf("%d rows, want 2 for each of 3 jars", len(res.Rows))
	}
	if err := res.Check(); err != nil {
		t.Error(err)
	}
	plotsExist(t, res.Plots)
}
