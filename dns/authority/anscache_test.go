package authority

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/dnsserver"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

// floodRandomNames sends n queries for distinct random names under
// example.com over UDP (NXDOMAIN answers, all cacheable) and waits for
// each answer. It returns the last query sent.
func floodRandomNames(t *testing.T, addr string, n int) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2048)
	var wire []byte
	for i := range n {
		q := new(dns.Msg)
		q.SetQuestion(fmt.Sprintf("r%08x-%d.example.com.", uint32(i*2654435761), i), dns.TypeA)
		q.SetEdns0(1232, i%2 == 0)
		if wire, err = q.Pack(); err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(wire); err != nil {
			t.Fatal(err)
		}
		nr, err := c.Read(buf)
		if err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		if nr < 12 || buf[0] != wire[0] || buf[1] != wire[1] || buf[3]&0xf != dns.RcodeNameError {
			t.Fatalf("query %d: bad answer % x", i, buf[:nr])
		}
	}
	return wire
}

// TestAnswerCacheBoundedUnderRandomNames is issue 10 item 4: a flood of
// random names grew one 200,000-entry cache per UDP socket without bound.
// The shared cache stays within its byte budget, keeps the newest answers
// and still answers from the cache.
func TestAnswerCacheBoundedUnderRandomNames(t *testing.T) {
	const bound = 256 << 10
	// The answer table answers random names without the cache: off here.
	s := newTestServer(t, Config{UDPSockets: 2, AnswerCacheBytes: bound, AnswerTableBytes: -1})
	start(t, s)
	const n = 6000 // about 1.6 MB of entries if nothing were evicted
	last := floodRandomNames(t, s.Addrs()[1].String(), n)
	if got := s.cache.bytes(); got > bound || got < bound/2 {
		t.Errorf("cache holds %d bytes after %d random names, want at most %d (and not nearly empty)", got, n, bound)
	}
	if e := s.cache.entries(); e >= n/2 || e == 0 {
		t.Errorf("cache holds %d entries after %d random names", e, n)
	}
	if s.cache.get(s.zones.Load(), last, nil, s.deps.Now()) == nil {
		t.Error("the newest answer was evicted")
	}
}

// TestAnswerCacheAgesOut: cached answers are not served past
// AnswerCacheAge and the sweep removes them, so an idle server gives the
// memory of a flood back.
func TestAnswerCacheAgesOut(t *testing.T) {
	clock := testkit.NewClock(time.Now())
	s, err := New(Config{Addr: "127.0.0.1:0", AnswerCacheAge: 0, AnswerTableBytes: -1, Zones: []ZoneConfig{{Origin: "example.com.", File: "testdata/example.com.zone"}}},
		service.Deps{Logger: testkit.Logger(t), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	start(t, s)
	last := floodRandomNames(t, s.Addrs()[1].String(), 200)
	if e := s.cache.entries(); e != 200 {
		t.Fatalf("%d entries cached, want 200", e)
	}
	zs := s.zones.Load()
	if s.cache.get(zs, last, nil, clock.Now()) == nil {
		t.Fatal("fresh answer not served from the cache")
	}
	clock.Advance(31 * time.Second) // past the 30 s default
	if s.cache.get(zs, last, nil, clock.Now()) != nil {
		t.Error("answer served past its age")
	}
	s.cache.sweep(clock.Now())
	if e, b := s.cache.entries(), s.cache.bytes(); e != 0 || b != 0 {
		t.Errorf("after the sweep: %d entries, %d bytes", e, b)
	}
}

// TestAnswerCacheByteAccounting: the accounting matches the entries held
// through puts, replacements after a zone change, and trims.
func TestAnswerCacheByteAccounting(t *testing.T) {
	c := newAnswerCache(cacheShards*4096, time.Minute)
	now := time.Now()
	zs1, zs2 := &zoneSet{}, &zoneSet{}
	for i := range 3000 {
		zs := zs1
		if i >= 2000 {
			zs = zs2 // the zones changed: old answers are dropped
		}
		q := new(dns.Msg)
		q.SetQuestion(fmt.Sprintf("n%d.example.", i), dns.TypeA)
		wq, _ := q.Pack()
		a := new(dns.Msg)
		a.SetRcode(q, dns.RcodeNameError)
		wa, _ := a.Pack()
		c.put(zs, wq, wa, now)
		got := c.get(zs, wq, nil, now)
		if string(got) != string(wa) {
			t.Fatalf("put %d: got % x, want % x", i, got, wa)
		}
	}
	var sum int64
	for i := range c.shards {
		sh := &c.shards[i]
		var shard int64
		for _, e := range sh.m {
			shard += e.size()
		}
		if shard != sh.bytes || sh.bytes > c.maxShard {
			t.Errorf("shard %d: accounted %d, holds %d, limit %d", i, sh.bytes, shard, c.maxShard)
		}
		if sh.zs == zs1 && len(sh.m) > 0 {
			t.Errorf("shard %d keeps answers of replaced zones", i)
		}
		sum += shard
	}
	if sum != c.bytes() || sum > cacheShards*4096 {
		t.Errorf("total %d, accounted %d", sum, c.bytes())
	}
}

// BenchmarkServeCachedUDP is the hot path of a UDP query answered from
// the answer cache through the DNS server seam: it must not allocate.
func BenchmarkServeCachedUDP(b *testing.B) {
	s := newTestServer(b, Config{AnswerTableBytes: -1})
	q := new(dns.Msg)
	q.SetQuestion("www.example.com.", dns.TypeA)
	q.SetEdns0(1232, false)
	wire, _ := q.Pack()
	out := make([]byte, 0, 4096)
	req := &dnsserver.Request{Wire: wire, From: client, Proto: dnsserver.UDP, Now: time.Now(), MaxUDP: 1232}
	first := s.ServeDNS(req, out)
	s.cache.put(s.zones.Load(), wire, first, req.Now)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		*req = dnsserver.Request{Wire: wire, From: client, Proto: dnsserver.UDP, Now: req.Now, MaxUDP: 1232}
		if out = s.srv.Respond(req, out[:0]); len(out) == 0 {
			b.Fatal("no answer")
		}
	}
}

// TestAnswerCacheKeepsPopularAnswers: a flood of names asked once pushes
// out its own answers, not the answers clients keep asking for.
func TestAnswerCacheKeepsPopularAnswers(t *testing.T) {
	c := newAnswerCache(cacheShards*8192, time.Minute)
	now := time.Now()
	zs := &zoneSet{}
	pack := func(name string) (q, a []byte) {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		q, _ = m.Pack()
		r := new(dns.Msg)
		r.SetRcode(m, dns.RcodeNameError)
		a, _ = r.Pack()
		return q, a
	}
	hotQ, hotA := pack("popular.example.")
	coldQ, coldA := pack("once.example.")
	c.put(zs, hotQ, hotA, now)
	c.put(zs, coldQ, coldA, now)
	for i := range 20000 {
		if i%20 == 0 && c.get(zs, hotQ, nil, now) == nil {
			t.Fatalf("popular answer evicted after %d random names", i)
		}
		q, a := pack(fmt.Sprintf("r%d.example.", i))
		c.put(zs, q, a, now)
	}
	if c.get(zs, coldQ, nil, now) != nil {
		t.Error("an answer asked for once survived 20,000 others")
	}
	if b := c.bytes(); b > cacheShards*8192 {
		t.Errorf("%d bytes cached", b)
	}
}
