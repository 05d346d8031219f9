package mta

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/applayer/applayer/dns/dnstest"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/mail/policy"
	"github.com/applayer/applayer/mail/smtpd"
	"github.com/applayer/applayer/mail/store"
)

// TestInboundPolicy runs hamburger.edu's server with DMARC enforced and
// the crepes.fr and quarantine.example records served by our authority
// server: a genuine message from crepes.fr's mail host (SPF) signed with
// its keys (DKIM) lands in Bob's INBOX with Authentication-Results
// saying so; a forged one (From alice@crepes.fr, another address, no
// signature) is refused with 550 5.7.1 at the end of DATA; a failing
// message whose domain asks for quarantine lands in Bob's Junk, the
// Authentication-Results its sender forged with our name removed.
func TestInboundPolicy(t *testing.T) {
	dir := t.TempDir()
	signer, err := policy.LoadOrCreateKeys(filepath.Join(dir, "crepes-dkim"), []string{"crepes.fr"})
	if err != nil {
		t.Fatal(err)
	}
	crepesMX := dnstest.RandomBlock().Next().Next()
	resolver := serveMailDomains(t, signer, crepesMX, policy.Domain{Name: "crepes.fr", MX: "mail.crepes.fr"}, policy.Domain{Name: "quarantine.example", MX: "mail.quarantine.example", DMARC: "quarantine"})
	addUsers(t, filepath.Join(dir, "mail.db"), "bob@hamburger.edu")
	srv, err := New(context.Background(), Config{
		SMTP:     smtpd.Config{Addr: "127.0.0.1:0", Domains: []string{"hamburger.edu"}, Hostname: "mail.hamburger.edu"},
		DB:       filepath.Join(dir, "mail.db"),
		Spool:    filepath.Join(dir, "spool"),
		Store:    store.Options{BcryptCost: bcrypt.MinCost},
		Resolver: resolver,
		Policy:   PolicyConfig{DMARC: policy.ModeEnforce},
	}, service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, srv)
	addr := srv.Addrs()[0].String()

	send := func(from netip.Addr, mailFrom string, msg []byte) error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: from.AsSlice()}, Timeout: 5 * time.Second}
		nc, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c := smtp.NewClient(nc)
		defer c.Close()
		if err := c.Hello("client.example"); err != nil {
			return err
		}
		if err := c.Mail(mailFrom, nil); err != nil {
			return err
		}
		if err := c.Rcpt("bob@hamburger.edu", nil); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		w.Write(msg)
		return w.Close()
	}
	message := func(from, subject string) []byte {
		return []byte("From: " + from + "\r\nTo: bob@hamburger.edu\r\nSubject: " + subject + "\r\nDate: Thu, 03 Dec 2026 14:00:00 +0000\r\nMessage-ID: <" + subject + "@test>\r\n\r\nHi Bob\r\n")
	}
	genuine, ok, err := signer.Sign(message("Alice <alice@crepes.fr>", "genuine"))
	if err != nil || !ok {
		t.Fatalf("sign: %v %v", ok, err)
	}
	if err := send(crepesMX, "alice@crepes.fr", genuine); err != nil {
		t.Fatalf("genuine message refused: %v", err)
	}
	err = send(netip.MustParseAddr("127.0.0.1"), "alice@crepes.fr", message("Alice <alice@crepes.fr>", "forged"))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
		t.Fatalf("forged message: %v, want 550 5.7.1", err)
	}
	// A forged Authentication-Results claiming our name is removed.
	forgedAR := append([]byte("Authentication-Results: mail.hamburger.edu; dmarc=pass header.from=quarantine.example\r\n"), message("x@quarantine.example", "quarantined")...)
	if err := send(netip.MustParseAddr("127.0.0.1"), "x@quarantine.example", forgedAR); err != nil {
		t.Fatalf("quarantined message refused: %v", err)
	}
	st := srv.Store()
	ctx := testkit.Context(t, 20*time.Second)
	box := func(name string) []string {
		for {
			msgs, err := st.Messages(ctx, "bob@hamburger.edu", name)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) > 0 || ctx.Err() != nil {
				var out []string
				for _, m := range msgs {
					b, _ := st.Body(ctx, "bob@hamburger.edu", name, m.UID)
					out = append(out, string(b))
				}
				return out
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	inbox := box("INBOX")
	if len(inbox) != 1 || !strings.Contains(inbox[0], "Subject: genuine") {
		t.Fatalf("INBOX: %q", inbox)
	}
	for _, want := range []string{"Authentication-Results: mail.hamburger.edu;", "spf=pass smtp.mailfrom=crepes.fr", "dkim=pass header.d=crepes.fr", "dmarc=pass header.from=crepes.fr"} {
		if !strings.Contains(inbox[0], want) {
			t.Errorf("genuine message lacks %q:\n%s", want, inbox[0])
		}
	}
	junk := box("Junk")
	if len(junk) != 1 || !strings.Contains(junk[0], "Subject: quarantined") || !strings.Contains(junk[0], "dmarc=fail header.from=quarantine.example") ||
		strings.Count(junk[0], "Authentication-Results: mail.hamburger.edu;") != 1 || strings.Contains(junk[0], "dmarc=pass") {
		t.Fatalf("Junk: %q", junk)
	}
}

// TestSignedRelay is the chapter's path with the policies on: Alice
// submits to crepes.fr, whose queue relays by MX (through our authority
// server) to hamburger.edu, signing with crepes.fr's DKIM keys on the
// way out; hamburger.edu, enforcing DMARC, checks SPF (crepes.fr's MX
// host is the relay's address), both signatures and DMARC, and files the
// message into Bob's INBOX with the results.
func TestSignedRelay(t *testing.T) {
	dir := t.TempDir()
	dkimDir := filepath.Join(dir, "crepes-dkim")
	signer, err := policy.LoadOrCreateKeys(dkimDir, []string{"crepes.fr"})
	if err != nil {
		t.Fatal(err)
	}
	resolver := serveMailDomains(t, signer, netip.MustParseAddr("127.0.0.1"), policy.Domain{Name: "crepes.fr", MX: "mail.crepes.fr"}, policy.Domain{Name: "hamburger.edu", MX: "mail.hamburger.edu"})
	server := func(domain, user string, cfg Config) *Server {
		sub := filepath.Join(dir, domain)
		addUsers(t, filepath.Join(sub+".db"), user)
		cfg.SMTP = smtpd.Config{Addr: "127.0.0.1:0", Domains: []string{domain}, Hostname: "mail." + domain}
		cfg.DB, cfg.Spool, cfg.Resolver = sub+".db", filepath.Join(sub, "spool"), resolver
		cfg.Store = store.Options{BcryptCost: bcrypt.MinCost}
		srv, err := New(context.Background(), cfg, service.Deps{Logger: testkit.Logger(t).With("server", domain)})
		if err != nil {
			t.Fatal(err)
		}
		return testkit.Start(t, srv)
	}
	hamburger := server("hamburger.edu", "bob@hamburger.edu", Config{Policy: PolicyConfig{DMARC: policy.ModeEnforce}})
	port := hamburger.Addrs()[0].(*net.TCPAddr).Port
	crepes := server("crepes.fr", "alice@crepes.fr", Config{SubmissionAddr: "127.0.0.1:0", InsecureAuthLoopback: true,
		RelayPort: port, NoRelayTLS: true, Policy: PolicyConfig{DKIMDir: dkimDir}})

	c, err := smtp.Dial(crepes.Addrs()[1].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", "alice@crepes.fr", "pw")); err != nil {
		t.Fatal(err)
	}
	msg := "From: Alice <alice@crepes.fr>\r\nTo: bob@hamburger.edu\r\nSubject: crepes\r\nDate: Thu, 03 Dec 2026 14:00:00 +0000\r\nMessage-ID: <relay@crepes.fr>\r\n\r\nThe crepes are ready.\r\n"
	if err := c.SendMail("alice@crepes.fr", []string{"bob@hamburger.edu"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	ctx := testkit.Context(t, 30*time.Second)
	st := hamburger.Store()
	for {
		msgs, err := st.Messages(ctx, "bob@hamburger.edu", "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 1 {
			b, _ := st.Body(ctx, "bob@hamburger.edu", "INBOX", msgs[0].UID)
			for _, want := range []string{"DKIM-Signature:", "a=rsa-sha256", "a=ed25519-sha256", "spf=pass smtp.mailfrom=crepes.fr", "dkim=pass header.d=crepes.fr", "dmarc=pass header.from=crepes.fr"} {
				if !strings.Contains(string(b), want) {
					t.Errorf("Bob's message lacks %q:\n%s", want, b)
				}
			}
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("the message did not reach Bob's INBOX")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// serveMailDomains serves the domains' records (policy.Records with
// signer's keys, each MX host at mx) from our authority server on a
// random loopback address, and returns that server's host:port.
func serveMailDomains(t *testing.T, signer *policy.Signer, mx netip.Addr, domains ...policy.Domain) string {
	t.Helper()
	dnsAddr := dnstest.RandomBlock().Next()
	var zs []dnstest.Zone
	for _, d := range domains {
		rrs, err := policy.Records(d, signer)
		if err != nil {
			t.Fatal(err)
		}
		apex := d.Name + "."
		text := fmt.Sprintf("%s 3600 IN SOA ns.%s h.%s 1 3600 600 86400 60\n%s 3600 IN NS ns.%s\nns.%s 3600 IN A %s\n%s 3600 IN A %s\n%s\n",
			apex, apex, apex, apex, apex, apex, dnsAddr, d.MX+".", mx, strings.Join(rrs, "\n"))
		zs = append(zs, dnstest.Zone{Origin: apex, Addr: dnsAddr, Text: text})
	}
	sv, err := dnstest.StartZones(t, 0, zs)
	if err != nil {
		t.Fatal(err)
	}
	return netip.AddrPortFrom(dnsAddr, uint16(sv.Port)).String()
}
