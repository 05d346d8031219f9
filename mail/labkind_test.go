package mail

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/applayer/applayer/lab"
)

func TestLabRecords(t *testing.T) {
	policy := Policy{Records: func(env lab.Env, domain string) ([]string, error) {
		return []string{"_dmarc." + domain + `. 300 IN TXT "v=DMARC1; p=none"`}, nil
	}}
	for _, c := range []struct {
		host, config string
		p            Policy
		want         []string
		err          string
	}{
		{"mail.crepes.fr", "", Policy{}, []string{"crepes.fr. 300 IN MX 10 mail.crepes.fr.", `crepes.fr. 300 IN TXT "v=spf1 mx -all"`}, ""},
		{"mx.lab", `{"domains": ["A.example.", "b.example"], "spf": "v=spf1 -all"}`, policy, []string{
			"a.example. 300 IN MX 10 mx.lab.", `a.example. 300 IN TXT "v=spf1 -all"`, `_dmarc.a.example. 300 IN TXT "v=DMARC1; p=none"`,
			"b.example. 300 IN MX 10 mx.lab.", `b.example. 300 IN TXT "v=spf1 -all"`, `_dmarc.b.example. 300 IN TXT "v=DMARC1; p=none"`}, ""},
		{"localhost", "", Policy{}, nil, "give domains"},
		{"mail.crepes.fr", `{"nope": 1}`, Policy{}, nil, "nope"},
	} {
		env := lab.Env{Host: lab.PlannedHost{Name: c.host}, Spec: lab.ServiceSpec{Kind: KindName, Config: json.RawMessage(c.config)}}
		got, err := records(env, c.p)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s %s: %v, want an error with %q", c.host, c.config, err, c.err)
			}
			continue
		}
		if err != nil || strings.Join(got, "\n") != strings.Join(c.want, "\n") {
			t.Errorf("%s %s: %q %v, want %q", c.host, c.config, got, err, c.want)
		}
	}
	k := LabKinds()[0]
	if err := k.Check(json.RawMessage(`{"users": [{"address": "alice@crepes.fr"}]}`)); err == nil {
		t.Error("a user without a password accepted")
	}
	if err := k.Check(json.RawMessage(`{"users": [{"address": "alice@crepes.fr", "password": "x"}], "lifetime": "5m"}`)); err != nil {
		t.Error(err)
	}
}

// TestLabPolicyRecords: with LabPolicy a server's domains publish their
// DKIM keys and the DMARC policy of its "dmarc" setting (default
// reject); a policy other than none, quarantine or reject, or a bcrypt
// cost out of range, is refused.
func TestLabPolicyRecords(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ config, want string }{
		{``, `_dmarc.crepes.fr. 300 IN TXT "v=DMARC1; p=reject; adkim=r; aspf=r"`},
		{`{"dmarc": "quarantine"}`, `_dmarc.crepes.fr. 300 IN TXT "v=DMARC1; p=quarantine; adkim=r; aspf=r"`},
		{`{"dmarc": "none", "bcrypt_cost": 4}`, `_dmarc.crepes.fr. 300 IN TXT "v=DMARC1; p=none; adkim=r; aspf=r"`},
	} {
		env := lab.Env{Plan: &lab.Plan{StateDir: dir}, Host: lab.PlannedHost{Name: "mail.crepes.fr"}, Spec: lab.ServiceSpec{Kind: KindName, Config: json.RawMessage(c.config)}}
		got, err := records(env, LabPolicy())
		all := strings.Join(got, "\n")
		if err != nil || !strings.Contains(all, c.want) || !strings.Contains(all, `applayer-rsa._domainkey.crepes.fr. 300 IN TXT "v=DKIM1; k=rsa; p=`) {
			t.Errorf("%s: %v\n%s\nwant %s and a DKIM key", c.config, err, all, c.want)
		}
	}
	k := LabKinds()[0]
	for _, bad := range []string{`{"dmarc": "maybe"}`, `{"bcrypt_cost": 2}`} {
		if err := k.Check(json.RawMessage(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
