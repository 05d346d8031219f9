package authority

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

const zoneV1 = `$ORIGIN example.net.
$TTL 60
@    SOA ns1 hostmaster %d 1 1 30 60
@    NS  ns1
ns1  A   192.0.2.1
www  A   192.0.2.80
%s
`

func writeZone(t *testing.T, path string, serial int, extra string) {
	t.Helper()
	writeZoneRefresh(t, path, serial, 1, extra)
}

// writeZoneRefresh writes zoneV1 with the SOA refresh and retry given (in
// seconds).
func writeZoneRefresh(t *testing.T, path string, serial, refresh int, extra string) {
	t.Helper()
	text := strings.Replace(fmt.Sprintf(zoneV1, serial, extra), fmt.Sprintf("%d 1 1 30 60", serial), fmt.Sprintf("%d %d %d 3600 60", serial, refresh, refresh), 1)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// Make sure the change is seen even within the file system's mtime
	// granularity.
	future := time.Now().Add(time.Duration(serial) * time.Second)
	os.Chtimes(path, future, future)
}

func randomBlock() netip.Addr {
	var b [2]byte
	rand.Read(b[:])
	return netip.AddrFrom4([4]byte{127, 2 + b[0]%250, b[1], 0})
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReloadKeepsOldZoneOnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "example.net.zone")
	writeZone(t, path, 1, "")
	s := newTestServer(t, Config{Zones: []ZoneConfig{{Origin: "example.net", File: path}}})
	writeZone(t, path, 2, "bad A 192.0.2.999")
	err := s.Reload(false)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line: 7") {
		t.Fatalf("reload error %v lacks file:line", err)
	}
	if s.Zone("example.net").SOA.Serial != 1 {
		t.Fatal("broken file replaced the zone")
	}
	writeZone(t, path, 3, "new A 192.0.2.7")
	if err := s.Reload(false); err != nil {
		t.Fatal(err)
	}
	if z := s.Zone("example.net"); z.SOA.Serial != 3 || z.Node("new.example.net.") == nil {
		t.Fatal("good file not loaded")
	}
}

// TestSecondaryFollowsPrimary: our secondary transfers from our primary,
// is told of a change by NOTIFY and picks it up.
func TestSecondaryFollowsPrimary(t *testing.T) {
	base := randomBlock()
	priAddr, secAddr := base.Next(), base.Next().Next()
	path := filepath.Join(t.TempDir(), "example.net.zone")
	writeZone(t, path, 1, "")
	port := uint16(freePort(t, secAddr))
	sec := newTestServer(t, Config{Addr: netip.AddrPortFrom(secAddr, port).String(), Zones: []ZoneConfig{{Origin: "example.net", Primary: netip.AddrPortFrom(priAddr, port).String()}}})
	start(t, sec)
	pri := newTestServer(t, Config{
		Addr:          netip.AddrPortFrom(priAddr, port).String(),
		Zones:         []ZoneConfig{{Origin: "example.net", File: path}},
		AllowTransfer: []string{secAddr.String()},
		Notify:        []string{netip.AddrPortFrom(secAddr, port).String()},
	})
	start(t, pri)
	eventually(t, 10*time.Second, "first transfer", func() bool { return sec.Zone("example.net") != nil })
	writeZone(t, path, 2, "new A 192.0.2.7")
	if err := pri.Reload(false); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "notified transfer", func() bool {
		z := sec.Zone("example.net")
		return z.SOA.Serial == 2 && z.Node("new.example.net.") != nil
	})
	q := new(dns.Msg)
	q.SetQuestion("new.example.net.", dns.TypeA)
	if m := sec.Handle(q, client, false); !m.Authoritative || len(m.Answer) != 1 {
		t.Errorf("secondary answer %v", m)
	}
}

func freePort(t *testing.T, a netip.Addr) int {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(a, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestSecondaryFromNSD: our secondary pulls a zone from NSD by AXFR.
func TestSecondaryFromNSD(t *testing.T) {
	nsd := peer(t, "nsd")
	dir := t.TempDir()
	base := randomBlock()
	nsdAddr := base.Next()
	port := freePort(t, nsdAddr)
	writeZone(t, filepath.Join(dir, "example.net.zone"), 7, "from-nsd TXT \"hello\"")
	conf := fmt.Sprintf(`server:
  ip-address: %s
  port: %d
  username: ""
  chroot: ""
  zonesdir: %q
  database: ""
  pidfile: %q
  xfrdfile: %q
  zonelistfile: %q
  logfile: %q
  server-count: 1
  verbosity: 1
remote-control:
  control-enable: no
zone:
  name: example.net
  zonefile: example.net.zone
  provide-xfr: 127.0.0.0/8 NOKEY
`, nsdAddr, port, dir, filepath.Join(dir, "nsd.pid"), filepath.Join(dir, "xfrd.state"), filepath.Join(dir, "zone.list"), filepath.Join(dir, "nsd.log"))
	cf := filepath.Join(dir, "nsd.conf")
	os.WriteFile(cf, []byte(conf), 0o644)
	cmd := exec.Command(nsd, "-d", "-c", cf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// nsd's output is collected and logged by the test itself at its end:
	// a goroutine calling t.Logf could run after the test completed (a
	// panic that takes down the whole package's run).
	var nsdOut testkit.Buffer
	cmd.Stdout, cmd.Stderr = &nsdOut, &nsdOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer func() { t.Logf("nsd output:\n%s", nsdOut.String()) }()
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	primary := netip.AddrPortFrom(nsdAddr, uint16(port)).String()
	c := &dns.Client{Timeout: time.Second}
	eventually(t, 10*time.Second, "nsd to answer", func() bool {
		q := new(dns.Msg)
		q.SetQuestion("example.net.", dns.TypeSOA)
		r, _, err := c.Exchange(q, primary)
		return err == nil && len(r.Answer) == 1
	})
	sec := newTestServer(t, Config{Addr: base.Next().Next().String() + ":0", Zones: []ZoneConfig{{Origin: "example.net", Primary: primary}}})
	start(t, sec)
	eventually(t, 10*time.Second, "transfer from nsd", func() bool { return sec.Zone("example.net") != nil })
	z := sec.Zone("example.net")
	if z.SOA.Serial != 7 || z.Node("from-nsd.example.net.") == nil || z.Node("www.example.net.") == nil {
		t.Fatalf("transferred zone: serial %d, %d records", z.SOA.Serial, z.Len())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = ctx
}

func TestApplyIXFR(t *testing.T) {
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	old := []dns.RR{rr("example.net. 60 SOA ns1.example.net. h.example.net. 1 1 1 30 60"), rr("www.example.net. 60 A 192.0.2.80"), rr("old.example.net. 60 A 192.0.2.1")}
	ixfr := []dns.RR{
		rr("example.net. 60 SOA ns1.example.net. h.example.net. 2 1 1 30 60"),
		rr("example.net. 60 SOA ns1.example.net. h.example.net. 1 1 1 30 60"),
		rr("old.example.net. 60 A 192.0.2.1"),
		rr("example.net. 60 SOA ns1.example.net. h.example.net. 2 1 1 30 60"),
		rr("new.example.net. 60 A 192.0.2.2"),
		rr("example.net. 60 SOA ns1.example.net. h.example.net. 2 1 1 30 60"),
	}
	got, err := applyTransfer(old, ixfr)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range got {
		names = append(names, r.Header().Name+dns.TypeToString[r.Header().Rrtype])
	}
	if s := strings.Join(names, " "); s != "example.net.SOA www.example.net.A new.example.net.A" {
		t.Errorf("after IXFR: %s", s)
	}
	if got[0].(*dns.SOA).Serial != 2 {
		t.Error("serial not updated")
	}
}

// TestSecondaryFromKnotIXFR: our secondary pulls a zone from Knot by AXFR,
// then, after the zone changes on Knot, by IXFR (Knot's journal holds the
// difference) following Knot's NOTIFY. The SOA refresh is 60 s, so only
// the NOTIFY can explain a transfer within seconds. Knot sends its NOTIFY
// from the host's default source address, not from the address it
// listens on: the operator lists it (allow_notify), as for NSD and Knot.
func TestSecondaryFromKnotIXFR(t *testing.T) {
	knotc := peer(t, "knotc")
	k := startKnot(t, "")
	sec, logs := newLoggedServer(t, Config{Addr: netip.AddrPortFrom(k.secAddr, uint16(k.port)).String(),
		Zones: []ZoneConfig{{Origin: "example.net", Primary: k.primary, AllowNotify: []string{"127.0.0.0/8"}}}})
	start(t, sec)
	eventually(t, 10*time.Second, "AXFR from knot", func() bool { return sec.Zone("example.net") != nil })
	checkTransfer(t, logs, 10, "AXFR")
	changeKnotZone(t, knotc, k, 11, "added TXT \"by ixfr\"")
	followNotify(t, sec, logs, 11)
	if z := sec.Zone("example.net"); z.Node("added.example.net.") == nil || z.Node("www.example.net.") == nil {
		t.Error("IXFR lost or missed a record")
	}
	checkTransfer(t, logs, 11, "IXFR")
	if !logShows(k.logs, "IXFR, outgoing") {
		t.Errorf("knot did not serve an IXFR:\n%s", k.logs.String())
	}
}

// changeKnotZone rewrites Knot's zone file with serial and extra records
// and has Knot reload it (Knot then sends NOTIFY).
func changeKnotZone(t *testing.T, knotc string, k *knot, serial int, extra string) {
	t.Helper()
	writeZoneRefresh(t, k.zoneFile, serial, 60, extra)
	if out, err := exec.Command(knotc, "-s", k.sock, "zone-reload", "example.net").CombinedOutput(); err != nil {
		t.Fatalf("knotc: %v %s", err, out)
	}
}

// followNotify waits for the secondary to reach serial and proves the
// transfer followed a NOTIFY: the NOTIFY is logged as accepted before the
// load, and the load came well within the SOA refresh of 60 s.
func followNotify(t *testing.T, sec *Server, logs *testkit.Buffer, serial uint32) {
	t.Helper()
	began := time.Now()
	eventually(t, 20*time.Second, fmt.Sprintf("serial %d after NOTIFY (refresh is 60 s)", serial), func() bool {
		z := sec.Zone("example.net")
		return z != nil && z.SOA.Serial == serial
	})
	if d := time.Since(began); d > 20*time.Second {
		t.Errorf("transfer took %v: not driven by the NOTIFY", d)
	}
	eventually(t, 5*time.Second, fmt.Sprintf("the load of serial %d in the log", serial), func() bool {
		return strings.Contains(logs.String(), fmt.Sprintf("serial=%d", serial))
	})
	l := logs.String()
	n := strings.Index(l, "msg=\"notify accepted\"")
	loaded := strings.Index(l, fmt.Sprintf("serial=%d", serial))
	if n < 0 || loaded < 0 || n > loaded {
		t.Errorf("log does not show NOTIFY accepted before the load of serial %d:\n%s", serial, l)
	}
}

// checkTransfer fails unless the secondary's log shows serial loaded by a
// transfer of kind (AXFR or IXFR).
func checkTransfer(t *testing.T, logs *testkit.Buffer, serial uint32, kind string) {
	t.Helper()
	want := fmt.Sprintf("serial=%d", serial)
	// The zone is swapped in just before its load is logged: give the
	// line a moment to be written.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), want+" ") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "msg=\"secondary zone loaded\"") && strings.Contains(line, want+" ") {
			if !strings.Contains(line, "transfer="+kind) {
				t.Errorf("serial %d: want a %s, log says: %s", serial, kind, line)
			}
			return
		}
	}
	t.Errorf("no load of serial %d in the log:\n%s", serial, logs.String())
}

// logShows reports whether buf holds s, waiting up to 5 s for a peer's
// log line to be written.
func logShows(buf *testkit.Buffer, s string) bool {
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), s) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// newLoggedServer is newTestServer with the server's log also kept in a
// buffer the test reads.
func newLoggedServer(t *testing.T, cfg Config) (*Server, *testkit.Buffer) {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	buf := new(testkit.Buffer)
	log := slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), buf), &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(cfg, service.Deps{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return s, buf
}

// knot is a Knot primary for example.net started by startKnot.
type knot struct {
	zoneFile string          // the zone's file (serial 10 at the start)
	sock     string          // knotc's control socket
	primary  string          // Knot's address
	secAddr  netip.Addr      // where Knot sends NOTIFY, at the same port
	port     int             // Knot's port, and the secondary's
	logs     *testkit.Buffer // Knot's log
}

// startKnot starts Knot as the primary for example.net (serial 10) on a
// random 127 block, allowing transfers to 127.0.0.0/8 and sending NOTIFY
// to secAddr at the same port; with a TSIG secret, transfers and NOTIFY
// need and carry the key xfr-key. It returns once Knot answers.
func startKnot(t *testing.T, secret string) *knot {
	t.Helper()
	knotd := peer(t, "knotd")
	dir := t.TempDir()
	base := randomBlock()
	knotAddr, secAddr := base.Next(), base.Next().Next()
	port := freePort(t, knotAddr)
	zf := filepath.Join(dir, "example.net.zone")
	writeZoneRefresh(t, zf, 10, 60, "")
	sock := filepath.Join(dir, "knot.sock")
	keySection, useKey := "", ""
	if secret != "" {
		keySection = "key:\n  - id: xfr-key\n    algorithm: hmac-sha256\n    secret: " + secret + "\n"
		useKey = "    key: xfr-key\n"
	}
	conf := fmt.Sprintf(`server:
  listen: %s@%d
  rundir: %q
database:
  storage: %q
control:
  listen: %q
log:
  - target: stderr
    any: info
%sremote:
  - id: sec
    address: %s@%d
%sacl:
  - id: xfr
    address: 127.0.0.0/8
%s    action: transfer
zone:
  - domain: example.net
    file: %q
    zonefile-load: difference
    journal-content: changes
    zonefile-sync: -1
    acl: xfr
    notify: sec
`, knotAddr, port, dir, dir, sock, keySection, secAddr, port, useKey, useKey, zf)
	cf := filepath.Join(dir, "knot.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(knotd, "-c", cf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	k := &knot{zoneFile: zf, sock: sock, secAddr: secAddr, port: port, logs: new(testkit.Buffer),
		primary: netip.AddrPortFrom(knotAddr, uint16(port)).String()}
	cmd.Stderr = k.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		cmd.Wait()
	})
	c := &dns.Client{Timeout: time.Second}
	eventually(t, 10*time.Second, "knot to answer", func() bool {
		q := new(dns.Msg)
		q.SetQuestion("example.net.", dns.TypeSOA)
		r, _, err := c.Exchange(q, k.primary)
		if err != nil || len(r.Answer) != 1 {
			return false
		}
		soa, ok := r.Answer[0].(*dns.SOA)
		return ok && soa.Serial == 10
	})
	return k
}

func TestIXFROut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "example.net.zone")
	writeZone(t, path, 1, "old A 192.0.2.1")
	s := newTestServer(t, Config{Zones: []ZoneConfig{{Origin: "example.net", File: path}}, AllowTransfer: []string{"127.0.0.1"}})
	start(t, s)
	writeZone(t, path, 2, "new A 192.0.2.2")
	if err := s.Reload(false); err != nil {
		t.Fatal(err)
	}
	writeZone(t, path, 3, "new A 192.0.2.2\nnewer A 192.0.2.3")
	if err := s.Reload(false); err != nil {
		t.Fatal(err)
	}
	ixfr := func(serial uint32) []string { return ixfrSummary(t, s.Addrs()[0].String(), serial) }
	if got := strings.Join(ixfr(1), " "); got != "SOA3 SOA1 old SOA2 new SOA2 SOA3 newer SOA3" {
		t.Errorf("IXFR from 1: %s", got)
	}
	if got := strings.Join(ixfr(2), " "); got != "SOA3 SOA2 SOA3 newer SOA3" {
		t.Errorf("IXFR from 2: %s", got)
	}
	if got := ixfr(3); len(got) != 1 {
		t.Errorf("IXFR when current: %v", got)
	}
	if got := ixfr(0); len(got) < 5 || got[1] == "SOA0" {
		t.Errorf("IXFR from an unknown serial should be a full transfer: %v", got)
	}
	{
		h, p := hostPort(t, s)
		out, err := exec.Command(peer(t, "kdig"), "@"+h, "-p", p, "example.net", "IXFR=1").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "newer.example.net.") || strings.Count(string(out), "SOA") < 5 {
			t.Errorf("kdig IXFR=1: %v\n%s", err, out)
		}
	}
}

// ixfrSummary asks addr for an IXFR of example.net. from serial and
// returns the records received in order: "SOA<serial>" for an SOA, the
// first label of the owner name for anything else.
func ixfrSummary(t *testing.T, addr string, serial uint32) []string {
	t.Helper()
	q := new(dns.Msg)
	q.SetIxfr("example.net.", serial, "ns1.example.net.", "hostmaster.example.net.")
	env, err := (&dns.Transfer{}).In(q, addr)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for e := range env {
		if e.Error != nil {
			t.Fatal(e.Error)
		}
		for _, rr := range e.RR {
			if soa, ok := rr.(*dns.SOA); ok {
				out = append(out, fmt.Sprintf("SOA%d", soa.Serial))
			} else {
				out = append(out, strings.Split(rr.Header().Name, ".")[0])
			}
		}
	}
	return out
}

// TestSecondaryExpires: when the primary is gone for longer than the
// SOA's expire, the secondary stops answering for the zone.
func TestSecondaryExpires(t *testing.T) {
	base := randomBlock()
	priAddr, secAddr := base.Next(), base.Next().Next()
	port := uint16(freePort(t, priAddr))
	text := "$TTL 60\n@ SOA ns1 hostmaster 1 1 1 2 60\n@ NS ns1\nns1 A 192.0.2.1\n"
	pri, err := New(Config{Addr: netip.AddrPortFrom(priAddr, port).String(), Zones: []ZoneConfig{{Origin: "example.net", Text: text}}, AllowTransfer: []string{"127.0.0.0/8"}}, service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := pri.Start(testkit.Context(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	sec := newTestServer(t, Config{Addr: netip.AddrPortFrom(secAddr, 0).String(), Zones: []ZoneConfig{{Origin: "example.net", Primary: netip.AddrPortFrom(priAddr, port).String()}}})
	start(t, sec)
	eventually(t, 10*time.Second, "first transfer", func() bool { return sec.Zone("example.net") != nil })
	if err := pri.Shutdown(testkit.Context(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "expiry", func() bool { return sec.Zone("example.net") == nil })
	q := new(dns.Msg)
	q.SetQuestion("ns1.example.net.", dns.TypeA)
	if m := sec.Handle(q, client, false); m.Rcode != dns.RcodeRefused {
		t.Errorf("expired zone answered %s", dns.RcodeToString[m.Rcode])
	}
}

// TestIXFRJournalSurvivesRestart: with a state dir, the differences are
// on disk, so a restarted primary still answers IXFR incrementally, and a
// change made while it was down becomes one more difference.
func TestIXFRJournalSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "example.net.zone")
	state := filepath.Join(dir, "state")
	cfg := Config{Zones: []ZoneConfig{{Origin: "example.net", File: path}}, AllowTransfer: []string{"127.0.0.1"}, StateDir: state}
	writeZone(t, path, 1, "old A 192.0.2.1")
	s1 := newTestServer(t, cfg)
	writeZone(t, path, 2, "new A 192.0.2.2")
	if err := s1.Reload(false); err != nil {
		t.Fatal(err)
	}
	// s1 is never started: New and Reload alone write the journal. The
	// "restarted" server reads it; the file changed while it was down.
	writeZone(t, path, 3, "new A 192.0.2.2\nnewer A 192.0.2.3")
	s2 := newTestServer(t, cfg)
	start(t, s2)
	ixfr := func(serial uint32) string { return strings.Join(ixfrSummary(t, s2.Addrs()[0].String(), serial), " ") }
	if got := ixfr(1); got != "SOA3 SOA1 old SOA2 new SOA2 SOA3 newer SOA3" {
		t.Errorf("IXFR from 1 after restart: %s", got)
	}
	// A third start with the same file: same version, differences kept.
	s3 := newTestServer(t, cfg)
	if got := len(s3.sources["example.net."].deltas); got != 2 {
		t.Errorf("deltas after a restart with no change: %d, want 2", got)
	}
	{
		h, p := hostPort(t, s2)
		out, err := exec.Command(peer(t, "kdig"), "@"+h, "-p", p, "example.net", "IXFR=2").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "newer.example.net.") || strings.Contains(string(out), "www.example.net.") {
			t.Errorf("kdig IXFR=2 after restart: %v\n%s", err, out)
		}
	}
}

// TestStateLeftoversCleaned: temporary files a crash or a full disk left
// in the state dir (this version's and the older "<file>.tmp") are removed
// at start; the journal itself is kept and used.
func TestStateLeftoversCleaned(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "example.net.zone")
	state := filepath.Join(dir, "state")
	cfg := Config{Zones: []ZoneConfig{{Origin: "example.net", File: path}}, AllowTransfer: []string{"127.0.0.1"}, StateDir: state}
	writeZone(t, path, 1, "old A 192.0.2.1")
	s1 := newTestServer(t, cfg)
	writeZone(t, path, 2, "new A 192.0.2.2")
	if err := s1.Reload(false); err != nil {
		t.Fatal(err)
	}
	jdir := filepath.Join(state, "journal")
	leftovers := []string{"example.net.ixfr.tmp", ".atomic-example.net.zone-123456"}
	for _, n := range leftovers {
		if err := os.WriteFile(filepath.Join(jdir, n), []byte("half"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s2 := newTestServer(t, cfg)
	for _, n := range leftovers {
		if _, err := os.Stat(filepath.Join(jdir, n)); err == nil {
			t.Errorf("leftover %s still there after start", n)
		}
	}
	if got := len(s2.sources["example.net."].deltas); got != 1 {
		t.Errorf("journal after cleaning: %d differences, want 1", got)
	}
}

// TestSecondaryKeepsZoneAcrossRestart: a secondary with a state dir keeps
// each transferred zone on disk; restarted while the primary is down, it
// serves the copy at once and until the SOA expire (60 s here, on a
// settable clock) runs out from the last successful refresh, as NSD and
// Knot do. A copy already expired at start is not served.
func TestSecondaryKeepsZoneAcrossRestart(t *testing.T) {
	base := randomBlock()
	priAddr, secAddr := base.Next(), base.Next().Next()
	port := uint16(freePort(t, priAddr))
	text := "$TTL 60\n@ SOA ns1 hostmaster 7 1 1 60 60\n@ NS ns1\nns1 A 192.0.2.1\nwww A 192.0.2.80\n"
	pri, err := New(Config{Addr: netip.AddrPortFrom(priAddr, port).String(), Zones: []ZoneConfig{{Origin: "example.net", Text: text}}, AllowTransfer: []string{"127.0.0.0/8"}}, service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := pri.Start(testkit.Context(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	clock := testkit.NewClock(time.Now())
	cfg := Config{Addr: netip.AddrPortFrom(secAddr, 0).String(), StateDir: t.TempDir(),
		Zones: []ZoneConfig{{Origin: "example.net", Primary: netip.AddrPortFrom(priAddr, port).String()}}}
	newSec := func() *Server {
		s, err := New(cfg, service.Deps{Logger: testkit.Logger(t), Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	sec1 := newSec()
	if err := sec1.Start(testkit.Context(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "first transfer", func() bool { return sec1.Zone("example.net") != nil })
	if err := sec1.Shutdown(testkit.Context(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := pri.Shutdown(testkit.Context(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	www := func(s *Server) *dns.Msg {
		q := new(dns.Msg)
		q.SetQuestion("www.example.net.", dns.TypeA)
		return s.Handle(q, client, false)
	}

	clock.Advance(30 * time.Second)
	sec2 := newSec()
	if m := www(sec2); m.Rcode != dns.RcodeSuccess || !m.Authoritative || len(m.Answer) != 1 {
		t.Fatalf("restarted secondary, primary down: %s AA=%v answers %d, want the kept copy", dns.RcodeToString[m.Rcode], m.Authoritative, len(m.Answer))
	}
	start(t, sec2)
	time.Sleep(2500 * time.Millisecond) // two failed refreshes (retry is 1 s)
	if sec2.Zone("example.net") == nil || sec2.Zone("example.net").SOA.Serial != 7 {
		t.Fatal("the kept copy stopped being served before expire")
	}
	clock.Advance(31 * time.Second) // 61 s since the last refresh
	eventually(t, 10*time.Second, "expiry of the kept copy", func() bool { return sec2.Zone("example.net") == nil })
	if m := www(sec2); m.Rcode != dns.RcodeRefused {
		t.Errorf("expired copy answered %s", dns.RcodeToString[m.Rcode])
	}

	sec3 := newSec()
	if m := www(sec3); m.Rcode != dns.RcodeRefused {
		t.Errorf("copy expired before the start answered %s", dns.RcodeToString[m.Rcode])
	}
}
