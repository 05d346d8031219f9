package app

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/applayer/applayer/mail/mua"
)

func mailSendCommand(g *globals) *cobra.Command {
	var (
		m            mua.Message
		sub          mua.Submission
		body         string
		attach       []string
		pwFile       string
		caFile       string
		caDir        string
		insecure     bool
		verbose      bool
		envelopeFrom string
		tlsName      string
	)
	cmd := &cobra.Command{
		Use:   "send",
		Short: "Compose a message and submit it with AUTH over STARTTLS (a user agent, like swaks)",
		Long: `Composes a message from the flags (the text from --body, else from stdin;
each --attach FILE as a MIME attachment, multipart/mixed) and submits it to
a submission server (--server, port 587 with STARTTLS, or --tls for 465's
implicit TLS) with AUTH PLAIN as --user (default: --from). The password
comes from --password-file or the APPLAYER_MAIL_PASSWORD environment
variable. The server's certificate is checked against --ca-file, else the
lab CA in --ca-dir, else the system's roots. -v prints the dialogue as
swaks does (AUTH secrets masked).`,
		Example: `  applayer mail users add --db /tmp/mail-send.db alice@crepes.fr --password s3cret
  applayer mail users add --db /tmp/mail-send.db bob@hamburger.edu --password b0b
  applayer mail serve --domain crepes.fr,hamburger.edu --db /tmp/mail-send.db --spool /tmp/mail-send-spool --listen 127.0.0.1:2527 --submission 127.0.0.1:2588 --submissions 127.0.0.1:2466 &
  printf 'Hi Bob\n' | APPLAYER_MAIL_PASSWORD=s3cret applayer mail send --server 127.0.0.1:2588 --from alice@crepes.fr --to bob@hamburger.edu --subject hello -v   # -> 250 2.0.0 OK queued as
  echo s3cret > /tmp/mail-send-pw; applayer mail send --server 127.0.0.1:2466 --tls --from alice@crepes.fr --to bob@hamburger.edu --subject report --body 'see attached' --attach /tmp/mail-send-pw --password-file /tmp/mail-send-pw   # -> sent: 250`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if m.From == "" || len(m.To)+len(m.Cc) == 0 {
				return errors.New("mail send: give --from and at least one --to")
			}
			if !cmd.Flags().Changed("body") {
				b, err := io.ReadAll(io.LimitReader(g.stdin, 64<<20))
				if err != nil {
					return fmt.Errorf("mail send: stdin: %w", err)
				}
				body = string(b)
			}
			m.Text = body
			for _, p := range attach {
				a, err := mua.ReadAttachment(p)
				if err != nil {
					return err
				}
				m.Attachments = append(m.Attachments, a)
			}
			msg, err := mua.Compose(m)
			if err != nil {
				return err
			}
			if sub.Username == "" {
				sub.Username = addrOnly(m.From)
			}
			sub.Password = os.Getenv("APPLAYER_MAIL_PASSWORD")
			if pwFile != "" {
				b, err := os.ReadFile(pwFile)
				if err != nil {
					return fmt.Errorf("mail send: --password-file: %w", err)
				}
				sub.Password = strings.TrimRight(string(b), "\r\n")
			}
			if sub.Password == "" {
				return errors.New("mail send: no password: set APPLAYER_MAIL_PASSWORD or give --password-file")
			}
			tc := &tls.Config{InsecureSkipVerify: insecure, ServerName: tlsName}
			pemFile := caFile
			if pemFile == "" && caDir != "" {
				if _, err := os.Stat(filepath.Join(caDir, "ca.pem")); err == nil {
					pemFile = filepath.Join(caDir, "ca.pem")
				}
			}
			if pemFile != "" {
				pem, err := os.ReadFile(pemFile)
				if err != nil {
					return fmt.Errorf("mail send: CA: %w", err)
				}
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(pem) {
					return fmt.Errorf("mail send: CA: no certificate in %s", pemFile)
				}
				tc.RootCAs = pool
			}
			sub.TLS = tc
			if verbose {
				sub.Transcript = g.stdout
			}
			from := envelopeFrom
			if from == "" {
				from = addrOnly(m.From)
			}
			var rcpts []string
			for _, r := range append(append([]string{}, m.To...), m.Cc...) {
				rcpts = append(rcpts, addrOnly(r))
			}
			reply, err := mua.Send(cmd.Context(), sub, from, rcpts, msg)
			if err != nil {
				return fmt.Errorf("mail send: %w", err)
			}
			if !verbose {
				fmt.Fprintf(g.stdout, "sent: 250 %s\n", reply)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&sub.Server, "server", "127.0.0.1:587", "submission server `HOST:PORT`")
	f.BoolVar(&sub.ImplicitTLS, "tls", false, "TLS from the first byte (port 465) instead of STARTTLS")
	f.BoolVar(&sub.NoTLS, "no-tls", false, "no STARTTLS (only for a server allowing AUTH in plain text on loopback)")
	f.StringVar(&m.From, "from", "", "the sender, `ADDRESS` or 'Name <address>' (also the envelope sender)")
	f.StringVar(&envelopeFrom, "envelope-from", "", "envelope sender when it differs from --from")
	f.StringSliceVar(&m.To, "to", nil, "recipient `ADDRESS` (repeatable)")
	f.StringSliceVar(&m.Cc, "cc", nil, "copy recipient `ADDRESS` (repeatable)")
	f.StringVar(&m.Subject, "subject", "", "the subject")
	f.StringVar(&body, "body", "", "the text (default: read from stdin)")
	f.StringSliceVar(&attach, "attach", nil, "attach `FILE` (repeatable)")
	f.StringVar(&sub.Username, "user", "", "AUTH user name (default: the --from address)")
	f.StringVar(&pwFile, "password-file", "", "read the password from the first line of `FILE` (else $APPLAYER_MAIL_PASSWORD)")
	f.StringVar(&caFile, "ca-file", "", "trust this CA certificate `PEM` for the server")
	f.StringVar(&caDir, "ca-dir", filepath.Join(os.TempDir(), "applayer-ca"), "lab CA directory whose ca.pem is trusted when it exists (used without --ca-file)")
	f.BoolVar(&insecure, "insecure", false, "do not check the server's certificate")
	f.StringVar(&tlsName, "tls-name", "", "the `NAME` the server's certificate must hold (default: --server's host)")
	f.StringVar(&sub.HelloName, "helo", "localhost", "EHLO `NAME`")
	f.BoolVarP(&verbose, "verbose", "v", false, "print the SMTP dialogue (as swaks)")
	return cmd
}

// addrOnly returns the address of "Name <addr>" (or s itself).
func addrOnly(s string) string {
	if i := strings.LastIndexByte(s, '<'); i >= 0 {
		if j := strings.IndexByte(s[i:], '>'); j > 0 {
			return s[i+1 : i+j]
		}
	}
	return strings.TrimSpace(s)
}
