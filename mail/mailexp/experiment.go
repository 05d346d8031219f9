package mailexp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/lab/experiment"
)

// ForgedMail is the forged-mail experiment: Alice's genuine message and
// the attacker's three forgeries under each DMARC policy crepes.fr can
// publish, with where each one ended.
func ForgedMail() experiment.Experiment {
	return experiment.Experiment{
		Name:    "forged-mail",
		Summary: "mail forged as alice@crepes.fr sent straight to Bob's server vs Alice's genuine mail: SPF, DKIM and DMARC verdicts and where each message ends (INBOX, Junk, refused) under p=none, quarantine and reject",
		Run: func(ctx context.Context, env experiment.Env) (*experiment.Result, error) {
			res, _, err := run(ctx, env)
			return res, err
		},
	}
}

// policies are the DMARC policies crepes.fr publishes, one lab each.
var policies = []string{"none", "quarantine", "reject"}

// outcome is what became of one message.
type outcome struct {
	Policy, Case     string
	Forged, Copy     bool
	SPF, DKIM, DMARC string
	// Where is INBOX, Junk, or "refused" (Reply says with what).
	Where string
	Reply string
	// AuthResults is the stored message's Authentication-Results ("" when
	// it was refused).
	AuthResults string
}

// expectedWhere is where DMARC enforcement puts a message failing DMARC
// under policy p (a passing one goes to INBOX).
func expectedWhere(p string) string {
	return map[string]string{"none": "INBOX", "quarantine": "Junk", "reject": "refused"}[p]
}

// run measures and prints; it returns the rows and each message's
// outcome.
func run(ctx context.Context, env experiment.Env) (*experiment.Result, []outcome, error) {
	fmt.Fprintf(env.Stdout, "forged-mail: Alice (alice@crepes.fr) sends Bob (bob@hamburger.edu) a message through her server mail.crepes.fr, which signs it with DKIM and relays it to hamburger.edu's MX.\n")
	fmt.Fprintf(env.Stdout, "An attacker (%s, outside crepes.fr's SPF \"v=spf1 mx -all\") sends Bob's server three messages \"From: Alice <alice@crepes.fr>\" over SMTP directly:\n", attacker)
	for i, f := range forgeries {
		fmt.Fprintf(env.Stdout, "  %d. %s (MAIL FROM:<%s>)\n", i+1, f.Name, f.MailFrom)
	}
	fmt.Fprintf(env.Stdout, "Claim: SMTP does not check that From: is the sender; SPF (the sending address), DKIM (the signature) and DMARC (crepes.fr's policy for mail with neither aligned) do.\n")
	fmt.Fprintf(env.Stdout, "The same exchange runs in a fresh lab for each policy crepes.fr publishes (_dmarc.crepes.fr TXT \"v=DMARC1; p=...\"); mail.hamburger.edu enforces it.\n\n")
	// The three labs run side by side (each on its own block).
	outs := make([][]outcome, len(policies))
	errs := make([]error, len(policies))
	var wg sync.WaitGroup
	for i, p := range policies {
		wg.Go(func() { outs[i], errs[i] = runPolicy(ctx, env, p) })
	}
	wg.Wait()
	var all []outcome
	for i, p := range policies {
		if errs[i] != nil {
			return nil, nil, fmt.Errorf("forged-mail: p=%s: %w", p, errs[i])
		}
		all = append(all, outs[i]...)
	}
	if err := writeOutcomes(env.Stdout, all); err != nil {
		return nil, nil, err
	}
	res := &experiment.Result{Rows: outcomeRows(all)}
	fmt.Fprintln(env.Stdout)
	return res, all, experiment.WriteTable(env.Stdout, res.Rows)
}

// outcomeRows counts, per policy, the genuine messages that passed all
// three checks into INBOX and the forged ones that failed DMARC and ended
// where the policy says.
func outcomeRows(all []outcome) []experiment.Row {
	var rows []experiment.Row
	for _, p := range policies {
		var genuine, forged, nForged float64
		for _, o := range all {
			if o.Policy != p {
				continue
			}
			if !o.Forged {
				if o.SPF == "pass" && o.DKIM == "pass" && o.DMARC == "pass" && o.Where == "INBOX" {
					genuine++
				}
				continue
			}
			nForged++
			if o.DMARC == "fail" && o.Where == expectedWhere(p) {
				forged++
			}
		}
		rows = append(rows,
			experiment.Row{Case: fmt.Sprintf("p=%s: genuine, spf, dkim and dmarc pass, in INBOX", p), Measured: genuine, Formula: 1, Unit: "msgs", Tolerance: 0.01},
			experiment.Row{Case: fmt.Sprintf("p=%s: forged, dmarc fail, %s", p, expectedWhere(p)), Measured: forged, Formula: nForged, Unit: "msgs", Tolerance: 0.01})
	}
	return rows
}

func writeOutcomes(w io.Writer, all []outcome) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POLICY\tMESSAGE\tSPF\tDKIM\tDMARC\tWHERE")
	refusal := ""
	for _, o := range all {
		where := o.Where
		if o.Where == "refused" {
			code, _, _ := strings.Cut(o.Reply, " message")
			where, refusal = "refused: "+code, o.Reply
		}
		fmt.Fprintf(tw, "p=%s\t%s\t%s\t%s\t%s\t%s\n", o.Policy, o.Case, o.SPF, o.DKIM, o.DMARC, where)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if refusal != "" {
		fmt.Fprintf(w, "\nmail.hamburger.edu's refusal: %s\n", refusal)
	}
	return nil
}

// experimentTopology is the lesson's mini-Internet: the DNS hierarchy
// down to crepes.fr and hamburger.edu, a resolver, both mail servers
// (crepes.fr publishing DMARC policy p) and the attacker's host.
func experimentTopology(p string) *lab.Topology {
	zone := func(origin string) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"zones": [{"origin": %q}]}`, origin))
	}
	auth := func(host, origin string) lab.Host {
		return lab.Host{Name: host, Services: []lab.ServiceSpec{{Kind: "dns-authority", Config: zone(origin)}}}
	}
	return &lab.Topology{Hosts: []lab.Host{
		auth("a.root-servers.net", "."), auth("a.edu-servers.net", "edu"), auth("d.nic.fr", "fr"),
		auth("dns.crepes.fr", "crepes.fr"), auth("dns.hamburger.edu", "hamburger.edu"),
		{Name: "resolver.nyu.edu", Services: []lab.ServiceSpec{{Kind: "dns-resolver"}}},
		{Name: aliceServer, Services: []lab.ServiceSpec{{Kind: "mail-server", Config: json.RawMessage(fmt.Sprintf(
			`{"users": [{"address": %q, "password": %q}], "dmarc": %q, "bcrypt_cost": 4}`, alice, alicePassword, p))}}},
		{Name: bobServer, Services: []lab.ServiceSpec{{Kind: "mail-server", Config: json.RawMessage(fmt.Sprintf(
			`{"users": [{"address": %q, "password": %q}], "bcrypt_cost": 4}`, bob, bobPassword))}}},
		{Name: attacker},
	}}
}

var authSummary = regexp.MustCompile(`\b(spf|dkim|dmarc)=([a-z]+)`)

// runPolicy plays the lesson in a lab where crepes.fr publishes p.
func runPolicy(ctx context.Context, env experiment.Env, p string) ([]outcome, error) {
	// The lab's events: deliveries to wait for, and the checks of the
	// messages that were refused (they are stored nowhere).
	bus := trace.NewBus(nil)
	var mu sync.Mutex
	checks := map[string]string{} // client address -> its last message's checks
	delivered := make(chan struct{}, 16)
	bus.Subscribe(trace.SinkFunc(func(e trace.Event) {
		if env.Deps.Trace != nil {
			env.Deps.Trace.Publish(e)
		}
		switch {
		case e.Proto == "mail/local" && e.Host == bobServer:
			delivered <- struct{}{}
		case e.Proto == "mail/auth" && e.Host == bobServer:
			host, _, _ := net.SplitHostPort(e.To)
			mu.Lock()
			checks[host] = e.Summary
			mu.Unlock()
		}
	}))
	lenv := env
	lenv.Deps.Trace = bus
	r, stop, err := experiment.StartLab(ctx, lenv, experimentTopology(p))
	if err != nil {
		return nil, err
	}
	defer stop()
	plan := r.Plan
	wait := func(n int) error {
		for range n {
			select {
			case <-delivered:
			case <-time.After(30 * time.Second):
				return fmt.Errorf("a message was not delivered to %s within 30s", bob)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	client := plan.ClientDialer(lab.ClientAddr(plan), nil)
	atk, _ := plan.Lookup(attacker)
	atkDialer := plan.ClientDialer(atk.Addr, nil)

	// Alice's genuine message first (the third forgery copies it).
	if _, err := sendGenuine(ctx, client, plan, alicePassword, "genuine: Lunch on Friday?", "Bob, lunch on Friday at noon? Alice\n"); err != nil {
		return nil, fmt.Errorf("Alice's message: %w", err)
	}
	if err := wait(1); err != nil {
		return nil, err
	}
	box, err := readMailbox(ctx, client, plan, bobPassword)
	if err != nil || len(box) != 1 {
		return nil, fmt.Errorf("Bob's mailbox after Alice's message: %d messages, %v", len(box), err)
	}
	genuine := box[0].Raw
	genuineSubject := box[0].Subject

	out := []outcome{{Policy: p, Case: "genuine, through mail.crepes.fr"}}
	accepted := 0
	for _, f := range forgeries {
		msg, err := forge(f, genuine)
		if err != nil {
			return nil, err
		}
		reply, refused, err := sendForged(ctx, atkDialer, plan, f.MailFrom, msg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		o := outcome{Policy: p, Case: f.Name, Forged: true, Copy: f.Copy, Reply: reply}
		if refused != nil {
			o.Where = "refused"
			mu.Lock()
			// The checks are traced before the reply is sent.
			for _, m := range authSummary.FindAllStringSubmatch(checks[atk.Addr.String()], -1) {
				switch m[1] {
				case "spf":
					o.SPF = m[2]
				case "dkim":
					o.DKIM = m[2]
				case "dmarc":
					o.DMARC = m[2]
				}
			}
			mu.Unlock()
		} else {
			accepted++
		}
		out = append(out, o)
	}
	if err := wait(accepted); err != nil {
		return nil, err
	}
	box, err = readMailbox(ctx, client, plan, bobPassword)
	if err != nil {
		return nil, fmt.Errorf("Bob's mailbox: %w", err)
	}
	if len(box) != 1+accepted {
		return nil, fmt.Errorf("Bob's mailbox holds %d messages: Alice's and %d accepted forgeries expected", len(box), accepted)
	}
	for i := range out {
		if out[i].Where == "refused" {
			continue
		}
		for _, m := range box {
			// The copy has Alice's subject: the text tells them apart.
			forgedText := bytes.Contains(m.Raw, []byte(forgedText))
			var match bool
			switch {
			case out[i].Copy:
				match = m.Subject == genuineSubject && forgedText
			case out[i].Forged:
				match = m.Subject == out[i].Case
			default:
				match = m.Subject == genuineSubject && !forgedText
			}
			if match {
				out[i].Where, out[i].AuthResults = m.Box, m.AuthResults
				out[i].SPF, out[i].DKIM, out[i].DMARC = authResult(m.AuthResults, "spf"), authResult(m.AuthResults, "dkim"), authResult(m.AuthResults, "dmarc")
			}
		}
		if out[i].Where == "" {
			return nil, fmt.Errorf("%q was accepted (%s) but is in neither INBOX nor Junk", out[i].Case, out[i].Reply)
		}
	}
	return out, nil
}
