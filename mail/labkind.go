// Package mail holds the mail system's lab kind: a mail server per lab
// host (mail/mta) for its domains, with their MX and SPF records in the
// lab's DNS, the users of the topology's config, submission on 587 and
// 465, and relay through the lab's resolver.
package mail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/mail/mta"
	"github.com/applayer/applayer/mail/queue"
	"github.com/applayer/applayer/mail/smtpd"
	"github.com/applayer/applayer/mail/store"
)

// KindName is the mail server's lab kind.
const KindName = "mail-server"

// LabUser is a user the lab creates on its server.
type LabUser struct {
	Address  string `json:"address"`
	Password string `json:"password"`
}

// labConfig is a mail-server's lab config.
type labConfig struct {
	// Domains are the server's mail domains; default: the host name
	// without its first label (mail.crepes.fr serves crepes.fr).
	Domains []string `json:"domains,omitempty"`
	// Users are created when missing.
	Users []LabUser `json:"users,omitempty"`
	// Resolver is the lab host whose dns-resolver answers the MX lookups;
	// default: the lab's first dns-resolver.
	Resolver string `json:"resolver,omitempty"`
	// RetryMin, RetryMax and Lifetime are the queue's (lab defaults 10s,
	// 1m, 10m: a dead destination bounces within minutes).
	RetryMin config.Duration `json:"retry_min,omitempty"`
	RetryMax config.Duration `json:"retry_max,omitempty"`
	Lifetime config.Duration `json:"lifetime,omitempty"`
	// NoSubmission turns 587 and 465 off.
	NoSubmission bool `json:"no_submission,omitempty"`
	// NoAccess turns IMAP (143, 993), POP3 (110, 995) and the web mail
	// (80) off.
	NoAccess bool `json:"no_access,omitempty"`
	// SPF is the domains' SPF policy; default "v=spf1 mx -all".
	SPF string `json:"spf,omitempty"`
	// DMARC is the policy the domains publish in their DMARC record
	// when the kind has a Policy that adds one (LabPolicy): none,
	// quarantine or reject (default reject).
	DMARC string `json:"dmarc,omitempty"`
	// BcryptCost is the cost of the users' password hashes (default
	// bcrypt's, 10); experiments that log in a few times per run use
	// 4, the least.
	BcryptCost int `json:"bcrypt_cost,omitempty"`
}

// Policy is what the mail policy (DKIM, SPF, DMARC) plugs into the lab's
// mail servers; the zero value adds nothing.
type Policy struct {
	// Records returns extra DNS records for one of a server's domains
	// (DKIM selector keys, DMARC policy) in master-file form.
	Records func(env lab.Env, domain string) ([]string, error)
	// Signer returns the outgoing signer of a server (DKIM).
	Signer func(env lab.Env, domains []string) (queue.Signer, error)
	// Inbound returns a server's check of received mail (DKIM, SPF, DMARC
	// verification, Authentication-Results).
	Inbound func(env lab.Env, domains []string) (smtpd.Inbound, error)
}

// LabKinds are the mail system's lab kinds, with no policy hooks.
func LabKinds() []lab.Kind { return LabKindsWith(Policy{}) }

// LabKindsWith are the lab kinds with the given policy hooks: mail-server,
// SMTP on port 25, submission on 587 (STARTTLS) and 465 (TLS) with the
// lab CA in STATE/mail/ca, its store and spool in STATE/mail/HOST.
func LabKindsWith(p Policy) []lab.Kind {
	return []lab.Kind{{
		Name: KindName, Summary: "mail server: SMTP (25), submission (587, 465), queue relaying by MX, mail store", Port: 25, Network: "tcp",
		Check: func(raw json.RawMessage) error {
			var c labConfig
			if err := lab.DecodeConfig(raw, &c); err != nil {
				return err
			}
			for _, u := range c.Users {
				if _, err := store.CanonAddress(u.Address); err != nil || u.Password == "" {
					return fmt.Errorf("mail-server: user %q needs an address and a password", u.Address)
				}
			}
			if c.BcryptCost != 0 && (c.BcryptCost < 4 || c.BcryptCost > 31) {
				return fmt.Errorf("mail-server: bcrypt_cost %d: 4 to 31", c.BcryptCost)
			}
			switch c.DMARC {
			case "", "none", "quarantine", "reject":
			default:
				return fmt.Errorf("mail-server: dmarc %q: none, quarantine or reject", c.DMARC)
			}
			return nil
		},
		Records: func(env lab.Env) ([]string, error) { return records(env, p) },
		Build:   func(env lab.Env) (service.Service, error) { return build(env, p) },
	}}
}

func decode(env lab.Env) (labConfig, []string, error) {
	var c labConfig
	if err := lab.DecodeConfig(env.Spec.Config, &c); err != nil {
		return c, nil, err
	}
	domains := c.Domains
	if len(domains) == 0 {
		_, rest, ok := strings.Cut(env.Host.Name, ".")
		if !ok || rest == "" {
			return c, nil, fmt.Errorf("mail-server on %s: give domains (the host name has no parent domain)", env.Host.Name)
		}
		domains = []string{rest}
	}
	for i, d := range domains {
		domains[i] = strings.ToLower(strings.TrimSuffix(d, "."))
	}
	return c, domains, nil
}

// records are the MX and SPF records of the server's domains, and the
// policy's.
func records(env lab.Env, p Policy) ([]string, error) {
	c, domains, err := decode(env)
	if err != nil {
		return nil, err
	}
	spf := c.SPF
	if spf == "" {
		spf = "v=spf1 mx -all"
	}
	var out []string
	for _, d := range domains {
		out = append(out,
			fmt.Sprintf("%s. 300 IN MX 10 %s.", d, env.Host.Name),
			fmt.Sprintf("%s. 300 IN TXT %s", d, strconv.Quote(spf)))
		if p.Records != nil {
			rrs, err := p.Records(env, d)
			if err != nil {
				return nil, err
			}
			out = append(out, rrs...)
		}
	}
	return out, nil
}

// ResolverAddr is the address of the lab's dns-resolver named host (or
// the first).
func ResolverAddr(plan *lab.Plan, host string) (string, error) {
	for _, h := range plan.Hosts {
		if host != "" && !strings.EqualFold(h.Name, host) {
			continue
		}
		for _, s := range h.Services {
			if s.Kind == "dns-resolver" {
				port := 53
				if s.Port != 0 {
					port = s.Port
				}
				return net.JoinHostPort(h.Addr.String(), strconv.Itoa(plan.Port(port))), nil
			}
		}
	}
	if host != "" {
		return "", fmt.Errorf("mail-server: resolver %q is not a lab host with a dns-resolver", host)
	}
	return "", errors.New("mail-server: the lab has no dns-resolver for MX lookups")
}

func build(env lab.Env, p Policy) (service.Service, error) {
	c, domains, err := decode(env)
	if err != nil {
		return nil, err
	}
	res, err := ResolverAddr(env.Plan, c.Resolver)
	if err != nil {
		return nil, err
	}
	def := func(d config.Duration, v time.Duration) time.Duration {
		if d > 0 {
			return d.D()
		}
		return v
	}
	dir := filepath.Join(env.Plan.StateDir, "mail", env.Host.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mail-server: %w", err)
	}
	addr := env.Host.Addr.String()
	cfg := mta.Config{
		SMTP:         smtpd.Config{Addr: env.Listen.String(), Hostname: env.Host.Name, Domains: domains},
		DB:           filepath.Join(dir, "mail.db"),
		Spool:        filepath.Join(dir, "spool"),
		CADir:        filepath.Join(env.Plan.StateDir, "mail", "ca"),
		Queue:        queue.Config{RetryMin: def(c.RetryMin, 10*time.Second), RetryMax: def(c.RetryMax, time.Minute), Lifetime: def(c.Lifetime, 10*time.Minute)},
		Resolver:     res,
		RelayPort:    env.Plan.Port(25),
		RelayTimeout: 30 * time.Second,
	}
	cfg.Store.BcryptCost = c.BcryptCost
	if !c.NoSubmission {
		cfg.SubmissionAddr = net.JoinHostPort(addr, strconv.Itoa(env.Plan.Port(587)))
		cfg.SubmissionsAddr = net.JoinHostPort(addr, strconv.Itoa(env.Plan.Port(465)))
	}
	if !c.NoAccess {
		cfg.Access = labAccess(addr, env.Plan.Port)
	}
	if p.Signer != nil {
		if cfg.Signer, err = p.Signer(env, domains); err != nil {
			return nil, err
		}
	}
	if p.Inbound != nil {
		if cfg.Inbound, err = p.Inbound(env, domains); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := mta.New(ctx, cfg, env.Deps)
	if err != nil {
		return nil, err
	}
	for _, u := range c.Users {
		err := srv.Store().AddUser(ctx, u.Address, u.Password, 0)
		if err != nil && !errors.Is(err, store.ErrUserExists) {
			srv.Shutdown(ctx)
			return nil, fmt.Errorf("mail-server: user %s: %w", u.Address, err)
		}
	}
	env.Admin.Handle("/mail/queue", srv.Queue().AdminHandler())
	env.Admin.Handle("/mail/queue/", srv.Queue().AdminHandler())
	return srv, nil
}
