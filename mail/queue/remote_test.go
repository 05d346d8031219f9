package queue_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/mail/mailtest"
	"github.com/applayer/applayer/mail/queue"
	"github.com/applayer/applayer/mail/smtpd"
	"github.com/applayer/applayer/mail/store"
	"github.com/applayer/applayer/web/labca"
)

// site is a real applayer receiver (smtpd, queue, store) for one domain on
// addr (port 0: any), with STARTTLS from a lab CA and the user bob.
type site struct {
	st   store.Store
	q    *queue.Queue
	addr netip.AddrPort
}

func newSite(t *testing.T, domain, addr string) *site {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "mail.db"), store.Options{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.AddUser(ctx, "bob@"+domain, "pw", 0); err != nil {
		t.Fatal(err)
	}
	d := service.Deps{Logger: testkit.Logger(t)}
	q, err := queue.New(queue.Config{Dir: filepath.Join(dir, "spool")}, d, queue.Local{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, q)
	ca, err := labca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("mx." + domain)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := smtpd.New(smtpd.Config{Addr: addr, Domains: []string{domain}, TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}, d, st, q)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Start(t, srv)
	return &site{st: st, q: q, addr: netip.MustParseAddrPort(srv.Addrs()[0].String())}
}

func (s *site) inbox(t *testing.T) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.q.Len() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	ctx := context.Background()
	msgs, err := s.st.Messages(ctx, "bob@hamburger.edu", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		b, _ := s.st.Body(ctx, "bob@hamburger.edu", "INBOX", m.UID)
		out = append(out, string(b))
	}
	return out
}

// dials records the addresses a Remote connects to.
type dials struct {
	mu   sync.Mutex
	seen []string
}

func (d *dials) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.seen = append(d.seen, addr)
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

// TestRemote delivers to hamburger.edu whose preferred MX is dead and
// whose second MX is a real applayer receiver, over STARTTLS, through a
// signer; and checks the permanent failures: a refused recipient, a null
// MX, a domain that does not exist; and the A fallback without MX.
func TestRemote(t *testing.T) {
	live := newSite(t, "hamburger.edu", "127.0.0.3:0")
	port := live.addr.Port()
	// Nothing listens on 127.0.0.4 at that port: connection refused.
	res := mailtest.DNS(t,
		"hamburger.edu. 60 IN MX 20 mx2.hamburger.edu.",
		"hamburger.edu. 60 IN MX 10 mx1.hamburger.edu.",
		"mx1.hamburger.edu. 60 IN A 127.0.0.4",
		"mx2.hamburger.edu. 60 IN A 127.0.0.3",
		"nomail.fr. 60 IN MX 0 .",
		"plain.fr. 60 IN A 127.0.0.3",
	)
	d := &dials{}
	r := &queue.Remote{Resolver: &queue.DNSResolver{Server: res}, Hostname: "mail.crepes.fr", Port: int(port), Dialer: d, Timeout: 5 * time.Second, Logger: testkit.Logger(t),
		Signer: queue.SignerFunc(func(ctx context.Context, env queue.Envelope, msg []byte) ([]byte, error) {
			return []byte("X-Test-Signature: " + env.ID + "\r\n"), nil
		})}
	ctx := context.Background()
	env := queue.Envelope{ID: "m1", From: "alice@crepes.fr", Received: time.Now()}
	body := []byte("From: alice@crepes.fr\r\nSubject: hi\r\n\r\nHello Bob\r\n")
	if err := r.Deliver(ctx, env, "bob@hamburger.edu", body); err != nil {
		t.Fatal(err)
	}
	p := strconv.Itoa(int(port))
	if got := strings.Join(d.seen, " "); got != "127.0.0.4:"+p+" 127.0.0.3:"+p {
		t.Errorf("dialed %s, want the preferred MX first, then the second", got)
	}
	got := live.inbox(t)
	if len(got) != 1 || !strings.Contains(got[0], "X-Test-Signature: m1\r\n") || !strings.Contains(got[0], "from mail.crepes.fr") || !strings.Contains(got[0], " with ESMTPS id ") {
		t.Fatalf("bob's inbox: %q", got)
	}

	for _, c := range []struct {
		rcpt, status string
		permanent    bool
	}{
		{"nobody@hamburger.edu", "5.1.1", true},
		{"bob@nomail.fr", "5.1.10", true},
		{"bob@nowhere.fr", "5.1.2", true},
		{"bob@plain.fr", "5.7.1", true}, // A fallback reaches the server, which relays for nobody
	} {
		err := r.Deliver(ctx, env, c.rcpt, body)
		var de *queue.DeliveryError
		if !errors.As(err, &de) || de.Status != c.status || queue.IsPermanent(err) != c.permanent {
			t.Errorf("%s: %v (%+v), want status %s permanent %v", c.rcpt, err, de, c.status, c.permanent)
		}
	}
}

func TestHostsOrder(t *testing.T) {
	res := mailtest.DNS(t,
		"x.test. 60 IN MX 30 c.x.test.",
		"x.test. 60 IN MX 10 a.x.test.",
		"x.test. 60 IN MX 20 b.x.test.",
		"x.test. 60 IN MX 10 a2.x.test.",
		"y.test. 60 IN TXT \"no mx\"",
	)
	r := &queue.Remote{Resolver: &queue.DNSResolver{Server: res}}
	hosts, err := r.Hosts(context.Background(), "x.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 4 || !(hosts[0] == "a.x.test" && hosts[1] == "a2.x.test" || hosts[0] == "a2.x.test" && hosts[1] == "a.x.test") || hosts[2] != "b.x.test" || hosts[3] != "c.x.test" {
		t.Errorf("hosts = %v", hosts)
	}
	if hosts, err := r.Hosts(context.Background(), "y.test"); err != nil || fmt.Sprint(hosts) != "[y.test]" {
		t.Errorf("no MX: %v %v, want the domain itself", hosts, err)
	}
}

// At most PerDestination deliveries run at once to one domain; others
// are not held up.
func TestPerDestination(t *testing.T) {
	var mu sync.Mutex
	cur, peak := 0, 0
	gate := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.5:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				mu.Lock()
				cur++
				peak = max(peak, cur)
				mu.Unlock()
				<-gate
				mu.Lock()
				cur--
				mu.Unlock()
				c.Write([]byte("421 busy\r\n"))
			}()
		}
	}()
	res := mailtest.DNS(t, "slow.test. 60 IN A 127.0.0.5")
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	pn, _ := strconv.Atoi(port)
	r := &queue.Remote{Resolver: &queue.DNSResolver{Server: res}, Port: pn, PerDestination: 2, NoTLS: true, Timeout: 5 * time.Second}
	var done sync.WaitGroup
	for i := range 5 {
		done.Add(1)
		go func() {
			defer done.Done()
			r.Deliver(context.Background(), queue.Envelope{ID: fmt.Sprint(i)}, "x@slow.test", []byte("x\r\n"))
		}()
	}
	// Two connections arrive; no third may follow while they are held.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		c := cur
		mu.Unlock()
		if c >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	p := peak
	mu.Unlock()
	close(gate)
	done.Wait()
	ln.Close()
	wg.Wait()
	if p != 2 {
		t.Errorf("peak connections to one destination: %d, want 2", p)
	}

	// A delivery that cannot get a slot within Timeout is deferred: the
	// first holds the only slot while its MX lookup goes unanswered.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	r2 := &queue.Remote{Resolver: &queue.DNSResolver{Server: silent.LocalAddr().String(), Timeout: time.Second}, PerDestination: 1, NoTLS: true, Timeout: 300 * time.Millisecond}
	first := make(chan error, 1)
	go func() {
		first <- r2.Deliver(context.Background(), queue.Envelope{ID: "a"}, "x@slow.test", []byte("x\r\n"))
	}()
	// Its query arriving means it holds the slot.
	silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := silent.ReadFrom(make([]byte, 512)); err != nil {
		t.Fatal(err)
	}
	err = r2.Deliver(context.Background(), queue.Envelope{ID: "b"}, "x@slow.test", []byte("x\r\n"))
	<-first
	var de *queue.DeliveryError
	if !errors.As(err, &de) || de.Status != "4.4.5" || queue.IsPermanent(err) {
		t.Errorf("second delivery while the only slot is held: %v, want a temporary 4.4.5", err)
	}
}
