package mailexp

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/dns/authority"
	"github.com/applayer/applayer/dns/resolver"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/lab/experiment"
	"github.com/applayer/applayer/mail"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

// TestForgedMailQuick: under each DMARC policy crepes.fr publishes,
// Alice's genuine message (submitted to mail.crepes.fr, DKIM-signed,
// relayed by MX) is stored in Bob's INBOX with spf=pass, dkim=pass and
// dmarc=pass in the Authentication-Results mail.hamburger.edu added; each
// of the attacker's forgeries fails DMARC, with SPF and DKIM as the
// forgery makes them (its own envelope: spf=none; a copied signature
// over new text: dkim=fail), and ends where the policy says: p=none in
// INBOX (the header says dmarc=fail), p=quarantine in Junk, p=reject
// refused with 550 5.7.1 and stored nowhere.
func TestForgedMailQuick(t *testing.T) {
	var out bytes.Buffer
	env := experiment.Env{Quick: true, Seed: 1, Out: t.TempDir(), Stdout: &out,
		Kinds: lab.NewKinds(slices.Concat(authority.LabKinds(), resolver.LabKinds(), mail.LabKindsWith(mail.LabPolicy()))...),
		Deps:  service.Deps{}.Defaults()}
	res, all, err := run(testkit.Context(t, 120*time.Second), env)
	t.Logf("\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Check(); err != nil {
		t.Error(err)
	}
	if len(res.Rows) != 6 || len(all) != 3*(1+len(forgeries)) {
		t.Fatalf("%d rows and %d outcomes", len(res.Rows), len(all))
	}
	wantSPF := map[string]string{forgeries[0].Name: "fail", forgeries[1].Name: "none", forgeries[2].Name: "fail"}
	wantDKIM := map[string]string{forgeries[0].Name: "none", forgeries[1].Name: "none", forgeries[2].Name: "fail"}
	for _, o := range all {
		name := "p=" + o.Policy + " " + o.Case
		if !o.Forged {
			for _, want := range []string{"mail.hamburger.edu;", "spf=pass smtp.mailfrom=crepes.fr", "dkim=pass header.d=crepes.fr", "dmarc=pass header.from=crepes.fr"} {
				if !strings.Contains(o.AuthResults, want) {
					t.Errorf("%s: Authentication-Results %q lack %q", name, o.AuthResults, want)
				}
			}
			if o.Where != "INBOX" {
				t.Errorf("%s: in %s, want INBOX", name, o.Where)
			}
			continue
		}
		if o.SPF != wantSPF[o.Case] || o.DKIM != wantDKIM[o.Case] || o.DMARC != "fail" {
			t.Errorf("%s: spf=%s dkim=%s dmarc=%s, want spf=%s dkim=%s dmarc=fail", name, o.SPF, o.DKIM, o.DMARC, wantSPF[o.Case], wantDKIM[o.Case])
		}
		switch o.Policy {
		case "none", "quarantine":
			want := map[string]string{"none": "INBOX", "quarantine": "Junk"}[o.Policy]
			if o.Where != want || !strings.Contains(o.AuthResults, "dmarc=fail header.from=crepes.fr") || !strings.Contains(o.Reply, "OK queued as") {
				t.Errorf("%s: in %q (reply %q), Authentication-Results %q; want %s with dmarc=fail", name, o.Where, o.Reply, o.AuthResults, want)
			}
		case "reject":
			if o.Where != "refused" || !strings.HasPrefix(o.Reply, "550 5.7.1 ") || !strings.Contains(o.Reply, "failed DMARC (p=reject)") {
				t.Errorf("%s: %q, reply %q; want refused with 550 5.7.1", name, o.Where, o.Reply)
			}
		}
	}
	for _, want := range []string{"POLICY ", "forged: MAIL FROM and From alice@crepes.fr ", "refused: 550 5.7.1 message from crepes.fr failed DMARC"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
