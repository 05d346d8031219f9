package resolver

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

// BenchmarkCacheEntryMemory measures the live heap one cached answer costs
// (its RRset in the RRset cache plus its packed reply), as the fill phase
// of bench/dns-resolver.sh creates them: go test -run - -bench CacheEntryMemory.
func BenchmarkCacheEntryMemory(b *testing.B) {
	const n = 100000
	for range b.N {
		s, live := filledHeap(b, n)
		if s.rr.len() != n || s.msgs.len() != n {
			b.Fatalf("cached %d rrsets, %d replies", s.rr.len(), s.msgs.len())
		}
		b.ReportMetric(live/n, "B/entry")
		runtime.KeepAlive(s)
	}
}

// filledHeap makes a resolver whose caches hold n answers (fillCache) and
// returns it with the live heap, in bytes, that filling them took.
func filledHeap(tb testing.TB, n int) (*Server, float64) {
	tb.Helper()
	s, err := New(Config{Listen: "127.0.0.1:0", RootHints: []string{"127.0.0.1"}, CacheSize: 2 * n}, service.Deps{})
	if err != nil {
		tb.Fatal(err)
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	fillCache(tb, s, n, false)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	return s, float64(m1.HeapAlloc) - float64(m0.HeapAlloc)
}

// BenchmarkCacheFillRSS measures what 100,000 cached answers cost in
// resident memory (VmRSS growth, Go GC headroom included) and the CPU
// time per insert of the fill, with the GC target from
// APPLAYER_GC_PERCENT (what `applayer dns resolver --gc-percent` sets for
// the process; unset: the runtime's default).
// Run it in a fresh process per setting, once:
//
//	APPLAYER_GC_PERCENT=50 go test -run - -bench CacheFillRSS -benchtime 1x ./dns/resolver
func BenchmarkCacheFillRSS(b *testing.B) {
	const n = 100000
	gc := 0
	if v := os.Getenv("APPLAYER_GC_PERCENT"); v != "" {
		var err error
		if gc, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
		defer debug.SetGCPercent(debug.SetGCPercent(gc))
	}
	for range b.N {
		s, err := New(Config{Listen: "127.0.0.1:0", RootHints: []string{"127.0.0.1"}, CacheSize: 2 * n}, service.Deps{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		r0, c0 := vmRSS(b), cpuTime()
		fillCache(b, s, n, true)
		r1, c1 := vmRSS(b), cpuTime()
		b.ReportMetric(float64(r1-r0)/1024, "RSS-MiB/100k")
		b.ReportMetric(float64(c1-c0)/n, "cpu-ns/insert")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.Shutdown(ctx)
		cancel()
	}
}

// fillCache caches n answers n<i>.fill.bench. A 192.0.2.200 in s, each
// as an RRset and a reply, as the fill phase of bench/dns-resolver.sh
// does; with missGarbage it also makes the garbage a real miss makes.
func fillCache(b testing.TB, s *Server, n int, missGarbage bool) {
	b.Helper()
	now := time.Now()
	var pq query
	for i := range n {
		name := fmt.Sprintf("n%d.fill.bench.", i)
		req := new(dns.Msg)
		req.SetQuestion(name, dns.TypeA)
		wire, _ := req.Pack()
		if err := parseQuery(wire, &pq); err != nil {
			b.Fatal(err)
		}
		rr := &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 86400}, A: net.IPv4(192, 0, 2, 200).To4()}
		s.putRRs(name, dns.TypeA, []dns.RR{rr}, nil, rankAnswer, verdict{}, now)
		s.store(pq.Key, req, &result{answer: []dns.RR{rr}})
		if !missGarbage {
			continue
		}
		// The garbage a real miss makes (reply parsed and packed).
		m := new(dns.Msg)
		m.SetReply(req)
		m.Answer = []dns.RR{rr}
		if w, err := m.Pack(); err == nil {
			_ = m.Unpack(w)
		}
	}
}

// vmRSS returns this process's resident set size in KiB.
func vmRSS(b *testing.B) int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		testkit.Skip(b, "no /proc/self/status")
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	testkit.Skip(b, "no VmRSS")
	return 0
}

// cpuTime returns the process's user+system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
