package app

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/lab"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// TestDefaultTopologyRuns builds the embedded default lab with the real
// wiring table, starts it and stops it: every kind it names builds, every
// service binds, every registered metric passes promlint and the naming
// scheme, and (checked by TestMain) no goroutine is left behind.
func TestDefaultTopologyRuns(t *testing.T) {
	topo, err := lab.DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	// Its own block and a high offset, so a lab the user runs does not clash.
	offset := 30000
	topo.Lab.PortOffset = &offset
	topo.Lab.Admin = "127.0.0.1:0"
	topo.Lab.Block = "127.91.0.0/16"
	topo.Lab.StateDir = t.TempDir()
	for i := range topo.Hosts {
		if topo.Hosts[i].Addr != "" {
			a := netip.MustParseAddr(topo.Hosts[i].Addr).As4()
			topo.Hosts[i].Addr = netip.AddrFrom4([4]byte{127, 91, a[2], a[3]}).String()
		}
	}
	kinds := labKinds()
	plan, err := lab.NewPlan(topo, kinds, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := obs.NewRegistry()
	bus := trace.NewBus(nil)
	r, err := buildLab(plan, kinds, service.Deps{Logger: testkit.Logger(t), Metrics: reg, Trace: bus}, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	r.PrintTable(&table)
	t.Log("\n" + table.String())

	// Every kind of the wiring table runs in the default lab, so every
	// registered metric is linted here.
	used := map[string]bool{}
	for _, h := range plan.Hosts {
		for _, s := range h.Services {
			used[s.Kind] = true
		}
	}
	for _, k := range kinds.All() {
		if !used[k.Name] {
			t.Errorf("kind %s is not in the default lab: its metrics go unlinted", k.Name)
		}
	}
	exerciseLab(t, plan)
	lintMetrics(t, reg, defaultLabSubsystems...)
	checkDashboard(t, r, bus)

	// Services' admin endpoints are reachable under /hosts/<name>/.
	admin := "http://" + r.Admin.Addrs()[0].String()
	resp, err := http.Post(admin+"/hosts/resolver.nyu.edu/dns/resolver/flush", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "flushed ") {
		t.Errorf("resolver flush through the lab admin: %d %q", resp.StatusCode, body)
	}
	http.DefaultClient.CloseIdleConnections()
	var addrs []net.Addr
	for _, s := range r.Group.Services() {
		if a, ok := s.(service.Addresser); ok {
			addrs = append(addrs, a.Addrs()...)
		}
	}
	if err := r.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(r.Entries) == 0 {
		t.Fatal("default lab started no services")
	}
	if len(addrs) < len(r.Entries) {
		t.Fatalf("%d addresses for %d services", len(addrs), len(r.Entries))
	}
	// Every listener is closed: each address can be bound again.
	for _, a := range addrs {
		if a.Network() == "udp" {
			c, err := net.ListenPacket("udp", a.String())
			if err != nil {
				t.Errorf("after Shutdown, udp %s is still bound: %v", a, err)
				continue
			}
			c.Close()
			continue
		}
		l, err := net.Listen("tcp", a.String())
		if err != nil {
			t.Errorf("after Shutdown, tcp %s is still bound: %v", a, err)
			continue
		}
		l.Close()
	}
}
