package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/mail"
	"github.com/applayer/applayer/mail/mta"
	"github.com/applayer/applayer/mail/policy"
	"github.com/applayer/applayer/mail/queue"
	"github.com/applayer/applayer/mail/smtpd"
)

// mailLabPolicy plugs mail/policy into the lab's mail servers: each
// domain's DKIM keys in STATE/mail/HOST/dkim (made while the lab is
// planned, so the records and the signer agree), the DKIM selector and
// DMARC (p=reject) records in the lab's DNS beside the kind's MX and SPF,
// outgoing mail signed, and incoming mail checked through the lab's
// resolver with DMARC enforced.
func mailLabPolicy() mail.Policy {
	dkimDir := func(env lab.Env) string { return filepath.Join(env.Plan.StateDir, "mail", env.Host.Name, "dkim") }
	return mail.Policy{
		Records: func(env lab.Env, domain string) ([]string, error) {
			s, err := policy.LoadOrCreateKeys(dkimDir(env), []string{domain})
			if err != nil {
				return nil, err
			}
			return policy.AuthRecords(policy.Domain{Name: domain, TTL: 300}, s)
		},
		Signer: func(env lab.Env, domains []string) (queue.Signer, error) {
			s, err := policy.LoadOrCreateKeys(dkimDir(env), domains)
			if err != nil {
				return nil, err
			}
			return mta.DKIMSigner{S: s}, nil
		},
		Inbound: func(env lab.Env, domains []string) (smtpd.Inbound, error) {
			var c struct {
				Resolver string `json:"resolver"`
			}
			json.Unmarshal(env.Spec.Config, &c) // the kind checked it
			res, err := mail.ResolverAddr(env.Plan, c.Resolver)
			if err != nil {
				return nil, err
			}
			v := &policy.Verifier{Resolver: policy.NewResolver(res, env.Deps.Dialer), AuthServID: env.Host.Name, Mode: policy.ModeEnforce}
			return mta.NewInboundPolicy(v, env.Deps)
		},
	}
}

// mailPolicyFlags adds mail serve's DKIM and DMARC flags; the returned
// function, called in RunE, puts them into cfg.
func mailPolicyFlags(f *pflag.FlagSet, cfg *mta.Config) func() error {
	var dmarc string
	f.StringVar(&cfg.Policy.DKIMDir, "dkim-dir", "", "sign outgoing mail of the --domain names with DKIM keys kept in `DIR` (made when missing; 'applayer mail dns' prints their records)")
	f.StringVar(&dmarc, "dmarc", "", "what the SMTP port does with incoming mail failing DMARC: enforce (p=reject refused with 550 5.7.1, p=quarantine into Junk), mark (into Junk), off; SPF, DKIM and DMARC results go in an Authentication-Results header (default: enforce with --resolver, else off)")
	return func() error {
		switch {
		case dmarc != "":
			m, err := policy.ParseMode(dmarc)
			if err != nil {
				return err
			}
			cfg.Policy.DMARC = m
		case cfg.Resolver != "":
			cfg.Policy.DMARC = policy.ModeEnforce
		default:
			// Without a resolver of its own the server would ask the
			// system's for every message: checks only when asked.
			cfg.Policy.DMARC = policy.ModeOff
		}
		return nil
	}
}

// mailStoreFlags adds --db and its synonym --store: the mail store, an
// SQLite file or a postgres:// URL (several front-ends share one
// PostgreSQL database).
func mailStoreFlags(f *pflag.FlagSet, p *string) {
	f.StringVar(p, "db", "mail.db", "mail store: an SQLite `FILE`, or a postgres:// URL")
	f.StringVar(p, "store", "mail.db", "mail store: an SQLite file, or a postgres:// `URL` (same as --db)")
}

func mailDNSCommand(g *globals) *cobra.Command {
	var (
		d   policy.Domain
		dir string
	)
	cmd := &cobra.Command{
		Use:   "dns",
		Short: "Print the DNS records a mail domain publishes: MX, SPF, DKIM selectors, DMARC",
		Long: `Prints, in master-file form, the records a mail domain needs: its MX, an SPF
record allowing the MX hosts only, one DKIM key record per selector
(rsa-sha256 and ed25519-sha256) for the keys in --dkim-dir (made when
missing, the same directory 'mail serve --dkim-dir' signs with), and a
DMARC record with relaxed alignment and --dmarc-policy.`,
		Example: `  applayer mail dns --domain crepes.fr --mx mail.crepes.fr --dkim-dir /tmp/mail-dkim   # -> crepes.fr. 3600 IN MX 10 mail.crepes.fr.`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if d.Name == "" || d.MX == "" {
				return errors.New("mail dns: give --domain and --mx")
			}
			var s *policy.Signer
			if dir != "" {
				var err error
				if s, err = policy.LoadOrCreateKeys(dir, []string{d.Name}); err != nil {
					return err
				}
			}
			rrs, err := policy.Records(d, s)
			if err != nil {
				return err
			}
			for _, rr := range rrs {
				fmt.Fprintln(g.stdout, rr)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&d.Name, "domain", "", "the mail `DOMAIN`")
	f.StringVar(&d.MX, "mx", "", "its mail server's `HOST` name")
	f.StringVar(&dir, "dkim-dir", "", "DKIM key `DIR` (without it, no DKIM records)")
	f.StringVar(&d.DMARC, "dmarc-policy", "reject", "DMARC policy published: none, quarantine or reject")
	return cmd
}
