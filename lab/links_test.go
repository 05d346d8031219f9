package lab

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/internal/transport"
	"github.com/applayer/applayer/lab/link"
)

// tcpEcho is a TCP echo service that binds through transport.ListenConfig
// as every system does, and remembers its dialer and the type of the
// connections it accepts.
type tcpEcho struct {
	addr   string
	dialer service.Dialer
	ln     net.Listener
	wg     sync.WaitGroup

	mu       sync.Mutex
	accepted []string
}

func (e *tcpEcho) Name() string { return "tcp-echo " + e.addr }
func (e *tcpEcho) Start(ctx context.Context) error {
	ln, err := transport.ListenConfig{}.Listen(ctx, "tcp", e.addr)
	if err != nil {
		return err
	}
	e.ln = ln
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.accepted = append(e.accepted, fmt.Sprintf("%T", c))
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return nil
}
func (e *tcpEcho) Addrs() []net.Addr { return []net.Addr{e.ln.Addr()} }
func (e *tcpEcho) Shutdown(context.Context) error {
	if e.ln != nil {
		e.ln.Close()
		e.wg.Wait()
	}
	return nil
}

// linkLab starts topo (YAML, hosts' services of kinds tcp-echo and echo)
// on a random block, and returns it with the tcp-echo services by host.
func linkLab(t testing.TB, y string) (*Running, map[string]*tcpEcho) {
	t.Helper()
	echoes := map[string]*tcpEcho{}
	kinds := NewKinds(testKinds().All()[1], Kind{Name: "tcp-echo", Port: 7, Network: "tcp",
		Build: func(env Env) (service.Service, error) {
			e := &tcpEcho{addr: env.Listen.String(), dialer: env.Deps.Dialer}
			echoes[env.Host.Name] = e
			return e, nil
		}})
	topo := parse(t, y)
	offset := 0
	topo.Lab.PortOffset = &offset
	topo.Lab.Admin = "off"
	topo.Lab.StateDir = t.TempDir()
	topo.Lab.Block = fmt.Sprintf("127.%d.%d.0/24", 100+rand.IntN(100), rand.IntN(256))
	p, err := NewPlan(topo, kinds, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := obs.NewRegistry()
	r, err := Build(p, kinds, service.Deps{Logger: testkit.Logger(t), Metrics: reg}, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Shutdown(context.Background()) })
	return r, echoes
}

// exchange sends one byte on c and waits for it back.
func exchange(t *testing.T, c net.Conn) time.Duration {
	t.Helper()
	start := time.Now()
	if _, err := c.Write([]byte{'x'}); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

func near(t *testing.T, what string, got, want time.Duration) {
	t.Helper()
	// Never early (the link's delay is applied); late by what a busy
	// machine's timers and scheduler add (the exact figures are lab/link's
	// simulated-clock tests).
	if tol := 150*time.Millisecond + want/2; got < want-5*time.Millisecond || got > want+tol {
		t.Errorf("%s: %s, want %s (-5ms/+%s)", what, got, want, tol)
	} else {
		t.Logf("%s: %s (want %s)", what, got, want)
	}
}

// TestLinkShapesServicesAndOutsideClients: a host's access link reaches
// the listeners its services bind through internal/transport, so a client
// outside the lab (as curl would be) is shaped: the first exchange pays the
// handshake and a round trip (4 x 40 ms), the next a round trip.
func TestLinkShapesServicesAndOutsideClients(t *testing.T) {
	r, echoes := linkLab(t, `
hosts:
- name: slow.example
  link: delay=40ms
  services: [{kind: tcp-echo}]
- name: fast.example
  services: [{kind: tcp-echo}]
`)
	for _, tc := range []struct {
		host        string
		first, next time.Duration
		wrapped     bool
	}{{"slow.example", 160 * time.Millisecond, 80 * time.Millisecond, true}, {"fast.example", 0, 0, false}} {
		addr := echoes[tc.host].ln.Addr().String()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		near(t, tc.host+" first exchange", exchange(t, c), tc.first)
		near(t, tc.host+" second exchange", exchange(t, c), tc.next)
		c.Close()
		e := echoes[tc.host]
		e.mu.Lock()
		got := strings.Join(e.accepted, ",")
		e.mu.Unlock()
		if wrapped := got == "*link.Conn"; wrapped != tc.wrapped {
			t.Errorf("%s accepted %s; want wrapped %v (a host without a link must get the raw connection)", tc.host, got, tc.wrapped)
		}
	}
	if r.Link("slow.example") == nil || r.Link("fast.example") != nil {
		t.Error("Running.Link: want slow.example's link and none for fast.example")
	}
	var table strings.Builder
	r.PrintTable(&table)
	if !strings.Contains(table.String(), "Links (shaped in user space") || !strings.Contains(table.String(), "delay=40ms") {
		t.Errorf("the table does not show the link:\n%s", table.String())
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newLinkCollector(r.links))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, lp := range m.GetLabel() {
				key += " " + lp.GetValue()
			}
			got[key] = m.GetCounter().GetValue()
		}
	}
	// Two exchanges of one byte each way (labels in order: direction, link).
	if got["applayer_lab_link_bytes_total up slow.example"] != 2 || got["applayer_lab_link_bytes_total down slow.example"] != 2 || got["applayer_lab_link_packets_total up slow.example"] != 2 {
		t.Errorf("link metrics: %v", got)
	}
}

// TestNoLinksNoWrapping: a topology without links wraps nothing: the
// accepted connections are the kernel's and the dialer is the lab's own.
func TestNoLinksNoWrapping(t *testing.T) {
	r, echoes := linkLab(t, `
hosts:
- name: a.example
  services: [{kind: tcp-echo}]
`)
	if r.links != nil {
		t.Fatal("a lab without links built a link set")
	}
	e := echoes["a.example"]
	if _, ok := e.dialer.(*link.Dialer); ok {
		t.Error("the dialer of a host without links is shaped")
	}
	c, err := net.Dial("tcp", e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	exchange(t, c)
	c.Close()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.accepted) != 1 || e.accepted[0] != "*net.TCPConn" {
		t.Errorf("accepted %v, want one *net.TCPConn", e.accepted)
	}
}

// TestLinksBetweenHosts: a host's dialer applies its own access link, the
// pair link to the destination and, for datagrams (whose servers read
// straight from the kernel), the destination's access link: a UDP echo on
// b (link 30 ms) seen from a (link 10 ms, pair link 5 ms) answers after
// 2 x (10 + 5 + 30) ms; over TCP, b's listener applies b's link itself.
func TestLinksBetweenHosts(t *testing.T) {
	r, echoes := linkLab(t, `
hosts:
- name: a.example
  link: delay=10ms
  services: [{kind: tcp-echo}]
- name: b.example
  link: delay=30ms
  services: [{kind: tcp-echo}, {kind: echo}]
links:
- between: [a.example, b.example]
  link: delay=5ms
`)
	b, _ := r.Plan.Lookup("b.example")
	ctx := testkit.Context(t, 10*time.Second)
	d := echoes["a.example"].dialer
	u, err := d.DialContext(ctx, "udp", net.JoinHostPort(b.Addr.String(), "7"))
	if err != nil {
		t.Fatal(err)
	}
	near(t, "UDP a -> b", exchange(t, u), 90*time.Millisecond)
	u.Close()
	start := time.Now()
	c, err := d.DialContext(ctx, "tcp", echoes["b.example"].ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	near(t, "TCP a -> b connect (a's and the pair link's round trip)", time.Since(start), 30*time.Millisecond)
	near(t, "TCP a -> b first exchange (b's handshake share and a round trip)", exchange(t, c), 150*time.Millisecond)
	near(t, "TCP a -> b second exchange", exchange(t, c), 90*time.Millisecond)
	c.Close()
}

func TestSetLinkAndValidate(t *testing.T) {
	topo := parse(t, "hosts:\n- name: a.example\n  services: []\n")
	if err := topo.SetLink("a.example:delay=1s,rate=1.54Mbit,loss=1%"); err != nil {
		t.Fatal(err)
	}
	if topo.Hosts[0].Link != "delay=1s,rate=1.54Mbit,loss=1%" {
		t.Errorf("link = %q", topo.Hosts[0].Link)
	}
	for arg, want := range map[string]string{
		"nohost:delay=1s":     `no host named "nohost"`,
		"a.example:delay=x":   "delay",
		"a.example":           "want HOST:",
		"a.example:speed=1ms": `unknown key "speed"`,
	} {
		if err := topo.SetLink(arg); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("SetLink(%q) = %v, want it to contain %q", arg, err, want)
		}
	}
	for y, want := range map[string]string{
		"hosts:\n- name: a\n  link: loss=2\n  services: []\n":                                                  "hosts[0].link: link: loss 2 is outside",
		"hosts:\n- name: a\n  services: []\nlinks:\n- between: [a, b]\n  link: delay=1ms\n":                    `links[0].between: no host named "b"`,
		"hosts:\n- name: a\n  services: []\nlinks:\n- between: [a]\n  link: delay=1ms\n":                       "links[0].between: want two different host names",
		"hosts:\n- name: a\n  services: []\n- name: b\n  services: []\nlinks:\n- between: [a, b]\n  link: x\n": "links[0].link",
	} {
		if err := parse(t, y).Validate(testKinds()); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate(%q) = %v, want it to contain %q", y, err, want)
		}
	}
}

// BenchmarkEchoNoLink measures a 1-byte TCP echo round trip to a service
// started on its own ("plain") and the same service started by a lab whose
// topology has no link ("lab-no-link"): with no link nothing is wrapped, so
// the two are the same code path and cost the same. "lab-zero-link" is the
// same lab host with a link of no delay and unlimited rate: the wrapper's
// own cost.
func BenchmarkEchoNoLink(b *testing.B) {
	for _, tc := range []struct{ name, link string }{{"plain", "-"}, {"lab-no-link", ""}, {"lab-zero-link", "rate=100Gbit"}} {
		b.Run(tc.name, func(b *testing.B) {
			var addr string
			if tc.link == "-" {
				e := &tcpEcho{addr: "127.0.0.1:0"}
				if err := e.Start(context.Background()); err != nil {
					b.Fatal(err)
				}
				defer e.Shutdown(context.Background())
				addr = e.ln.Addr().String()
			} else {
				y := "hosts:\n- name: a.example\n  services: [{kind: tcp-echo, port: 7}]\n"
				if tc.link != "" {
					y = "hosts:\n- name: a.example\n  link: " + tc.link + "\n  services: [{kind: tcp-echo, port: 7}]\n"
				}
				_, echoes := linkLab(b, y)
				addr = echoes["a.example"].ln.Addr().String()
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := []byte{1}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
