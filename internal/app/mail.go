package app

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/mail/mta"
	"github.com/applayer/applayer/mail/store"
)

func mailCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mail",
		Short: "E-mail: an SMTP server with submission, a durable relaying queue and a mail store; a user agent",
		Long: `The mail server receives mail over SMTP for its local domains (and for their
users only: it relays for nobody on that port), takes mail from its users on
the submission ports (587 STARTTLS, 465 TLS, AUTH required), writes each
message to its spool and fsyncs it before answering 250, delivers local mail
into the users' INBOX in the mail store (SQLite) and relays the rest by MX,
bouncing what cannot be delivered with a DSN. 'mail send' is a user agent
that submits a message.`,
		Example: `  applayer mail users add --db /tmp/mail-demo.db bob@hamburger.edu --password s3cret
  applayer mail serve --domain hamburger.edu --db /tmp/mail-demo.db --spool /tmp/mail-demo-spool --listen 127.0.0.1:2525 &
  printf 'Subject: hello\r\n\r\nHi Bob\r\n' | curl -s smtp://127.0.0.1:2525 --mail-from alice@crepes.fr --mail-rcpt bob@hamburger.edu -T - -w '%{response_code}\n'   # -> 250
  applayer mail users list --db /tmp/mail-demo.db   # -> bob@hamburger.edu`,
	}
	cmd.AddCommand(mailServeCommand(g), mailUsersCommand(g), mailQueueCommand(g), mailSendCommand(g), mailDNSCommand(g))
	return cmd
}

// mailGCPercent is `mail serve`'s default GC target (--gc-percent).
const mailGCPercent = 400

func mailServeCommand(g *globals) *cobra.Command {
	var (
		cfg       mta.Config
		noTLS     bool
		setPolicy func() error
		gcPercent int
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Receive mail over SMTP for local domains and deliver it into the mail store",
		Long: `Serves SMTP (ESMTP with SIZE, PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES,
SMTPUTF8, CHUNKING and STARTTLS) on --listen for the --domain names. Mail
for other domains is refused with 554 (no relay, whoever the client is),
mail for unknown users with 550, messages over --max-size with 552, and
messages with a bare CR or LF (SMTP smuggling) with 550. Accepted mail is
in the --spool directory, fsynced, before the 250 reply, and survives a
kill -9; the queue then delivers it into the users' INBOX in --db. Users
are managed with 'applayer mail users'. STARTTLS uses --cert/--key, else a
certificate from the lab CA in --ca-dir (--no-tls: none).

With --submission ADDR (587) and --submissions ADDR (465, implicit TLS),
the users submit mail with AUTH PLAIN or LOGIN over TLS (in plain text
only from loopback with --insecure-auth-loopback); the envelope sender and
From must be their own, at most --rate-limit messages per --rate-window.
Mail to other domains is relayed by MX (through --resolver, else the
system's resolver), with STARTTLS when offered, retried with backoff for
--lifetime, then bounced to the sender with a DSN. The queue is on the
--admin listener: 'applayer mail queue'.`,
		Example: `  applayer mail serve --domain hamburger.edu --db /tmp/mail-serve.db --spool /tmp/mail-serve-spool --listen 127.0.0.1:2525 --admin 127.0.0.1:9925
  applayer mail serve --domain crepes.fr --db /tmp/mail-crepes.db --spool /tmp/mail-crepes-spool --listen 127.0.0.1:2526 --submission 127.0.0.1:2587 --submissions 127.0.0.1:2465 --resolver 127.0.0.1:53`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if noTLS {
				cfg.CADir, cfg.CertFile, cfg.KeyFile = "", "", ""
			}
			if len(cfg.SMTP.Domains) == 0 {
				return errors.New("mail serve: give at least one --domain")
			}
			if err := setPolicy(); err != nil {
				return err
			}
			if noTLS && (cfg.SubmissionAddr != "" || cfg.SubmissionsAddr != "") && !cfg.InsecureAuthLoopback {
				return errors.New("mail serve: submission needs TLS (drop --no-tls) or --insecure-auth-loopback")
			}
			logger, err := g.logger()
			if err != nil {
				return err
			}
			restore, err := setGCPercent(cmd, gcPercent, logger)
			if err != nil {
				return err
			}
			defer restore()
			return serveWithAdmin(cmd, g, func(d service.Deps) (service.Service, error) {
				return mta.New(cmd.Context(), cfg, d)
			}, func(s service.Service, a *obs.Admin) {
				a.Handle("/mail/queue", s.(*mta.Server).Queue().AdminHandler())
				a.Handle("/mail/queue/", s.(*mta.Server).Queue().AdminHandler())
			})
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&cfg.SMTP.Domains, "domain", nil, "local mail `DOMAIN` (repeatable or comma-separated)")
	f.StringVar(&cfg.SMTP.Addr, "listen", "127.0.0.1:25", "SMTP listen `ADDR`")
	f.StringVar(&cfg.SMTP.Hostname, "hostname", "", "this server's name in the greeting and Received headers (default: the first --domain)")
	mailStoreFlags(f, &cfg.DB)
	f.StringVar(&cfg.Spool, "spool", "spool", "queue spool `DIR`")
	f.StringVar(&cfg.CertFile, "cert", "", "STARTTLS certificate PEM file")
	f.StringVar(&cfg.KeyFile, "key", "", "STARTTLS private key PEM file")
	f.StringVar(&cfg.CADir, "ca-dir", filepath.Join(os.TempDir(), "applayer-ca"), "lab CA directory (ca.pem, ca.key) that issues the STARTTLS certificate, used without --cert")
	f.BoolVar(&noTLS, "no-tls", false, "do not offer STARTTLS")
	f.Int64Var(&cfg.SMTP.MaxMessageBytes, "max-size", 25<<20, "largest message in bytes (552 beyond)")
	f.IntVar(&cfg.SMTP.MaxRecipients, "max-recipients", 100, "most recipients per message")
	f.IntVar(&cfg.SMTP.MaxErrors, "max-errors", 10, "refused commands before a session is closed with 421")
	f.IntVar(&cfg.SMTP.MaxConns, "max-conns", 1000, "most SMTP connections at once")
	f.IntVar(&cfg.SMTP.MaxConnsPerIP, "max-conns-per-ip", 20, "most SMTP connections from one address")
	f.DurationVar(&cfg.SMTP.ReadTimeout, "read-timeout", 0, "how long a command (and a whole DATA) may take (default 5m)")
	f.DurationVar(&cfg.Queue.RetryMin, "retry-min", 0, "first retry delay of a failed delivery, doubling per attempt (default 1m)")
	f.DurationVar(&cfg.Queue.RetryMax, "retry-max", 0, "longest retry delay (default 1h)")
	f.DurationVar(&cfg.Queue.Lifetime, "lifetime", 0, "how long undelivered mail is retried before it bounces (default 120h)")
	f.IntVar(&cfg.Queue.Workers, "workers", 16, "deliveries at once")
	f.StringVar(&cfg.SubmissionAddr, "submission", "", "serve message submission with STARTTLS and AUTH on `ADDR` (port 587)")
	f.StringVar(&cfg.SubmissionsAddr, "submissions", "", "serve message submission over implicit TLS on `ADDR` (port 465)")
	f.BoolVar(&cfg.InsecureAuthLoopback, "insecure-auth-loopback", false, "allow AUTH without TLS from loopback clients on the submission, IMAP and POP3 ports")
	f.IntVar(&cfg.RateLimit, "rate-limit", 100, "messages a user may submit per --rate-window")
	f.DurationVar(&cfg.RateWindow, "rate-window", time.Hour, "the rate limit's window")
	setPolicy = mailPolicyFlags(f, &cfg)
	f.StringVar(&cfg.Resolver, "resolver", "", "DNS resolver `ADDR` (host:port) for MX lookups (default: the system's)")
	f.IntVar(&cfg.RelayPort, "relay-port", 25, "remote servers' SMTP `PORT`")
	f.BoolVar(&cfg.NoRelayTLS, "no-relay-tls", false, "do not use STARTTLS when relaying")
	mailAccessFlags(f, &cfg.Access)
	// The mail server's live heap is small (a few MiB beside the bounded
	// envelope cache) while a FETCH or RETR of many bodies makes several
	// MiB of short-lived garbage: at the runtime's 100 the GC ran during
	// nearly every such command (docs/BENCHMARKS.md, "Mail access: the
	// GC target").
	gcPercentFlag(f, &gcPercent, mailGCPercent)
	adminFlags(cmd, g, "/mail/queue")
	return cmd
}

func mailUsersCommand(g *globals) *cobra.Command {
	var db string
	cmd := &cobra.Command{
		Use:   "users",
		Short: "Manage the mail store's users: add, passwd, list, del",
		Example: `  applayer mail users add --db /tmp/mail-users.db alice@crepes.fr --password s3cret --quota 10485760
  applayer mail users list --db /tmp/mail-users.db   # -> alice@crepes.fr`,
	}
	mailStoreFlags(cmd.PersistentFlags(), &db)
	open := func(ctx context.Context) (store.Store, error) {
		return store.Open(ctx, db, store.Options{})
	}
	readPassword := func(pw string, fromStdin bool) (string, error) {
		if fromStdin {
			line, err := bufio.NewReader(g.stdin).ReadString('\n')
			if err != nil && line == "" {
				return "", fmt.Errorf("--password-stdin: %w", err)
			}
			pw = strings.TrimRight(line, "\r\n")
		}
		if pw == "" {
			return "", errors.New("give --password or --password-stdin")
		}
		return pw, nil
	}
	var (
		password  string
		pwStdin   bool
		quota     int64
		quotaPass int64
	)
	add := &cobra.Command{
		Use:   "add ADDRESS",
		Short: "Add a user (with INBOX, Sent, Drafts, Trash and Junk)",
		Example: `  applayer mail users add --db /tmp/mail-add.db bob@hamburger.edu --password s3cret   # -> added bob@hamburger.edu
  echo s3cret | applayer mail users add --db /tmp/mail-add.db carol@hamburger.edu --password-stdin   # -> added carol@hamburger.edu`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := readPassword(password, pwStdin)
			if err != nil {
				return err
			}
			st, err := open(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.AddUser(cmd.Context(), args[0], pw, quota); err != nil {
				return err
			}
			a, _ := store.CanonAddress(args[0])
			fmt.Fprintf(g.stdout, "added %s\n", a)
			return nil
		},
	}
	add.Flags().StringVar(&password, "password", "", "the password (visible to other local users in ps: prefer --password-stdin)")
	add.Flags().BoolVar(&pwStdin, "password-stdin", false, "read the password from the first line of stdin")
	add.Flags().Int64Var(&quota, "quota", 0, "quota in bytes (0: unlimited)")

	var pw2 string
	var pw2Stdin bool
	passwd := &cobra.Command{
		Use:   "passwd ADDRESS",
		Short: "Change a user's password (and quota with --quota)",
		Example: `  applayer mail users add --db /tmp/mail-passwd.db bob@hamburger.edu --password old
  applayer mail users passwd --db /tmp/mail-passwd.db bob@hamburger.edu --password new   # -> changed bob@hamburger.edu`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pw, err := readPassword(pw2, pw2Stdin)
			if err != nil {
				return err
			}
			st, err := open(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.SetPassword(cmd.Context(), args[0], pw); err != nil {
				return err
			}
			if cmd.Flags().Changed("quota") {
				if err := st.SetQuota(cmd.Context(), args[0], quotaPass); err != nil {
					return err
				}
			}
			a, _ := store.CanonAddress(args[0])
			fmt.Fprintf(g.stdout, "changed %s\n", a)
			return nil
		},
	}
	passwd.Flags().StringVar(&pw2, "password", "", "the new password (prefer --password-stdin)")
	passwd.Flags().BoolVar(&pw2Stdin, "password-stdin", false, "read the new password from the first line of stdin")
	passwd.Flags().Int64Var(&quotaPass, "quota", 0, "also set the quota in bytes (0: unlimited)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the users with their quota, usage and INBOX",
		Example: `  applayer mail users add --db /tmp/mail-list.db bob@hamburger.edu --password s3cret
  applayer mail users list --db /tmp/mail-list.db   # -> bob@hamburger.edu`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := open(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			users, err := st.Users(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ADDRESS\tQUOTA\tUSED\tINBOX")
			for _, u := range users {
				used, err := st.Usage(cmd.Context(), u.Address)
				if err != nil {
					return err
				}
				inbox, err := st.Mailbox(cmd.Context(), u.Address, "INBOX")
				if err != nil {
					return err
				}
				q := "unlimited"
				if u.Quota > 0 {
					q = humanBytes(u.Quota)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d messages\n", u.Address, q, humanBytes(used), inbox.Messages)
			}
			return tw.Flush()
		},
	}
	del := &cobra.Command{
		Use:   "del ADDRESS",
		Short: "Delete a user with all their mail",
		Example: `  applayer mail users add --db /tmp/mail-del.db bob@hamburger.edu --password s3cret
  applayer mail users del --db /tmp/mail-del.db bob@hamburger.edu   # -> deleted bob@hamburger.edu`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := open(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.DeleteUser(cmd.Context(), args[0]); err != nil {
				return err
			}
			a, _ := store.CanonAddress(args[0])
			fmt.Fprintf(g.stdout, "deleted %s\n", a)
			return nil
		},
	}
	cmd.AddCommand(add, passwd, list, del)
	return cmd
}
