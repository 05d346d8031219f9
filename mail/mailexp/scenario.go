package mailexp

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/lab"
)

// LabScenarios are the mail system's scenarios: forged-mail.
func LabScenarios() []lab.Scenario {
	return []lab.Scenario{{
		Name: "forged-mail",
		Summary: "Alice's mail to Bob goes through mail.crepes.fr (DKIM-signed, relayed by MX) and passes SPF, DKIM and DMARC at mail.hamburger.edu; " +
			"an attacker (attacker.lab) sends \"From: alice@crepes.fr\" straight to mail.hamburger.edu over SMTP: SPF fails, there is no signature, and crepes.fr's DMARC policy (p=reject) has it refused with 550 5.7.1",
		Figure: "Alice sends e-mail to Bob (the chapter's figure), with an attacker added: SMTP itself does not check that From: is the sender",
		Run:    runForged,
		Keep:   keepMail,
	}}
}

// scenarioHosts are the hosts whose observations the narration shows.
var scenarioHosts = map[string]bool{"client": true, attacker: true, aliceServer: true, bobServer: true}

// keepMail keeps the mail protocols' messages (SMTP, IMAP, the MX lookup)
// and the servers' decisions (the checks, local delivery) observed by the
// scenario's cast, and the clients' connections.
func keepMail(e trace.Event) bool {
	if !scenarioHosts[e.Host] {
		return false
	}
	fam, _, _ := strings.Cut(e.Proto, "/")
	switch fam {
	case "tcp", "smtp", "imap", "mail", "dns":
		return true
	}
	return false
}

// labPasswords are the default topology's passwords of Alice and Bob.
const alicePassword, bobPassword = "alice", "bob"

func runForged(ctx context.Context, env lab.ScenarioEnv) error {
	atk, ok := env.Plan.Lookup(attacker)
	if !ok {
		return fmt.Errorf("forged-mail: the topology has no host %s (the attacker's address)", attacker)
	}
	delivered := make(chan string, 16)
	defer env.Trace.Subscribe(trace.SinkFunc(func(e trace.Event) {
		if e.Proto == "mail/local" && e.Host == bobServer && strings.Contains(e.Summary, "delivered to "+bob+" ") {
			select {
			case delivered <- e.Summary:
			default:
			}
		}
	}))()
	wait := func(what string) error {
		select {
		case <-delivered:
			return nil
		case <-time.After(30 * time.Second):
			return fmt.Errorf("forged-mail: %s not delivered to %s within 30s", what, bob)
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	// 1. Alice's genuine message, through her own server.
	reply, err := sendGenuine(ctx, env.Dialer, env.Plan, alicePassword, "Lunch on Friday?", "Bob, lunch on Friday at noon? Alice\n")
	if err != nil {
		return fmt.Errorf("forged-mail: Alice's message: %w", err)
	}
	fmt.Fprintf(env.Out, "Alice submits to %s: %s\n", aliceServer, reply)
	if err := wait("Alice's message"); err != nil {
		return err
	}

	// 2. The attacker's: straight to Bob's server, From: alice@crepes.fr.
	f := forgeries[0]
	msg, err := forge(f, nil)
	if err != nil {
		return err
	}
	d := env.Plan.ClientDialer(atk.Addr, env.Trace.WithHost(attacker))
	reply, refused, err := sendForged(ctx, d, env.Plan, f.MailFrom, msg)
	if err != nil {
		return fmt.Errorf("forged-mail: the attacker's message: %w", err)
	}
	fmt.Fprintf(env.Out, "%s (%s) sends %q to %s: %s\n", attacker, atk.Addr, f.Name, bobServer, reply)
	if refused == nil {
		if err := wait("the forged message"); err != nil {
			return err
		}
	}

	// 3. Bob reads his mail.
	msgs, err := readMailbox(ctx, env.Dialer, env.Plan, bobPassword)
	if err != nil {
		return fmt.Errorf("forged-mail: Bob's mailbox: %w", err)
	}
	for _, m := range msgs {
		fmt.Fprintf(env.Out, "Bob's %s: %q\n  Authentication-Results: %s\n", m.Box, m.Subject, m.AuthResults)
	}
	return nil
}
