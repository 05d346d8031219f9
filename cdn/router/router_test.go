package router_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/applayer/applayer/cdn/edge"
	"github.com/applayer/applayer/cdn/router"
	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/internal/trace"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// cdn is a router in front of real edges (each with its control
// listener) that fetch from one origin.
type cdn struct {
	r      *router.Server
	edges  map[string]*edge.Server // by edge name
	addrs  map[string]string       // edge name -> address the router answers
	origin *httptest.Server
	reg    *prometheus.Registry
	bus    *trace.Bus
}

// The answered addresses are documentation addresses: the router hands
// them out, nothing connects to them here.
var edgeAddrs = map[string]string{
	"umass-1": "192.0.2.11", "umass-2": "192.0.2.12",
	"nyu-1": "192.0.2.21", "crepes-1": "192.0.2.31",
}

const originAddr = "198.51.100.1"

func startCDN(t *testing.T, capacity int) *cdn {
	t.Helper()
	c := &cdn{edges: map[string]*edge.Server{}, addrs: edgeAddrs, reg: prometheus.NewRegistry(), bus: trace.NewBus(nil)}
	c.origin = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "object %s\n", r.URL.Path)
	}))
	t.Cleanup(c.origin.Close)
	m := &router.Map{
		Origin: []string{originAddr},
		Networks: []router.Network{
			{Name: "umass.edu", Prefixes: []string{"10.1.0.0/16"}, Distances: map[string]int{"umass": 1, "nyu": 4, "crepes": 60}},
			{Name: "nyu.edu", Prefixes: []string{"10.2.0.0/16"}, Distances: map[string]int{"nyu": 1, "umass": 4, "crepes": 60}},
			{Name: "crepes.fr", Prefixes: []string{"10.3.0.0/16", "2001:db8:3::/48"}, Distances: map[string]int{"crepes": 1, "nyu": 50, "umass": 55}},
			// the resolvers' own network (loopback here): nearest nyu
			{Name: "resolvers", Prefixes: []string{"127.0.0.0/8"}, Distances: map[string]int{"nyu": 2, "umass": 3, "crepes": 70}},
		},
		Default: map[string]int{"crepes": 5, "nyu": 10, "umass": 10},
	}
	for _, cl := range []string{"umass", "nyu", "crepes"} {
		rc := router.Cluster{Name: cl}
		for name, addr := range edgeAddrs {
			if !strings.HasPrefix(name, cl+"-") {
				continue
			}
			e, err := edge.New(edge.Config{Name: name, Addr: "127.0.0.1:0", Control: "127.0.0.1:0", Capacity: capacity,
				Upstreams: []string{c.origin.Listener.Addr().String()}}, service.Deps{Logger: testkit.Logger(t)})
			if err != nil {
				t.Fatal(err)
			}
			c.edges[name] = testkit.Start(t, e)
			rc.Edges = append(rc.Edges, router.Edge{Name: name, Addr: addr, Control: e.ControlAddr()})
		}
		m.Clusters = append(m.Clusters, rc)
	}
	r, err := router.New(router.Config{Addr: "127.0.0.1:0", Domain: "kingcdn.com", Map: m, TTL: config.Duration(20 * time.Second),
		CheckInterval: config.Duration(time.Hour), CheckTimeout: config.Duration(2 * time.Second), Fall: 1},
		service.Deps{Logger: testkit.Logger(t), Metrics: c.reg, Trace: c.bus})
	if err != nil {
		t.Fatal(err)
	}
	c.r = testkit.Start(t, r)
	return c
}

// ask queries the router for name from the given ECS subnet ("" for no
// ECS option; "none" for no EDNS at all).
func (c *cdn) ask(t *testing.T, name string, qtype uint16, subnet string) *dns.Msg {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	if subnet != "none" {
		q.SetEdns0(1232, false)
	}
	if subnet != "" && subnet != "none" {
		_, n, err := net.ParseCIDR(subnet)
		if err != nil {
			t.Fatal(err)
		}
		ones, _ := n.Mask.Size()
		fam := uint16(1)
		if n.IP.To4() == nil {
			fam = 2
		}
		q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: fam, SourceNetmask: uint8(ones), Address: n.IP})
	}
	r, _, err := (&dns.Client{Timeout: 3 * time.Second}).Exchange(q, c.r.Local())
	if err != nil {
		t.Fatalf("query %s from %s: %v", name, subnet, err)
	}
	return r
}

func answerAddr(r *dns.Msg) string {
	for _, rr := range r.Answer {
		switch a := rr.(type) {
		case *dns.A:
			return a.A.String()
		case *dns.AAAA:
			return a.AAAA.String()
		}
	}
	return ""
}

func scopeOf(r *dns.Msg) int {
	if opt := r.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if s, ok := o.(*dns.EDNS0_SUBNET); ok {
				return int(s.SourceScope)
			}
		}
	}
	return -1
}

// inCluster says whether addr is an edge of cluster cl.
func inCluster(addr, cl string) bool {
	for name, a := range edgeAddrs {
		if a == addr && strings.HasPrefix(name, cl+"-") {
			return true
		}
	}
	return false
}

func TestRoutesBySubnet(t *testing.T) {
	c := startCDN(t, 100)
	for _, tc := range []struct {
		name, subnet, cluster string
		scope                 int
	}{
		{"umass client, ECS", "10.1.2.0/24", "umass", 16},
		{"nyu client, ECS", "10.2.9.0/24", "nyu", 16},
		{"crepes client, ECS", "10.3.0.0/24", "crepes", 16},
		{"crepes client, IPv6 ECS", "2001:db8:3:1::/56", "crepes", 48},
		{"unknown network, ECS: default distances", "203.0.113.0/24", "crepes", 24},
		{"no ECS: the resolver's address (loopback network)", "", "nyu", -1},
		{"no EDNS: the resolver's address", "none", "nyu", -1},
		{"ECS source 0: the resolver's address, scope 0", "0.0.0.0/0", "nyu", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.ask(t, "video.kingcdn.com", dns.TypeA, tc.subnet)
			if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
				t.Fatalf("rcode %s aa=%v\n%s", dns.RcodeToString[r.Rcode], r.Authoritative, r)
			}
			if a := answerAddr(r); !inCluster(a, tc.cluster) {
				t.Errorf("answer %q, want an edge of %s\n%s", a, tc.cluster, r)
			}
			if got := scopeOf(r); got != tc.scope {
				t.Errorf("ECS scope %d, want %d", got, tc.scope)
			}
			if r.Answer[0].Header().Ttl != 20 {
				t.Errorf("TTL %d, want 20", r.Answer[0].Header().Ttl)
			}
		})
	}
}

func TestZoneAnswers(t *testing.T) {
	c := startCDN(t, 100)
	r := c.ask(t, "kingcdn.com", dns.TypeSOA, "")
	if len(r.Answer) != 1 || r.Answer[0].Header().Rrtype != dns.TypeSOA || !r.Authoritative {
		t.Errorf("apex SOA: %s", r)
	}
	r = c.ask(t, "kingcdn.com", dns.TypeNS, "")
	if len(r.Answer) != 1 || r.Answer[0].(*dns.NS).Ns != "ns.kingcdn.com." {
		t.Errorf("apex NS: %s", r)
	}
	r = c.ask(t, "video.kingcdn.com", dns.TypeMX, "10.1.0.0/16")
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA {
		t.Errorf("MX (NODATA with SOA): %s", r)
	}
	r = c.ask(t, "video.kingcdn.com", dns.TypeAAAA, "10.1.0.0/16")
	if len(r.Answer) != 0 || len(r.Ns) != 1 {
		t.Errorf("AAAA of an IPv4 edge (NODATA): %s", r)
	}
	r = c.ask(t, "www.example.com", dns.TypeA, "")
	if r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
		t.Errorf("outside the zone: %s", r)
	}
	r = c.ask(t, "notkingcdn.com", dns.TypeA, "")
	if r.Rcode != dns.RcodeRefused {
		t.Errorf("a name that only ends like the zone: %s", r)
	}
	// ANY goes through the slow path: answered like A
	r = c.ask(t, "video.KingCDN.com", dns.TypeANY, "10.3.0.0/16")
	if !inCluster(answerAddr(r), "crepes") || scopeOf(r) != 16 {
		t.Errorf("ANY: %s", r)
	}
	if r.Question[0].Name != "video.KingCDN.com." {
		t.Errorf("question's case not kept: %s", r.Question[0].Name)
	}
	r = c.ask(t, "kingcdn.com", dns.TypeANY, "10.3.0.0/16")
	if len(r.Answer) != 1 || r.Answer[0].Header().Rrtype != dns.TypeSOA {
		t.Errorf("ANY at the apex: %s", r)
	}
	// TCP
	q := new(dns.Msg)
	q.SetQuestion("a.kingcdn.com.", dns.TypeA)
	tr, _, err := (&dns.Client{Net: "tcp"}).Exchange(q, c.r.Local())
	if err != nil || !inCluster(answerAddr(tr), "nyu") {
		t.Errorf("tcp: %v %v", err, tr)
	}
}

func TestMalformedClientSubnet(t *testing.T) {
	c := startCDN(t, 100)
	for _, tc := range []struct {
		name string
		opt  *dns.EDNS0_SUBNET
	}{
		{"bits beyond the source prefix", &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 12, Address: net.ParseIP("10.16.0.0").To4()}},
		{"scope set in a query", &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, SourceScope: 24, Address: net.ParseIP("10.1.2.0").To4()}},
		{"source longer than the family", &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.ParseIP("10.1.2.0").To4()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := new(dns.Msg)
			q.SetQuestion("video.kingcdn.com.", dns.TypeA)
			q.SetEdns0(1232, false)
			q.IsEdns0().Option = append(q.IsEdns0().Option, tc.opt)
			wire, err := q.Pack()
			if err != nil {
				t.Fatalf("cannot pack: %v", err)
			}
			if tc.name == "bits beyond the source prefix" {
				// miekg masks the address: set a stray bit (10.17/12) by hand
				wire[len(wire)-1] |= 0x01
			}
			if tc.name == "source longer than the family" {
				wire[len(wire)-5] = 33 // SOURCE PREFIX-LENGTH, before scope and 3 octets
			}
			conn, err := net.Dial("udp", c.r.Local())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(3 * time.Second))
			conn.Write(wire)
			buf := make([]byte, 2048)
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			r := new(dns.Msg)
			if err := r.Unpack(buf[:n]); err != nil {
				t.Fatal(err)
			}
			if r.Rcode != dns.RcodeFormatError {
				t.Errorf("rcode %s, want FORMERR\n%s", dns.RcodeToString[r.Rcode], r)
			}
		})
	}
}

// The chapter's failure cases: a cluster down, a cluster overloaded, and
// every cluster down.
func TestClusterDownOverloadedAllDown(t *testing.T) {
	c := startCDN(t, 1)
	ctx := testkit.Context(t, 30*time.Second)

	// crepes' only edge stops: crepes clients go to the next nearest (nyu).
	c.edges["crepes-1"].Shutdown(ctx)
	c.r.CheckNow(ctx)
	r := c.ask(t, "video.kingcdn.com", dns.TypeA, "10.3.0.0/24")
	if a := answerAddr(r); !inCluster(a, "nyu") {
		t.Fatalf("crepes down: answer %s, want nyu\n%s", a, r)
	}
	st := c.r.Status()
	if d := st.Recent[0]; d.Reason != router.ReasonFallback || len(d.Skipped) != 1 || d.Skipped[0] != "crepes: down" || d.Cluster != "nyu" || d.Source != "ecs" {
		t.Errorf("decision recorded: %+v", d)
	}

	// umass' edges are overloaded (capacity 1: one open client
	// connection each): umass clients go to nyu.
	var conns []net.Conn
	for _, n := range []string{"umass-1", "umass-2"} {
		conn, err := net.Dial("tcp", c.edges[n].Addr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		// a request on it makes sure the edge has accepted it
		fmt.Fprintf(conn, "GET /warm HTTP/1.1\r\nHost: video.netcinema.com\r\n\r\n")
		buf := make([]byte, 1)
		if _, err := conn.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	c.r.CheckNow(ctx)
	r = c.ask(t, "video.kingcdn.com", dns.TypeA, "10.1.0.0/24")
	if a := answerAddr(r); !inCluster(a, "nyu") {
		t.Fatalf("umass overloaded: answer %s, want nyu\n%s", a, r)
	}
	if d := c.r.Status().Recent[0]; len(d.Skipped) != 1 || d.Skipped[0] != "umass: overloaded" {
		t.Errorf("decision: %+v", d)
	}
	for _, conn := range conns {
		conn.Close()
	}

	// every edge down: the origin, last resort
	for _, n := range []string{"umass-1", "umass-2", "nyu-1"} {
		c.edges[n].Shutdown(ctx)
	}
	c.r.CheckNow(ctx)
	r = c.ask(t, "video.kingcdn.com", dns.TypeA, "10.1.0.0/24")
	if a := answerAddr(r); a != originAddr {
		t.Fatalf("all down: answer %s, want the origin %s\n%s", a, originAddr, r)
	}
	if d := c.r.Status().Recent[0]; d.Reason != router.ReasonOrigin || len(d.Skipped) != 3 {
		t.Errorf("decision: %+v", d)
	}

	// metrics: every decision counted
	if n := countMetric(t, c.reg, "applayer_cdn_router_decisions_total", "reason", "origin"); n != 1 {
		t.Errorf("origin decisions %v, want 1", n)
	}
	if n := countMetric(t, c.reg, "applayer_cdn_router_skips_total", "why", "overloaded"); n < 1 {
		t.Errorf("overloaded skips %v", n)
	}
	if n := countMetric(t, c.reg, "applayer_cdn_router_edge_up", "edge", "nyu-1"); n != 0 {
		t.Errorf("nyu-1 up gauge %v, want 0", n)
	}
}

func countMetric(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					if m.Counter != nil {
						sum += m.GetCounter().GetValue()
					} else {
						sum += m.GetGauge().GetValue()
					}
				}
			}
		}
	}
	return sum
}

func TestDecisionsTraced(t *testing.T) {
	c := startCDN(t, 100)
	var mu sync.Mutex
	var got []trace.Event
	cancel := c.bus.Subscribe(trace.SinkFunc(func(e trace.Event) {
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
	}))
	defer cancel()
	c.ask(t, "seg1.kingcdn.com", dns.TypeA, "10.1.7.0/24")
	mu.Lock()
	defer mu.Unlock()
	var route *trace.Event
	for i := range got {
		if got[i].Proto == "cdn/route" {
			route = &got[i]
		}
	}
	if route == nil {
		t.Fatalf("no cdn/route event in %v", got)
	}
	for _, want := range []string{"seg1.kingcdn.com.", "client 10.1.7.0/24 (ecs)", "net umass.edu", "-> umass/", "nearest"} {
		if !strings.Contains(route.Summary, want) {
			t.Errorf("trace %q lacks %q", route.Summary, want)
		}
	}
	if n := testutil.CollectAndCount(c.reg, "applayer_cdn_router_queries_total"); n == 0 {
		t.Error("no query metric")
	}
}

// Within a cluster, each content name has one edge: asked twice, the
// same; names spread over both edges.
func TestHashingWithinCluster(t *testing.T) {
	c := startCDN(t, 100)
	seen := map[string]int{}
	for i := range 40 {
		name := fmt.Sprintf("obj%d.kingcdn.com", i)
		a1 := answerAddr(c.ask(t, name, dns.TypeA, "10.1.0.0/24"))
		a2 := answerAddr(c.ask(t, name, dns.TypeA, "10.1.0.0/24"))
		if a1 != a2 {
			t.Fatalf("%s: %s then %s", name, a1, a2)
		}
		seen[a1]++
	}
	if len(seen) != 2 || seen["192.0.2.11"] < 8 || seen["192.0.2.12"] < 8 {
		t.Errorf("names over the umass edges: %v", seen)
	}
}

func TestMapErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"clusters: []", "clusters: at least one cluster"},
		{"clusters: [{name: a, edges: [{name: e, addr: nope}]}]", "clusters[0].edges[0].addr"},
		{"clusters: [{name: a, edges: [{name: e, addr: 192.0.2.1}]}]\nnetworks: [{prefixes: [10.0.0.0/8], distances: {b: 1}}]", "networks[0].distances.b: no such cluster"},
		{"clusters: [{name: a, edges: [{name: e, addr: 192.0.2.1}]}]\nnetworks: [{prefixes: [10.0.0.0/33], distances: {a: 1}}]", "networks[0].prefixes[0]"},
		{"clusters: [{name: a, edges: [{name: e, addr: 192.0.2.1, control: x}]}]", "control"},
		{"clusters: [{name: a, edges: [{name: e, addr: 192.0.2.1}]}]\nbogus: 1", "bogus"},
		{"clusters: [{name: a, edges: [{name: e, addr: 192.0.2.1}]}, {name: a, edges: [{name: f, addr: 192.0.2.2}]}]", "listed twice"},
	} {
		_, err := router.ParseMap([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
