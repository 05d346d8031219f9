package mail

import (
	"path/filepath"

	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/mail/mta"
	"github.com/applayer/applayer/mail/policy"
	"github.com/applayer/applayer/mail/queue"
	"github.com/applayer/applayer/mail/smtpd"
)

// LabPolicy plugs mail/policy into the lab's mail servers: each domain's
// DKIM keys in STATE/mail/HOST/dkim (made while the lab is planned, so the
// records and the signer agree), the DKIM selector and DMARC records in
// the lab's DNS beside the kind's MX and SPF (the DMARC policy is the
// server's "dmarc" setting, default reject), outgoing mail signed, and
// incoming mail checked through the lab's resolver with DMARC enforced.
func LabPolicy() Policy {
	dkimDir := func(env lab.Env) string { return filepath.Join(env.Plan.StateDir, "mail", env.Host.Name, "dkim") }
	return Policy{
		Records: func(env lab.Env, domain string) ([]string, error) {
			c, _, err := decode(env)
			if err != nil {
				return nil, err
			}
			s, err := policy.LoadOrCreateKeys(dkimDir(env), []string{domain})
			if err != nil {
				return nil, err
			}
			return policy.AuthRecords(policy.Domain{Name: domain, TTL: 300, DMARC: c.DMARC}, s)
		},
		Signer: func(env lab.Env, domains []string) (queue.Signer, error) {
			s, err := policy.LoadOrCreateKeys(dkimDir(env), domains)
			if err != nil {
				return nil, err
			}
			return mta.DKIMSigner{S: s}, nil
		},
		Inbound: func(env lab.Env, domains []string) (smtpd.Inbound, error) {
			c, _, err := decode(env)
			if err != nil {
				return nil, err
			}
			res, err := ResolverAddr(env.Plan, c.Resolver)
			if err != nil {
				return nil, err
			}
			v := &policy.Verifier{Resolver: policy.NewResolver(res, env.Deps.Dialer), AuthServID: env.Host.Name, Mode: policy.ModeEnforce}
			return mta.NewInboundPolicy(v, env.Deps)
		},
	}
}
