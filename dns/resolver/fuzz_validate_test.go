package resolver

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/authority"
	"github.com/applayer/applayer/dns/dnsserver"
	"github.com/applayer/applayer/dns/zone"
	"github.com/applayer/applayer/internal/service"
)

const fuzzZone = `$ORIGIN example.
@        3600 IN SOA ns admin 1 3600 600 86400 300
@        3600 IN NS ns
ns       3600 IN A 192.0.2.53
www      300  IN A 192.0.2.1
www      300  IN TXT "hello"
alias    300  IN CNAME www
*.wild   300  IN A 192.0.2.2
a.b      300  IN A 192.0.2.3
sub      3600 IN NS ns.sub
ns.sub   3600 IN A 192.0.2.54
`

// fuzzUpstream is a forwarder the validating resolver asks: DNSKEY and DS
// queries get the signed zone's real answers, every other query the fuzz
// input (its ID and question set to the query's).
type fuzzUpstream struct {
	auth *authority.Server
	mu   sync.Mutex
	in   []byte
}

func (u *fuzzUpstream) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		return
	}
	q := req.Question[0]
	if q.Qtype == dns.TypeDNSKEY || q.Qtype == dns.TypeDS {
		w.WriteMsg(u.auth.Handle(req, netip.MustParseAddrPort("127.0.0.1:53"), false))
		return
	}
	u.mu.Lock()
	in := u.in
	u.mu.Unlock()
	m := new(dns.Msg)
	if m.Unpack(in) != nil {
		w.Write(in) // raw garbage: the resolver must drop it
		return
	}
	m.Id, m.Question, m.Response = req.Id, req.Question, true
	w.WriteMsg(m)
}

// FuzzValidatedForwarderReply feeds arbitrary forwarder replies to a
// validating resolver (trust anchor: the signed zone example.'s DS; the
// forwarder's DNSKEY and DS answers are the zone's real ones): reply
// processing in forwarding mode, signature checks, denial proofs and
// wildcard checks. It must never panic, must answer, and must never set
// AD on an answer whose RRsets are not signed by the zone's real keys.
func FuzzValidatedForwarderReply(f *testing.F) {
	dir := f.TempDir()
	keys, err := zone.LoadOrCreateKeys(dir, "example.", "")
	if err != nil {
		f.Fatal(err)
	}
	z, err := zone.Parse(strings.NewReader(fuzzZone), "example.", "", false)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	signed, err := zone.Sign(z, keys, zone.SignOptions{Inception: now.Add(-time.Hour), Expiration: now.Add(24 * time.Hour)})
	if err != nil {
		f.Fatal(err)
	}
	var text strings.Builder
	for _, rr := range signed.Records() {
		text.WriteString(rr.String() + "\n")
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	auth, err := authority.New(authority.Config{Addr: "127.0.0.1:0", Zones: []authority.ZoneConfig{{Origin: "example.", Text: text.String()}}}, service.Deps{Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	zsk := keys.ZSK.DNSKEY
	// Seeds: the zone's own signed answers.
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"www.example.", dns.TypeA}, {"nx.example.", dns.TypeA}, {"www.example.", dns.TypeAAAA}, {"x.wild.example.", dns.TypeA},
		{"alias.example.", dns.TypeA}, {"b.example.", dns.TypeA}, {"www.sub.example.", dns.TypeA}, {"x.wild.example.", dns.TypeMX}} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.SetEdns0(1232, true)
		b, err := auth.Handle(m, netip.MustParseAddrPort("127.0.0.1:53"), true).Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}

	up := &fuzzUpstream{auth: auth}
	// UDP and TCP on one port: the UDP port the kernel picks may be taken
	// for TCP by another process, so a few tries.
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			f.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if try == 20 {
			f.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var servers []*dns.Server
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: up}, {Listener: ln, Handler: up}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		wg.Add(1)
		go func() { defer wg.Done(); s.ActivateAndServe() }()
		<-started
		servers = append(servers, s)
	}
	f.Cleanup(func() {
		for _, s := range servers {
			s.Shutdown()
		}
		wg.Wait()
	})
	anchor := filepath.Join(dir, "anchor.ds")
	if err := os.WriteFile(anchor, []byte(keys.DS().String()+"\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	r, err := New(Config{Listen: "127.0.0.1:0", Forwarders: []string{pc.LocalAddr().String()}, TrustAnchorFile: anchor,
		Timeout: 10 * 1e6, ResolveTimeout: 2e8, NoPrefetch: true}, service.Deps{Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.Shutdown(ctx)
	})

	f.Fuzz(func(t *testing.T, in []byte) {
		up.mu.Lock()
		up.in = in
		up.mu.Unlock()
		r.Flush(".")
		// Ask the reply's own question when it has one in the zone.
		name, qtype := "www.example.", dns.TypeA
		if m := new(dns.Msg); m.Unpack(in) == nil && len(m.Question) == 1 && dns.IsSubDomain("example.", strings.ToLower(m.Question[0].Name)) &&
			m.Question[0].Qtype != dns.TypeDS && m.Question[0].Qtype != dns.TypeDNSKEY && m.Question[0].Qtype != dns.TypeANY {
			name, qtype = m.Question[0].Name, m.Question[0].Qtype
		}
		q := new(dns.Msg)
		q.SetQuestion(name, qtype)
		q.SetEdns0(1232, true)
		qb, err := q.Pack()
		if err != nil {
			return
		}
		out := r.slow(&dnsserver.Request{Wire: qb, From: netip.MustParseAddrPort("127.0.0.1:5353"), Proto: dnsserver.TCP})
		resp := new(dns.Msg)
		if err := resp.Unpack(out); err != nil {
			t.Fatalf("unparsable reply: %v", err)
		}
		if resp.Id != q.Id || !resp.Response {
			t.Fatalf("reply does not answer the query: %v", resp)
		}
		if !resp.AuthenticatedData {
			return
		}
		// Every RRset of a secure answer verifies with the real ZSK.
		for _, set := range groupSets(resp.Answer, func(rr dns.RR) bool { return rr.Header().Rrtype != dns.TypeRRSIG }) {
			ok := false
			for _, rr := range resp.Answer {
				sig, isSig := rr.(*dns.RRSIG)
				if isSig && sig.TypeCovered == set.rtype() && strings.EqualFold(sig.Hdr.Name, set.name()) && sig.KeyTag == zsk.KeyTag() &&
					sig.Verify(zsk, set.rrs) == nil && sig.ValidityPeriod(time.Now()) {
					ok = true
				}
			}
			if !ok {
				t.Fatalf("AD set on an RRset the zone did not sign: %v\n%v", set.rrs, resp)
			}
		}
	})
}
