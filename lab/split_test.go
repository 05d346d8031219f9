package lab

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

// TestSelectBuildsOnlyThoseHosts: a plan split with Select builds only the
// named hosts, each at the address the whole plan gives it; unknown names
// are refused naming the topology's hosts.
func TestSelectBuildsOnlyThoseHosts(t *testing.T) {
	topo := parse(t, "lab: {port_offset: 0, admin: 'off', state_dir: "+quote(t.TempDir())+"}\nhosts:\n- name: a\n  services: [{kind: echo}]\n- name: b\n  services: [{kind: echo}]\n- name: c\n  services: [{kind: echo}]\n")
	p, err := NewPlan(topo, testKinds(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Select([]string{"b", "nope"}); err == nil || !strings.Contains(err.Error(), "no host nope in the topology (hosts: a, b, c)") {
		t.Fatalf("Select with an unknown host: %v", err)
	}
	if err := p.Select([]string{"c", "A."}); err != nil {
		t.Fatal(err)
	}
	r, err := Build(p, testKinds(), service.Deps{Logger: testkit.Logger(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range r.Entries {
		got = append(got, e.Host+"="+e.Addr.String())
	}
	if strings.Join(got, " ") != "a=127.1.0.1 c=127.1.0.3" {
		t.Errorf("built %v, want a and c at their planned addresses", got)
	}
	if !p.Runs("a") || p.Runs("b") {
		t.Error("Runs disagrees with Select")
	}
}

// TestRemoteBlock: a block outside loopback is refused unless the
// topology says the lab is split over machines, and then a host's dialer
// sends from the host's own address to the other machines' hosts.
func TestRemoteBlock(t *testing.T) {
	y := "lab: {block: 10.9.0.0/24%s}\nhosts:\n- name: a\n  services: []\n"
	if err := parse(t, strings.Replace(y, "%s", "", 1)).Validate(testKinds()); err == nil || !strings.Contains(err.Error(), "set remote_block") {
		t.Errorf("non-loopback block accepted: %v", err)
	}
	if err := parse(t, strings.Replace(y, "%s", ", remote_block: true", 1)).Validate(testKinds()); err != nil {
		t.Errorf("remote_block refused: %v", err)
	}
	// From a machine's lab address, every destination is dialled from it
	// (this machine lacks 10.9.0.1: the bind fails, naming it).
	d := newHostDialer(netip.MustParseAddr("10.9.0.1"), &net.Dialer{})
	if c, err := d.DialContext(t.Context(), "udp", "10.9.0.2:53"); err == nil || !strings.Contains(err.Error(), "10.9.0.1") {
		if c != nil {
			c.Close()
		}
		t.Errorf("dial from the remote host address: %v, want a bind of 10.9.0.1", err)
	}
	// From a loopback host address, loopback destinations only.
	d = newHostDialer(netip.MustParseAddr("127.1.0.9"), &net.Dialer{})
	c, err := d.DialContext(t.Context(), "udp", "127.0.0.1:9")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.LocalAddr().(*net.UDPAddr).IP.String(); got != "127.1.0.9" {
		t.Errorf("source %s, want the host's 127.1.0.9", got)
	}
}

func quote(s string) string { return "'" + s + "'" }
