package app

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/obs"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/lab"
	"github.com/applayer/applayer/mail/store"
)

// TestLabAliceToBob is the chapter's figure in the lab: Alice submits a
// message with `applayer mail send` (AUTH over STARTTLS) to
// mail.crepes.fr, whose queue looks up hamburger.edu's MX through the
// lab's resolver and relays it over SMTP (STARTTLS) to mail.hamburger.edu,
// which puts it in Bob's INBOX; every step is on the trace bus, in order.
func TestLabAliceToBob(t *testing.T) {
	zone := func(origin string) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"zones": [{"origin": %q}]}`, origin))
	}
	topo := &lab.Topology{Hosts: []lab.Host{
		{Name: "a.root-servers.net", Services: []lab.ServiceSpec{{Kind: "dns-authority", Config: zone(".")}}},
		{Name: "a.edu-servers.net", Services: []lab.ServiceSpec{{Kind: "dns-authority", Config: zone("edu")}}},
		{Name: "d.nic.fr", Services: []lab.ServiceSpec{{Kind: "dns-authority", Config: zone("fr")}}},
		{Name: "dns.hamburger.edu", Services: []lab.ServiceSpec{{Kind: "dns-authority", Config: zone("hamburger.edu")}}},
		{Name: "dns.crepes.fr", Services: []lab.ServiceSpec{{Kind: "dns-authority", Config: zone("crepes.fr")}}},
		{Name: "resolver.nyu.edu", Services: []lab.ServiceSpec{{Kind: "dns-resolver"}}},
		{Name: "mail.crepes.fr", Services: []lab.ServiceSpec{{Kind: "mail-server", Config: json.RawMessage(`{"users": [{"address": "alice@crepes.fr", "password": "alice-pw"}]}`)}}},
		{Name: "mail.hamburger.edu", Services: []lab.ServiceSpec{{Kind: "mail-server", Config: json.RawMessage(`{"users": [{"address": "bob@hamburger.edu", "password": "bob-pw"}]}`)}}},
	}}
	offset := 44000 + int(time.Now().UnixNano()%20)*10
	topo.Lab = lab.Settings{Block: fmt.Sprintf("127.%d.0.0/16", 100+time.Now().Nanosecond()%150), PortOffset: &offset, StateDir: t.TempDir()}
	kinds := labKinds()
	plan, err := lab.NewPlan(topo, kinds, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"crepes.fr. 300 IN MX 10 mail.crepes.fr.", `hamburger.edu. 300 IN TXT "v=spf1 mx -all"`,
		`applayer-rsa._domainkey.crepes.fr. 300 IN TXT "v=DKIM1; k=rsa; p=`, `applayer-ed25519._domainkey.crepes.fr. 300 IN TXT "v=DKIM1; k=ed25519; p=`,
		`_dmarc.hamburger.edu. 300 IN TXT "v=DMARC1; p=reject; adkim=r; aspf=r"`} {
		if !strings.Contains(strings.Join(plan.Records, "\n"), want) {
			t.Errorf("plan records %q lack %q", plan.Records, want)
		}
	}
	bus := trace.NewBus(nil)
	var mu sync.Mutex
	var events []trace.Event
	bus.Subscribe(trace.SinkFunc(func(e trace.Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}))
	reg := obs.NewRegistry()
	r, err := lab.Build(plan, kinds, service.Deps{Logger: testkit.Logger(t), Metrics: reg, Trace: bus}, reg)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, r)

	// The MX is in the lab's DNS, through its resolver.
	res, _ := plan.Lookup("resolver.nyu.edu")
	q := new(dns.Msg)
	q.SetQuestion("hamburger.edu.", dns.TypeMX)
	in, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(q, fmt.Sprintf("%s:%d", res.Addr, plan.Port(53)))
	if err != nil || len(in.Answer) != 1 || in.Answer[0].(*dns.MX).Mx != "mail.hamburger.edu." {
		t.Fatalf("hamburger.edu MX through the lab resolver: %v %v", in, err)
	}

	crepes, _ := plan.Lookup("mail.crepes.fr")
	t.Setenv("APPLAYER_MAIL_PASSWORD", "alice-pw")
	out, code := runCmd(t, "Bonjour Bob!\n", "mail", "send", "-v",
		"--server", fmt.Sprintf("%s:%d", crepes.Addr, plan.Port(587)), "--tls-name", "mail.crepes.fr",
		"--ca-file", filepath.Join(plan.StateDir, "mail", "ca", "ca.pem"),
		"--from", "Alice <alice@crepes.fr>", "--to", "bob@hamburger.edu", "--subject", "Hello from Paris")
	if code != 0 || !strings.Contains(out, " ~> AUTH PLAIN ****") || !strings.Contains(out, "<~  250 2.0.0 OK queued as ") {
		t.Fatalf("mail send: %d\n%s", code, out)
	}

	// Bob's INBOX, read from the store of mail.hamburger.edu.
	st, err := store.OpenSQLite(context.Background(), filepath.Join(plan.StateDir, "mail", "mail.hamburger.edu", "mail.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var msgs []store.Message
	deadline := time.Now().Add(20 * time.Second)
	for len(msgs) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no message in Bob's INBOX after 20s")
		}
		time.Sleep(50 * time.Millisecond)
		msgs, _ = st.Messages(context.Background(), "bob@hamburger.edu", "INBOX")
	}
	body, err := st.Body(context.Background(), "bob@hamburger.edu", "INBOX", msgs[0].UID)
	if err != nil {
		t.Fatal(err)
	}
	b := string(body)
	i1 := strings.Index(b, "by mail.hamburger.edu with ESMTPS")
	i2 := strings.Index(b, "by mail.crepes.fr with ESMTPSA")
	if i1 < 0 || i2 < i1 || !strings.Contains(b, "Subject: Hello from Paris") || !strings.Contains(b, "Bonjour Bob!") {
		t.Errorf("Bob's message:\n%s", b)
	}
	// Signed by crepes.fr on the way out, checked by hamburger.edu on the
	// way in (mail/policy through the lab's resolver).
	for _, want := range []string{"Authentication-Results: mail.hamburger.edu;", "spf=pass smtp.mailfrom=crepes.fr", "dkim=pass header.d=crepes.fr", "dmarc=pass header.from=crepes.fr"} {
		if !strings.Contains(b, want) {
			t.Errorf("Bob's message lacks %q:\n%s", want, b)
		}
	}

	// The chapter's figure on the trace bus, in order.
	steps := []struct{ host, proto, has string }{
		{"mail.crepes.fr", "smtp/submission", "AUTH alice@crepes.fr"},
		{"mail.crepes.fr", "dns", "MX hamburger.edu? NOERROR [MX 10 mail.hamburger.edu.]"},
		{"mail.crepes.fr", "dns", "A mail.hamburger.edu? NOERROR"},
		{"mail.crepes.fr", "smtp", "EHLO mail.crepes.fr to mail.hamburger.edu (TLS true)"},
		{"mail.hamburger.edu", "smtp/mx", "MAIL FROM:<alice@crepes.fr> RCPT TO:<bob@hamburger.edu> DATA"},
		{"mail.hamburger.edu", "mail/local", "delivered to bob@hamburger.edu INBOX"},
	}
	mu.Lock()
	defer mu.Unlock()
	next, relayed := 0, false
	for _, e := range events {
		// crepes.fr's view of the relayed transaction (traced before its
		// end of data) is only required to be there.
		relayed = relayed || e.Host == "mail.crepes.fr" && e.Proto == "smtp" && strings.Contains(e.Summary, "MAIL FROM:<alice@crepes.fr> RCPT TO:<bob@hamburger.edu> DATA")
		if next < len(steps) && e.Host == steps[next].host && e.Proto == steps[next].proto && strings.Contains(e.Summary, steps[next].has) {
			next++
		}
	}
	if next < len(steps) || !relayed {
		var seen []string
		for _, e := range events {
			if strings.HasPrefix(e.Host, "mail.") {
				seen = append(seen, fmt.Sprintf("%s %s %s", e.Host, e.Proto, e.Summary))
			}
		}
		t.Fatalf("trace lacks step %d of %d (relayed %v); mail hosts' events:\n%s", next, len(steps), relayed, strings.Join(seen, "\n"))
	}
	mu.Unlock()
	bobReads(t, plan, func() []trace.Event { mu.Lock(); defer mu.Unlock(); return append([]trace.Event(nil), events...) })
	mu.Lock() // for the deferred Unlock
}
