package resolver

import (
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/service"
)

// BenchmarkCacheEntryMemory measures the live heap one cached answer costs
// (its RRset in the RRset cache plus its packed reply), as the fill phase
// of bench/dns-resolver.sh creates them: go test -run - -bench CacheEntryMemory.
func BenchmarkCacheEntryMemory(b *testing.B) {
	const n = 100000
	for range b.N {
		s, err := New(Config{Listen: "127.0.0.1:0", RootHints: []string{"127.0.0.1"}, CacheSize: 2 * n}, service.Deps{})
		if err != nil {
			b.Fatal(err)
		}
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
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
			s.store(pq.key, req, &result{answer: []dns.RR{rr}})
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		if s.rr.len() != n || s.msgs.len() != n {
			b.Fatalf("cached %d rrsets, %d replies", s.rr.len(), s.msgs.len())
		}
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/n, "B/entry")
		runtime.KeepAlive(s)
	}
}
