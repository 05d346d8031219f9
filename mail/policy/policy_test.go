package policy

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dmarc"

	"go.uber.org/goleak"

	"github.com/applayer/applayer/dns/dnstest"
	"github.com/applayer/applayer/internal/testkit"
)

func TestMain(m *testing.M) {
	testkit.VerifyNoLeaks(m, goleak.Cleanup(func(int) {
		if keysDir != "" {
			os.RemoveAll(keysDir)
		}
	}))
}

// serveZones serves zones (apex -> master-file text, without SOA and NS:
// added here) with one authority server on a random 127.x.y.z and
// returns a resolver that asks only it.
func serveZones(t testing.TB, zones map[string]string) *net.Resolver {
	t.Helper()
	addr := dnstest.RandomBlock().Next()
	var zs []dnstest.Zone
	for apex, text := range zones {
		head := fmt.Sprintf("%s 3600 IN SOA ns.%s hostmaster.%s 1 3600 600 86400 60\n%s 3600 IN NS ns.%s\nns.%s 3600 IN A %s\n", apex, apex, apex, apex, apex, apex, addr)
		zs = append(zs, dnstest.Zone{Origin: apex, Addr: addr, Text: head + text})
	}
	sv, err := dnstest.StartZones(t, 0, zs)
	if err != nil {
		t.Fatal(err)
	}
	return NewResolver(netip.AddrPortFrom(addr, uint16(sv.Port)).String(), nil)
}

// keys are made once for the package's tests: RSA-2048 generation takes
// a while under -race.
var (
	keysOnce sync.Once
	keysDir  string
	keysErr  error
)

func testSigner(t testing.TB) *Signer {
	t.Helper()
	keysOnce.Do(func() {
		keysDir, keysErr = os.MkdirTemp("", "applayer-dkim-")
	})
	if keysErr != nil {
		t.Fatal(keysErr)
	}
	s, err := LoadOrCreateKeys(keysDir, []string{"crepes.fr", "hamburger.edu"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const (
	crepesMX = "127.9.9.25" // mail.crepes.fr in the test zone
	otherIP  = "127.9.9.66"
)

// mailZones are crepes.fr and hamburger.edu with the records Records
// makes (and a few more for the DMARC cases).
func mailZones(t testing.TB, s *Signer) *net.Resolver {
	t.Helper()
	zones := map[string]string{}
	for _, d := range []struct{ name, policy, extra string }{
		{"crepes.fr", "reject", "mail.crepes.fr. 3600 IN A " + crepesMX + "\n" +
			"bounce.crepes.fr. 3600 IN TXT \"v=spf1 ip4:" + crepesMX + " -all\"\n" +
			"strict.crepes.fr. 3600 IN TXT \"v=spf1 ip4:" + crepesMX + " -all\"\n" +
			"_dmarc.strict.crepes.fr. 3600 IN TXT \"v=DMARC1; p=reject; adkim=s; aspf=s\"\n" +
			"_dmarc.news.crepes.fr. 3600 IN TXT \"v=DMARC1; p=none\"\n"},
		{"hamburger.edu", "quarantine", "mail.hamburger.edu. 3600 IN A 127.9.9.26\n" +
			"_dmarc.half.hamburger.edu. 3600 IN TXT \"v=DMARC1; p=reject; pct=50\"\n"},
	} {
		rrs, err := Records(Domain{Name: d.name, MX: "mail." + d.name, DMARC: d.policy}, s)
		if err != nil {
			t.Fatal(err)
		}
		zones[d.name+"."] = strings.Join(rrs, "\n") + "\n" + d.extra
	}
	zones["forwarder.example."] = ""
	zones["spdomain.example."] = "_dmarc.spdomain.example. 3600 IN TXT \"v=DMARC1; p=none; sp=reject\"\n"
	return serveZones(t, zones)
}

func msg(from, subject string) []byte {
	return []byte("From: " + from + "\r\nTo: bob@hamburger.edu\r\nSubject: " + subject +
		"\r\nDate: Thu, 03 Dec 2026 14:00:00 +0000\r\nMessage-ID: <1@crepes.fr>\r\n\r\nHello Bob,\r\nthe crepes are ready.\r\n")
}

func TestRecords(t *testing.T) {
	s := testSigner(t)
	rrs, err := Records(Domain{Name: "Crepes.FR.", MX: "mail.crepes.fr"}, s)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(rrs, "\n")
	for _, want := range []string{
		"crepes.fr. 3600 IN MX 10 mail.crepes.fr.",
		`crepes.fr. 3600 IN TXT "v=spf1 mx -all"`,
		`applayer-rsa._domainkey.crepes.fr. 3600 IN TXT "v=DKIM1; k=rsa; p=MII`,
		`applayer-ed25519._domainkey.crepes.fr. 3600 IN TXT "v=DKIM1; k=ed25519; p=`,
		`_dmarc.crepes.fr. 3600 IN TXT "v=DMARC1; p=reject; adkim=r; aspf=r"`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("records lack %q:\n%s", want, all)
		}
	}
	for _, bad := range []Domain{{Name: "crepes.fr"}, {MX: "mail.crepes.fr"}, {Name: "crepes.fr", MX: "m.crepes.fr", DMARC: "drop"}} {
		if _, err := Records(bad, s); err == nil {
			t.Errorf("Records(%+v) accepted", bad)
		}
	}
}

func TestKeysPersist(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadOrCreateKeys(dir, []string{"x.example"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateKeys(dir, []string{"X.example."})
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range a.Keys("x.example") {
		_, ta := k.Record()
		_, tb := b.Keys("x.example")[i].Record()
		if ta != tb {
			t.Errorf("key %s changed on reload", k.Selector)
		}
		fi, err := os.Stat(filepath.Join(dir, "x.example", k.Selector+".pem"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("key file: %v, %v", fi, err)
		}
	}
	if len(a.Keys("x.example")) != 2 || a.Has("y.example") {
		t.Errorf("keys: %d, has y.example %v", len(a.Keys("x.example")), a.Has("y.example"))
	}
	if _, err := LoadOrCreateKeys(dir, []string{"../etc"}); err == nil {
		t.Error("a domain with a slash was accepted")
	}
	os.WriteFile(filepath.Join(dir, "bad.example", SelectorRSA+".pem"), []byte("junk"), 0o600)
	os.MkdirAll(filepath.Join(dir, "bad.example"), 0o700)
	os.WriteFile(filepath.Join(dir, "bad.example", SelectorRSA+".pem"), []byte("junk"), 0o600)
	if _, err := LoadOrCreateKeys(dir, []string{"bad.example"}); err == nil {
		t.Error("a corrupt key file was accepted")
	}
}

// The two cases: a genuine message from crepes.fr passes SPF,
// DKIM and DMARC; a forged one (From alice@crepes.fr, from another
// address, unsigned) fails DMARC and is refused under p=reject.
func TestGenuineAndForged(t *testing.T) {
	s := testSigner(t)
	res := mailZones(t, s)
	ctx := testkit.Context(t, 30*time.Second)
	v := &Verifier{Resolver: res, AuthServID: "mail.hamburger.edu"}

	signed, ok, err := s.Sign(msg("Alice <alice@crepes.fr>", "crepes"))
	if err != nil || !ok {
		t.Fatalf("sign: %v %v", ok, err)
	}
	out, r := v.Process(ctx, Message{IP: netip.MustParseAddr(crepesMX), Helo: "mail.crepes.fr", MailFrom: "alice@crepes.fr", Body: signed})
	if r.SPF != authres.ResultPass || r.DMARC != authres.ResultPass || r.Verdict != Accept || len(r.DKIM) != 2 {
		t.Fatalf("genuine: %+v", r)
	}
	for _, d := range r.DKIM {
		if d.Result != authres.ResultPass || d.Domain != "crepes.fr" {
			t.Errorf("genuine DKIM: %+v", d)
		}
	}
	hdr := string(out[:bytes.Index(out, []byte("\r\nDKIM-Signature"))])
	for _, want := range []string{"Authentication-Results: mail.hamburger.edu;", "spf=pass smtp.mailfrom=crepes.fr", "dkim=pass header.d=crepes.fr", "dmarc=pass header.from=crepes.fr"} {
		if !strings.Contains(hdr, want) {
			t.Errorf("header lacks %q:\n%s", want, hdr)
		}
	}
	if IsJunk(out) {
		t.Error("genuine message marked junk")
	}

	forged := msg("Alice <alice@crepes.fr>", "send money")
	for _, mode := range []Mode{ModeEnforce, ModeMark} {
		v.Mode = mode
		out, r := v.Process(ctx, Message{IP: netip.MustParseAddr(otherIP), Helo: "evil.example", MailFrom: "alice@crepes.fr", Body: forged})
		if r.SPF != authres.ResultFail || len(r.DKIM) != 0 || r.DMARC != authres.ResultFail || r.DMARCPolicy != dmarc.PolicyReject {
			t.Errorf("%s: forged: %+v", mode, r)
		}
		want := map[Mode]Verdict{ModeEnforce: Reject, ModeMark: Junk}[mode]
		if r.Verdict != want {
			t.Errorf("%s: verdict %v, want %v", mode, r.Verdict, want)
		}
		if !strings.Contains(string(out), "dmarc=fail header.from=crepes.fr") || !strings.Contains(string(out), "dkim=none") {
			t.Errorf("%s: header:\n%s", mode, out)
		}
		if IsJunk(out) != (want == Junk) {
			t.Errorf("%s: IsJunk = %v", mode, IsJunk(out))
		}
	}
	v.Mode = ModeOff
	if out, r := v.Process(ctx, Message{IP: netip.MustParseAddr(otherIP), MailFrom: "alice@crepes.fr", Body: forged}); !bytes.Equal(out, forged) || r.Verdict != Accept {
		t.Errorf("off: changed message or verdict %v", r.Verdict)
	}
}

func TestDMARCCases(t *testing.T) {
	s := testSigner(t)
	res := mailZones(t, s)
	ctx := testkit.Context(t, 60*time.Second)
	sign := func(m []byte) []byte {
		out, ok, err := s.Sign(m)
		if err != nil || !ok {
			t.Fatalf("sign: %v %v", ok, err)
		}
		return out
	}
	mx := netip.MustParseAddr(crepesMX)
	other := netip.MustParseAddr(otherIP)
	tampered := sign(msg("alice@crepes.fr", "x"))
	tampered = bytes.Replace(tampered, []byte("crepes are ready"), []byte("crepes are burnt"), 1)
	for _, tc := range []struct {
		name     string
		ip       netip.Addr
		mailFrom string
		body     []byte
		pct      int
		spf      authres.ResultValue
		dmarc    authres.ResultValue
		verdict  Verdict
	}{
		{"spf only, aligned", mx, "alice@crepes.fr", msg("alice@crepes.fr", "x"), 0, authres.ResultPass, authres.ResultPass, Accept},
		{"dkim only (forwarded)", other, "list@forwarder.example", sign(msg("alice@crepes.fr", "x")), 0, authres.ResultNone, authres.ResultPass, Accept},
		{"spf relaxed: bounce subdomain", mx, "b@bounce.crepes.fr", msg("alice@crepes.fr", "x"), 0, authres.ResultPass, authres.ResultPass, Accept},
		{"spf strict: subdomain From, parent envelope", mx, "b@bounce.crepes.fr", msg("alice@strict.crepes.fr", "x"), 0, authres.ResultPass, authres.ResultFail, Reject},
		{"spf strict: same name", mx, "b@strict.crepes.fr", msg("alice@strict.crepes.fr", "x"), 0, authres.ResultPass, authres.ResultPass, Accept},
		{"dkim survives a Received field", other, "", []byte("Received: x\r\n" + string(sign(msg("alice@crepes.fr", "x")))), 0, authres.ResultNone, authres.ResultPass, Accept},
		{"tampered body", other, "alice@crepes.fr", tampered, 0, authres.ResultFail, authres.ResultFail, Reject},
		{"p=quarantine", other, "bob@hamburger.edu", msg("bob@hamburger.edu", "x"), 0, authres.ResultFail, authres.ResultFail, Junk},
		{"own p=none", other, "", msg("x@news.crepes.fr", "x"), 0, authres.ResultNone, authres.ResultFail, Accept},
		{"org record applies to subdomain (p)", other, "", msg("x@deep.crepes.fr", "x"), 0, authres.ResultNone, authres.ResultFail, Reject},
		{"org record's p for a subdomain", other, "", msg("x@a.sub.hamburger.edu", "x"), 0, authres.ResultNone, authres.ResultFail, Junk},
		{"org record's sp", other, "", msg("x@a.spdomain.example", "x"), 0, authres.ResultNone, authres.ResultFail, Reject},
		{"org record's p for itself", other, "", msg("x@spdomain.example", "x"), 0, authres.ResultNone, authres.ResultFail, Accept},
		{"pct=50 in sample", other, "", msg("x@half.hamburger.edu", "x"), 10, authres.ResultNone, authres.ResultFail, Reject},
		{"pct=50 outside sample", other, "", msg("x@half.hamburger.edu", "x"), 90, authres.ResultNone, authres.ResultFail, Junk},
		{"no DMARC record", other, "", msg("x@forwarder.example", "x"), 0, authres.ResultNone, authres.ResultNone, Accept},
		{"no From", other, "", []byte("Subject: x\r\n\r\nbody\r\n"), 0, authres.ResultNone, authres.ResultNone, Accept},
		{"two From fields", mx, "alice@crepes.fr", []byte("From: alice@crepes.fr\r\nFrom: ceo@bank.example\r\n\r\nx\r\n"), 0, authres.ResultPass, authres.ResultPermError, Junk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := &Verifier{Resolver: res, AuthServID: "mx.test", Percent: func() int { return tc.pct }}
			r := v.Check(ctx, Message{IP: tc.ip, Helo: "forwarder.example", MailFrom: tc.mailFrom, Body: tc.body})
			if r.SPF != tc.spf || r.DMARC != tc.dmarc || r.Verdict != tc.verdict {
				t.Errorf("spf %s dmarc %s verdict %v; want %s %s %v\n%+v", r.SPF, r.DMARC, r.Verdict, tc.spf, tc.dmarc, tc.verdict, r)
			}
		})
	}
}

func TestStripForged(t *testing.T) {
	in := "Authentication-Results: mx.test; dmarc=pass\r\n header.from=crepes.fr\r\n" +
		"Authentication-Results: other.example; spf=pass\r\n" +
		"From: a@b.example\r\nauthentication-results:MX.TEST;dkim=pass\r\n\r\nbody\r\n"
	want := "Authentication-Results: other.example; spf=pass\r\nFrom: a@b.example\r\n\r\nbody\r\n"
	if got := string(stripForged([]byte(in), "mx.test")); got != want {
		t.Errorf("stripForged:\n%q\nwant\n%q", got, want)
	}
	if got := stripForged([]byte("no header"), "mx.test"); string(got) != "no header" {
		t.Errorf("stripForged(bad) = %q", got)
	}
}

func TestSignOnlyOwnDomains(t *testing.T) {
	s := testSigner(t)
	m := msg("eve@elsewhere.example", "x")
	out, ok, err := s.Sign(m)
	if err != nil || ok || !bytes.Equal(out, m) {
		t.Errorf("foreign From signed: %v %v", ok, err)
	}
	if _, _, err := s.Sign([]byte("not a header line\r\n\r\n")); err == nil {
		t.Error("a broken header was signed")
	}
	out, ok, err = s.Sign(msg("alice@CREPES.fr", "x"))
	if err != nil || !ok || bytes.Count(out, []byte("DKIM-Signature:")) != 2 ||
		!bytes.Contains(out, []byte("a=rsa-sha256")) || !bytes.Contains(out, []byte("a=ed25519-sha256")) {
		t.Errorf("own domain: ok=%v err=%v\n%s", ok, err, out)
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": ModeEnforce, "Enforce": ModeEnforce, "mark": ModeMark, "off": ModeOff} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseMode("drop"); err == nil {
		t.Error("ParseMode(drop) accepted")
	}
}
