package app

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/applayer/applayer/mail/mta"
	"github.com/applayer/applayer/mail/policy"
)

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
