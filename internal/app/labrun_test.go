package app

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/lab"
)

// startRandomLab builds topo's hosts with the real wiring (labKinds) and
// starts them within ctx, on a random block (not 127.0/16, the 127.1/16
// of a running lab, or the default-topology test's 127.91/16) with a port
// offset of offsetBase plus a random multiple of 10 below 200, the lab
// admin listener at admin ("off": none) and a temporary state dir. It
// replaces topo.Lab, and shuts the lab down when the test ends.
func startRandomLab(t *testing.T, ctx context.Context, topo *lab.Topology, offsetBase int, admin string) (*lab.Plan, *lab.Running, *prometheus.Registry) {
	t.Helper()
	return startRandomLabKinds(t, ctx, topo, labKinds(), offsetBase, admin)
}

// startRandomLabKinds is startRandomLab with the given kinds instead of the
// wiring table's.
func startRandomLabKinds(t *testing.T, ctx context.Context, topo *lab.Topology, kinds *lab.Kinds, offsetBase int, admin string) (*lab.Plan, *lab.Running, *prometheus.Registry) {
	t.Helper()
	b := 100 + rand.IntN(150)
	offset := offsetBase + rand.IntN(20)*10
	topo.Lab = lab.Settings{Block: fmt.Sprintf("127.%d.0.0/16", b), PortOffset: &offset, Admin: admin, StateDir: t.TempDir()}
	plan, err := lab.NewPlan(topo, kinds, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := obs.NewRegistry()
	r, err := lab.Build(plan, kinds, service.Deps{Logger: testkit.Logger(t), Metrics: reg}, reg)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, r)
	return plan, r, reg
}
