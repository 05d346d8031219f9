package app

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/web/client"
)

// startTracedLab starts the default topology on a random block with a
// trace bus and an admin listener on a free port, for the scenario and
// trace tests.
func startTracedLab(t *testing.T) (*lab.Plan, *lab.Running, *trace.Bus) {
	t.Helper()
	return startTracedLabWith(t, nil)
}

// startTracedLabWith is startTracedLab with sink (when not nil) subscribed
// before the lab starts.
func startTracedLabWith(t *testing.T, sink trace.Sink) (*lab.Plan, *lab.Running, *trace.Bus) {
	t.Helper()
	topo, err := lab.DefaultTopology()
	if err != nil {
		t.Fatal(err)
	}
	bus := trace.NewBus(nil)
	if sink != nil {
		bus.Subscribe(sink)
	}
	kinds := labKinds()
	for try := 0; ; try++ {
		b := 100 + int(time.Now().UnixNano()%150)
		offset := 20000 + int(time.Now().UnixNano()/7%40)*10
		topo.Lab = lab.Settings{Block: fmt.Sprintf("127.%d.0.0/16", b), PortOffset: &offset, Admin: "127.0.0.1:0", StateDir: t.TempDir()}
		plan, err := lab.NewPlan(topo, kinds, nil)
		if err != nil {
			t.Fatal(err)
		}
		reg := obs.NewRegistry()
		r, err := lab.Build(plan, kinds, service.Deps{Logger: testkit.Logger(t), Metrics: reg, Trace: bus}, reg)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(testkit.Context(t, 60*time.Second)); err != nil {
			if try < 3 && strings.Contains(err.Error(), "in use") {
				continue // another test's lab holds the block or a port
			}
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r.Shutdown(ctx)
		})
		return plan, r, bus
	}
}

// dnsName matches fully qualified names ("gAiA.cS.umass.EDU.").
var dnsName = regexp.MustCompile(`\b([A-Za-z0-9-]+\.)+`)

// maskNarration makes a narration comparable across runs: times (already
// "+T"), the lab's random block, DNS names' random case (0x20), session
// ids, key tags, validators and freshness lifetimes.
func maskNarration(s string, plan *lab.Plan) string {
	prefix := strings.Join(strings.Split(plan.Block.Addr().String(), ".")[:2], ".") + "."
	s = dnsName.ReplaceAllStringFunc(s, strings.ToLower)
	s = strings.ReplaceAll(s, prefix, "127.LAB.")
	s = settleCloses(settleDeliveries(s))
	for _, m := range []struct{ re, with string }{
		{`sid=[0-9a-f]+`, "sid=SID"},
		{`ttl=\d+`, "ttl=TTL"},
		{`tag \d+`, "tag N"},
		{`If-None-Match: "[^"]*"`, `If-None-Match: "ETAG"`},
		// Mail: queue ids, and the sizes of messages whose headers carry
		// dates, ids and signatures.
		{`queued as [0-9a-f]+`, "queued as QID"},
		{`message [0-9a-f]+ from`, "message QID from"},
		{`(  (?:smtp|imap|mail)/?\S*  .*)\(\d+ B\)`, "${1}(N B)"},
		{`BODY\[\]: \d+ bytes`, "BODY[]: N bytes"},
		// DNS responses: their size depends on the query's 0x20 spelling
		// (miekg/dns compresses a name only against the same spelling, so
		// a randomly cased question leaves more or fewer names to point
		// at), which the resolver draws anew each run.
		{`(  dns/(?:udp|tcp)  response .*)\(\d+ B\)`, "${1}(N B)"},
	} {
		s = regexp.MustCompile(m.re).ReplaceAllString(s, m.with)
	}
	return s
}

var connOf = regexp.MustCompile(`\(conn (\d+)\)`)

var deliveredID = regexp.MustCompile(`message ([0-9a-f]+) from .* delivered to `)

// settleDeliveries moves a mail server's local delivery of a message
// right after its "250 queued as ID" when it was traced before it: the
// queue starts delivering as soon as it has the message, on a goroutine
// of its own, while the SMTP session is still tracing its reply. (The
// caller renumbers the lines.)
func settleDeliveries(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		m := deliveredID.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		for j := i + 1; j < len(lines); j++ {
			if strings.Contains(lines[j], "queued as "+m[1]) {
				l := lines[i]
				copy(lines[i:j], lines[i+1:j+1])
				lines[j] = l
				i--
				break
			}
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// settleCloses moves each connection's closing right after the last other
// line of that connection and renumbers the lines: a client closes a
// non-persistent connection on a goroutine of net/http's after reading the
// response, so under load the close may be traced after the next
// connection's first messages. Which connections close, and that each
// closes after its last message, is still checked.
func settleCloses(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	var rest, closes []string
	for _, l := range lines {
		if strings.Contains(l, "[conn.close]") && connOf.MatchString(l) {
			closes = append(closes, l)
		} else {
			rest = append(rest, l)
		}
	}
	for _, c := range closes {
		tag := connOf.FindString(c)
		at := len(rest)
		for i := len(rest) - 1; i >= 0; i-- {
			if strings.Contains(rest[i], tag+" ") {
				at = i + 1
				break
			}
		}
		rest = append(rest[:at], append([]string{c}, rest[at:]...)...)
	}
	num := regexp.MustCompile(`^\s*\d+`)
	for i := range rest {
		rest[i] = num.ReplaceAllString(rest[i], fmt.Sprintf("%3d", i+1))
	}
	return strings.Join(rest, "\n") + "\n"
}

// TestScenarios plays every scenario of the wiring table against one
// in-process default lab and checks each narrated message sequence against
// its golden file (testdata/scenarios/NAME.golden; times masked): the
// iterated resolution walks root -> edu -> umass.edu -> cs.umass.edu and
// the second query is a cache hit; non-persistent HTTP opens and closes a
// connection per object, persistent HTTP uses one; the conditional GET
// gets 304; the shop's cookie comes back on the next request with the
// cart; the web cache misses (and asks gaia) then hits (and does not).
func TestScenarios(t *testing.T) {
	plan, r, bus := startTracedLab(t)
	for _, sc := range labScenarios().All() {
		t.Run(sc.Name, func(t *testing.T) {
			collect := &trace.Collector{}
			defer bus.Subscribe(collect)()
			var notes bytes.Buffer
			steps, err := playScenario(testkit.Context(t, 60*time.Second), &notes, sc, plan, bus, r.AdminAddr(), collect, testkit.Logger(t))
			if err != nil {
				t.Fatalf("%v\nnotes:\n%s", err, notes.String())
			}
			var out bytes.Buffer
			lab.WriteNarration(&out, steps, true)
			masked := maskNarration(out.String(), plan)
			if mask := scenarioMasks[sc.Name]; mask != nil {
				masked = mask(masked)
			}
			testkit.Golden(t, filepath.Join("testdata", "scenarios", sc.Name+".golden"), masked)
			if check := scenarioChecks[sc.Name]; check != nil {
				check(t, steps)
			}
		})
	}
}

// scenarioMasks are the further masks of scenarios whose clients work in
// parallel: what the scheduler decides is masked, what the lesson is
// about stays.
var scenarioMasks = map[string]func(string) string{
	"http2-vs-http1": maskHOL,
}

// scenarioChecks assert a scenario's behaviour on its steps (with their
// times), beyond the golden.
var scenarioChecks = map[string]func(*testing.T, []lab.Step){
	"http2-vs-http1": checkHOL,
}

var (
	holObject    = regexp.MustCompile(`GET /[^:\s]+:(.*)\(\d+ B\)`)
	holDropSize  = regexp.MustCompile(`(\[link\.drop\].*)\(\d+ B\)`)
	holOtherConn = regexp.MustCompile(`\(conn [2-6]\)( \[state\] has GET /OBJECT)`)
)

// maskHOL masks what the scheduler decides in http2-vs-http1: which object
// each of the parallel requests fetches (so their sizes, and the size of
// the chunk that held the lost segment), and, with HTTP/1.1, which of the
// five connections opened after the base file carried which object. What
// stays is the lesson: the lost segment is on conn 1 (the base file's
// connection, whose request goes out a handshake before the others'); the
// other connections' 11 objects complete before conn 1's one; with HTTP/2
// (conn 7) all 12 complete after the lost segment.
func maskHOL(s string) string {
	s = holObject.ReplaceAllString(s, "GET /OBJECT:${1}(N B)")
	s = holDropSize.ReplaceAllString(s, "${1}(N B)")
	return holOtherConn.ReplaceAllString(s, "(conn 2-6)${1}")
}

// checkHOL asserts head-of-line blocking on the real times: in each run
// one segment is lost; with HTTP/2 (one connection) every object completes
// at least a retransmission timeout after the loss; with HTTP/1.1 the
// connection that lost it gets its object that late while the other
// connections' objects complete during the stall.
func checkHOL(t *testing.T, steps []lab.Step) {
	t.Helper()
	var runs [][]lab.Step
	for _, s := range steps {
		if err := trace.Validate(s.Event); err != nil {
			t.Errorf("schema: %v", err)
		}
		if s.Event.Type == trace.State && s.Event.Proto == "http" {
			runs = append(runs, nil)
			continue
		}
		if len(runs) > 0 {
			runs[len(runs)-1] = append(runs[len(runs)-1], s)
		}
	}
	if len(runs) != 2 {
		t.Fatalf("%d runs narrated, want 2 (HTTP/1.1, HTTP/2)", len(runs))
	}
	for i, run := range runs {
		label := []string{"HTTP/1.1", "HTTP/2"}[i]
		var drop *lab.Step
		conns := map[int]bool{}
		type done struct {
			conn int
			at   time.Time
		}
		var objs []done
		for j, s := range run {
			switch {
			case s.Event.Type == trace.ConnOpen:
				conns[s.Conn] = true
			case s.Event.Type == trace.LinkDrop:
				if drop != nil {
					t.Errorf("%s: a second lost segment: %s", label, s.Event.Summary)
				}
				drop = &run[j]
			case s.Event.Type == trace.State && !strings.Contains(s.Event.Summary, "GET /:"):
				objs = append(objs, done{s.Conn, s.Event.Time})
			}
		}
		if drop == nil || drop.Conn == 0 {
			t.Fatalf("%s: no lost segment on a connection narrated", label)
		}
		if len(objs) != 12 {
			t.Fatalf("%s: %d objects complete, want 12", label, len(objs))
		}
		wantConns := map[string]int{"HTTP/1.1": 6, "HTTP/2": 1}[label]
		if len(conns) != wantConns {
			t.Errorf("%s: %d connections, want %d", label, len(conns), wantConns)
		}
		stallEnd := drop.Event.Time.Add(client.HOLStall)
		var during, blocked int
		for _, o := range objs {
			switch {
			case o.conn == drop.Conn && o.at.Before(stallEnd):
				t.Errorf("%s: an object on conn %d, which lost a segment, completed %s after the loss, before the %s retransmission timeout", label, o.conn, o.at.Sub(drop.Event.Time), client.HOLStall)
			case o.conn == drop.Conn:
				blocked++
			case o.at.After(drop.Event.Time) && o.at.Before(stallEnd):
				during++
			}
		}
		t.Logf("%s: %d connections; lost segment on conn %d; %d objects blocked behind it, %d completed on other connections during the stall", label, len(conns), drop.Conn, blocked, during)
		switch label {
		case "HTTP/2":
			if blocked != 12 {
				t.Errorf("HTTP/2: %d of 12 objects waited for the retransmission, want all (one TCP connection)", blocked)
			}
		case "HTTP/1.1":
			if blocked < 1 || during < 1 || blocked+during != 12 {
				t.Errorf("HTTP/1.1: %d objects blocked on the lossy connection, %d completed on the others during the stall; want the others to go on", blocked, during)
			}
		}
	}
}

// issueScenarios are the scenarios the lab issue asks for (docs/lab.md's
// table); each must stay registered, listed and golden-tested.
var issueScenarios = []string{"dns-iterative", "dns-recursive", "http-nonpersistent", "http-persistent", "conditional-get", "cookies", "web-cache", "http2-vs-http1"}

// TestLabScenarioList: `lab scenario --list` names every scenario with
// what it shows; every scenario of the issue is registered and has a
// golden file, and every golden file belongs to a registered scenario; an
// unknown name is refused naming the known ones.
func TestLabScenarioList(t *testing.T) {
	out, errOut, code := cli(t, "lab", "scenario", "--list")
	if code != 0 || !strings.HasPrefix(out, "SCENARIO") {
		t.Fatalf("--list: exit %d\n%s%s", code, out, errOut)
	}
	scs := labScenarios()
	for _, sc := range scs.All() {
		if !strings.Contains(out, sc.Name+"  ") || !strings.Contains(out, sc.Summary) {
			t.Errorf("--list lacks %s and its summary:\n%s", sc.Name, out)
		}
		if sc.Summary == "" || sc.Figure == "" || sc.Run == nil {
			t.Errorf("%s: summary, figure and Run are required", sc.Name)
		}
	}
	for _, name := range issueScenarios {
		if _, ok := scs.Get(name); !ok {
			t.Errorf("scenario %s is not registered", name)
		}
	}
	goldens, err := filepath.Glob(filepath.Join("testdata", "scenarios", "*.golden"))
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, g := range goldens {
		name := strings.TrimSuffix(filepath.Base(g), ".golden")
		have[name] = true
		if _, ok := scs.Get(name); !ok {
			t.Errorf("%s: no registered scenario %s", g, name)
		}
	}
	for _, sc := range scs.All() {
		if !have[sc.Name] {
			t.Errorf("scenario %s has no golden file (TestScenarios would fail: run it with %s=1 and check the file)", sc.Name, testkit.UpdateGoldenEnv)
		}
	}
	if _, errOut, code := cli(t, "lab", "scenario", "nope"); code == 0 || !strings.Contains(errOut, `unknown scenario "nope" (known: conditional-get, cookies,`) {
		t.Errorf("unknown scenario: exit %d, %q", code, errOut)
	}
}
