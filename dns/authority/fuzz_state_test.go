package authority

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/zone"
	"github.com/applayer/applayer/internal/service"
)

// FuzzTransferIn feeds an arbitrary transfer answer (a DNS message whose
// answer section is the record stream of an AXFR or IXFR) to what a
// secondary does with it: applied to the current copy (or none), then
// made a zone. It must never panic; an accepted result is a zone whose
// SOA is the stream's first record.
func FuzzTransferIn(f *testing.F) {
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			f.Fatal(err)
		}
		return r
	}
	soa := func(n int) dns.RR {
		return rr("example.net. 60 SOA ns1.example.net. h.example.net. " + strconv.Itoa(n) + " 1 1 30 60")
	}
	for _, stream := range [][]dns.RR{
		{soa(2), rr("example.net. 60 NS ns1.example.net."), rr("ns1.example.net. 60 A 192.0.2.1"), soa(2)},                           // AXFR
		{soa(2), soa(1), rr("old.example.net. 60 A 192.0.2.1"), soa(2), rr("new.example.net. 60 A 192.0.2.2"), soa(2)},               // IXFR
		{soa(3), soa(1), soa(2), rr("a.example.net. 60 TXT x"), soa(2), soa(3), rr("b.example.net. 60 MX 1 a.example.net."), soa(3)}, // two steps
		{soa(1)}, // current
	} {
		m := new(dns.Msg)
		m.SetReply(new(dns.Msg).SetQuestion("example.net.", dns.TypeIXFR))
		m.Answer = stream
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, true)
		f.Add(b, false)
	}
	old := []dns.RR{soa(1), rr("example.net. 60 NS ns1.example.net."), rr("ns1.example.net. 60 A 192.0.2.1"), rr("old.example.net. 60 A 192.0.2.1")}
	f.Fuzz(func(t *testing.T, b []byte, haveCopy bool) {
		m := new(dns.Msg)
		if m.Unpack(b) != nil {
			return
		}
		var cur []dns.RR
		if haveCopy {
			cur = append([]dns.RR(nil), old...)
		}
		recs, err := applyTransfer(cur, m.Answer)
		if err != nil || recs == nil {
			return
		}
		if recs[0] != m.Answer[0] {
			t.Fatalf("result starts with %v, not the stream's SOA %v", recs[0], m.Answer[0])
		}
		z, err := zone.New("example.net.", recs)
		if err != nil {
			return
		}
		if z.SOA == nil || z.SOA.Serial != m.Answer[0].(*dns.SOA).Serial {
			t.Fatalf("zone SOA %v, stream SOA %v", z.SOA, m.Answer[0])
		}
	})
}

// FuzzStateAtStart feeds arbitrary files to what a server reads from its
// state dir when it starts: the IXFR journal and its snapshot, and a
// secondary zone's kept copy and refresh time. A bad file is reported or
// ignored, never a panic; the server still starts.
func FuzzStateAtStart(f *testing.F) {
	f.Add([]byte("example.net. 60 IN SOA ns1.example.net. h.example.net. 1 1 1 30 60\nold.example.net. 60 IN A 192.0.2.1\nexample.net. 60 IN SOA ns1.example.net. h.example.net. 2 1 1 30 60\nnew.example.net. 60 IN A 192.0.2.2\n"),
		[]byte("example.net. 60 IN SOA ns1.example.net. h.example.net. 2 1 1 30 60\nexample.net. 60 IN NS ns1.example.net.\nns1.example.net. 60 IN A 192.0.2.1\nnew.example.net. 60 IN A 192.0.2.2\n"),
		[]byte("2026-12-03T10:00:00Z\n"))
	f.Add([]byte("example.net. 60 IN SOA ns1.example.net. h.example.net. 1 1 1 30 60\n"), []byte("$INCLUDE /etc/passwd\n"), []byte("yesterday"))
	f.Add([]byte("x. 60 IN A 192.0.2.1\n"), []byte(""), []byte("0001-01-01T00:00:00Z"))
	now := time.Date(2026, 12, 3, 10, 0, 30, 0, time.UTC)
	f.Fuzz(func(t *testing.T, journal, snapshot, refreshed []byte) {
		state := t.TempDir()
		for _, w := range []struct {
			path string
			data []byte
		}{
			{filepath.Join(state, "journal", "example.net.ixfr"), journal},
			{filepath.Join(state, "journal", "example.net.zone"), snapshot},
			{filepath.Join(state, "secondary", "example.org.zone"), snapshot},
			{filepath.Join(state, "secondary", "example.org.refreshed"), refreshed},
		} {
			os.MkdirAll(filepath.Dir(w.path), 0o755)
			if err := os.WriteFile(w.path, w.data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if ds, err := readJournal(filepath.Join(state, "journal", "example.net.ixfr")); err == nil {
			for i, d := range ds {
				if d.from == nil || d.to == nil || i > 0 && ds[i-1].to.Serial != d.from.Serial {
					t.Fatalf("journal accepted with a broken chain at %d", i)
				}
			}
		}
		text := "$TTL 60\n@ SOA ns1 h 3 1 1 30 60\n@ NS ns1\nns1 A 192.0.2.1\n"
		s, err := New(Config{Addr: "127.0.0.1:0", StateDir: state, Zones: []ZoneConfig{
			{Origin: "example.net", Text: text},
			{Origin: "example.org", Primary: "127.0.0.1:1"},
		}}, service.Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return now }})
		if err != nil {
			t.Fatalf("a bad state file stopped the server: %v", err)
		}
		if z := s.Zone("example.net"); z == nil || z.SOA.Serial < 3 {
			t.Fatalf("primary zone not served from its file: %v", z)
		}
		if z := s.Zone("example.org"); z != nil && z.SOA == nil {
			t.Fatal("kept secondary copy served without SOA")
		}
	})
}
