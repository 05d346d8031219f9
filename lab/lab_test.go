package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// echoKind is a minimal UDP service for the lab's own tests.
type echo struct {
	addr string
	conn net.PacketConn
	done chan struct{}
}

func (e *echo) Name() string { return "echo " + e.addr }
func (e *echo) Start(context.Context) error {
	c, err := net.ListenPacket("udp", e.addr)
	if err != nil {
		return err
	}
	e.conn, e.done = c, make(chan struct{})
	go func() {
		defer close(e.done)
		buf := make([]byte, 512)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			c.WriteTo(buf[:n], from)
		}
	}()
	return nil
}
func (e *echo) Addrs() []net.Addr { return []net.Addr{e.conn.LocalAddr()} }
func (e *echo) Shutdown(context.Context) error {
	if e.conn != nil {
		e.conn.Close()
		<-e.done
		e.conn = nil
	}
	return nil
}

type echoConfig struct {
	Greeting string `json:"greeting"`
}

func testKinds() *Kinds {
	return NewKinds(Kind{
		Name: "echo", Summary: "UDP echo", Port: 7, Network: "udp",
		Check: func(raw json.RawMessage) error {
			var c echoConfig
			if err := DecodeConfig(raw, &c); err != nil {
				return err
			}
			if c.Greeting == "bad" {
				return config.Errorf("greeting", "must not be bad")
			}
			return nil
		},
		Build: func(env Env) (service.Service, error) {
			env.Admin.Handle("GET /hello", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "hello from %s at %s", env.Host.Name, r.URL.Path)
			}))
			return &echo{addr: env.Listen.String()}, nil
		},
	}, Kind{Name: "both", Port: 53, Network: "udp+tcp", Build: func(env Env) (service.Service, error) { return &echo{addr: env.Listen.String()}, nil }})
}

func parse(t testing.TB, y string) *Topology {
	t.Helper()
	var topo Topology
	if err := config.Decode([]byte(y), "yaml", &topo); err != nil {
		t.Fatal(err)
	}
	return &topo
}

func TestValidateNamesTheField(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown kind", "hosts:\n- name: a\n  services:\n  - kind: nope\n", `hosts[0].services[0].kind: unknown kind "nope" (known: both, echo)`},
		{"no hosts", "lab: {}\n", "hosts: no hosts"},
		{"bad block", "lab: {block: 10.0.0.0/8}\nhosts:\n- name: a\n  services: []\n", "lab.block: 10.0.0.0/8 is not a loopback block"},
		{"addr outside block", "hosts:\n- name: a\n  addr: 127.9.0.1\n  services: []\n", "hosts[0].addr: 127.9.0.1 is outside the lab block 127.1.0.0/16"},
		{"duplicate host", "hosts:\n- name: a\n  services: []\n- name: a\n  services: []\n", `hosts[1].name: "a" is already used by hosts[0]`},
		{"bad host name", "hosts:\n- name: -x-\n  services: []\n", `hosts[0].name: "-x-" is not a valid host name`},
		{"port clash", "hosts:\n- name: a\n  services:\n  - kind: echo\n    port: 53\n  - kind: both\n", "hosts[0].services[1].port: udp port 53 is already used by services[0]"},
		{"kind config", "hosts:\n- name: a\n  services:\n  - kind: echo\n    config: {greeting: bad}\n", "hosts[0].services[0].config.greeting: must not be bad"},
		{"kind config unknown field", "hosts:\n- name: a\n  services:\n  - kind: echo\n    config: {greting: hi}\n", `hosts[0].services[0].config: config: unknown field "greting"`},
		{"remote admin", "lab: {admin: '0.0.0.0:9900'}\nhosts:\n- name: a\n  services: []\n", "lab.admin: \"0.0.0.0:9900\" is not a loopback address"},
		{"port offset range", "lab: {port_offset: -1}\nhosts:\n- name: a\n  services: []\n", "lab.port_offset: -1 is out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := parse(t, tt.yaml).Validate(testKinds())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	topo := parse(t, `
lab: {block: 127.1.0.0/16}
hosts:
- name: fixed.example
  addr: 127.1.0.1
  services: [{kind: echo}]
- name: next.example
  services: [{kind: echo, port: 9}]
- name: third.example
  services: []
`)
	tests := []struct {
		name       string
		canBind    bool
		wantOffset int
	}{
		{"privileged ports available", true, 0},
		{"no privileged ports: offset", false, DefaultPortOffset},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPlan(topo, testKinds(), func(netip.Addr) bool { return tt.canBind })
			if err != nil {
				t.Fatal(err)
			}
			if p.PortOffset != tt.wantOffset {
				t.Fatalf("offset = %d, want %d", p.PortOffset, tt.wantOffset)
			}
			want := []string{"127.1.0.1", "127.1.0.2", "127.1.0.3"}
			for i, h := range p.Hosts {
				if h.Addr.String() != want[i] {
					t.Errorf("host %s addr %s, want %s", h.Name, h.Addr, want[i])
				}
			}
			if h, ok := p.Lookup("NEXT.example."); !ok || h.Addr.String() != "127.1.0.2" {
				t.Errorf("Lookup = %v %v", h, ok)
			}
			if p.Port(53) != 53+tt.wantOffset {
				t.Errorf("Port(53) = %d", p.Port(53))
			}
		})
	}
	forced := 20000
	topo.Lab.PortOffset = &forced
	p, err := NewPlan(topo, testKinds(), func(netip.Addr) bool { t.Fatal("probed despite a forced offset"); return true })
	if err != nil || p.PortOffset != forced {
		t.Fatalf("forced offset: %v %v", p, err)
	}
}

func TestBuildStartShutdown(t *testing.T) {
	offset := 0
	topo := parse(t, `
lab: {block: 127.1.0.0/16, admin: '127.0.0.1:0'}
hosts:
- name: a.example
  addr: 127.1.200.1
  services: [{kind: echo, port: 0}]
- name: b.example
  addr: 127.1.200.2
  services: [{kind: echo, port: 0}]
`)
	topo.Lab.PortOffset = &offset
	topo.Lab.StateDir = t.TempDir()
	p, err := NewPlan(topo, testKinds(), nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := obs.NewRegistry()
	r, err := Build(p, testKinds(), service.Deps{Logger: testkit.Logger(t), Metrics: reg}, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	r.PrintTable(&table)
	for _, want := range []string{"HOST", "a.example", "127.1.200.1", "udp 127.1.200.2:", "admin", "tcp 127.0.0.1:"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	// Each host answers on its own address.
	for _, e := range r.Entries {
		addr := e.Service.(service.Addresser).Addrs()[0].String()
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("ping"))
		buf := make([]byte, 8)
		n, err := c.Read(buf)
		c.Close()
		if err != nil || string(buf[:n]) != "ping" {
			t.Errorf("%s: %q %v", addr, buf[:n], err)
		}
	}
	// Each host's admin endpoints live under /hosts/<name>/.
	resp, err := http.Get("http://" + r.Admin.Addrs()[0].String() + "/hosts/b.example/hello")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello from b.example at /hello" {
		t.Errorf("host admin endpoint answered %d %q", resp.StatusCode, body)
	}
	http.DefaultClient.CloseIdleConnections()
	if err := r.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultTopologyParses(t *testing.T) {
	topo, err := DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	if len(topo.Hosts) == 0 {
		t.Fatal("default topology has no hosts")
	}
}

func TestHostDialerBindsHostAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	host := netip.MustParseAddr("127.1.77.9")
	d := newHostDialer(host, &net.Dialer{})
	tests := []struct{ network, addr string }{
		{"tcp", ln.Addr().String()},
		{"udp", pc.LocalAddr().String()},
	}
	for _, tt := range tests {
		t.Run(tt.network, func(t *testing.T) {
			c, err := d.DialContext(context.Background(), tt.network, tt.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got, _ := netip.ParseAddrPort(c.LocalAddr().String())
			if got.Addr() != host {
				t.Fatalf("connection leaves from %s, want the host's %s", got.Addr(), host)
			}
		})
	}
	// A dialer that is not a plain net.Dialer is left alone.
	custom := service.Dialer(&hostDialer{})
	if newHostDialer(host, custom) != custom {
		t.Fatal("custom dialer replaced")
	}
}
