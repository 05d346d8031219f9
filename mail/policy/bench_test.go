package policy

import (
	"net/netip"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/testkit"
)

// BenchmarkSign: both signatures (RSA-2048 and Ed25519) of a small message.
func BenchmarkSign(b *testing.B) {
	s := testSigner(b)
	m := msg("alice@crepes.fr", "bench")
	for b.Loop() {
		if _, err := s.Header(m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheck: SPF, both DKIM verifications and DMARC of a genuine
// message, DNS answered by our authority server over loopback (no cache
// in between: every message asks again).
func BenchmarkCheck(b *testing.B) {
	s := testSigner(b)
	res := mailZones(b, s)
	ctx := testkit.Context(b, time.Hour)
	signed, _, err := s.Sign(msg("alice@crepes.fr", "bench"))
	if err != nil {
		b.Fatal(err)
	}
	v := &Verifier{Resolver: res, AuthServID: "mx.test"}
	m := Message{IP: netip.MustParseAddr(crepesMX), Helo: "mail.crepes.fr", MailFrom: "alice@crepes.fr", Body: signed}
	for b.Loop() {
		if r := v.Check(ctx, m); r.DMARC != "pass" {
			b.Fatalf("%+v", r)
		}
	}
}
