package app

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/smtp"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/web/client"
	"github.com/applayer/applayer/web/labca"
)

// TestTraceSchema runs the default lab briefly with traffic for every
// system (a resolution, twice; a page over HTTP/1.1, HTTPS and HTTP/3;
// a fetch through the campus cache, twice; the socket examples; the
// BitTorrent seed's announces; SMTP between the mail servers; the video
// origin's manifest; the CDN's request routing) and checks that every event any system
// published follows the one schema (trace.Validate), and that the trace
// covers what the lessons need: DNS messages with their answer, cache
// hits and misses at the resolver and the web cache, TCP connections
// opened and closed, TLS and QUIC handshakes.
func TestTraceSchema(t *testing.T) {
	collect := &trace.Collector{}
	plan, _, _ := startTracedLabWith(t, collect)
	ctx := testkit.Context(t, 60*time.Second)
	port := func(host string, p int) string {
		h, ok := plan.Lookup(host)
		if !ok {
			t.Fatalf("no host %s", host)
		}
		return net.JoinHostPort(h.Addr.String(), fmt.Sprint(plan.Port(p)))
	}
	resolverAddr := port("resolver.nyu.edu", 53)
	for range 2 { // a miss, then a hit
		q := new(dns.Msg)
		q.SetQuestion("gaia.cs.umass.edu.", dns.TypeA)
		if r, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(q, resolverAddr); err != nil || len(r.Answer) == 0 {
			t.Fatalf("resolve: %v %v", r, err)
		}
	}
	base := client.Options{Resolver: resolverAddr, PortOffset: plan.PortOffset, CAFile: filepath.Join(plan.StateDir, "web", "ca", labca.CertFileName), Timeout: 10 * time.Second}
	for _, u := range []struct{ proto, url string }{
		{client.ProtoH1, "http://gaia.cs.umass.edu/"},
		{client.ProtoAuto, "https://gaia.cs.umass.edu/"},
		{client.ProtoH3, "https://gaia.cs.umass.edu/"},
	} {
		o := base
		o.Proto = u.proto
		c, err := client.New(o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Get(ctx, u.url); err != nil {
			t.Errorf("GET %s over %q: %v", u.url, u.proto, err)
		}
		c.Close()
	}
	o := base
	o.Proxy = "http://" + port("cache.nyu.edu", 3128)
	o.PortOffset = 0
	o.NoKeepAlive = true
	c, err := client.New(o)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := c.Get(ctx, "http://gaia.cs.umass.edu/images/img01.png"); err != nil {
			t.Errorf("GET through the cache: %v", err)
		}
	}
	c.Close()
	if conn, err := net.Dial("udp", port("sockets.lab", 12000)); err == nil {
		conn.Write([]byte("hello udp"))
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		conn.Read(make([]byte, 64))
		conn.Close()
	}
	if conn, err := net.Dial("tcp", port("sockets.lab", 12000)); err == nil {
		fmt.Fprintln(conn, "hello tcp")
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		bufio.NewReader(conn).ReadString('\n')
		conn.Close()
	}
	// Mail: Alice's server hands a message to Bob's over SMTP.
	if err := sendPlain(port("mail.hamburger.edu", 25), "alice@crepes.fr", "bob@hamburger.edu", "Subject: trace\r\n\r\nHi Bob\r\n"); err != nil {
		t.Errorf("SMTP to mail.hamburger.edu: %v", err)
	}
	// Video: the origin's manifest (traced once the origin has packaged
	// its video; validated when it is there, not required: ffmpeg may
	// still be at work).
	hc := &http.Client{Timeout: 10 * time.Second}
	if req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+port("origin.netcinema.com", 80)+"/manifest.mpd", nil); err == nil {
		req.Host = "origin.netcinema.com"
		if res, err := hc.Do(req); err == nil {
			res.Body.Close()
		}
	}
	hc.CloseIdleConnections()
	// CDN: the umass campus resolver asks KingCDN's router for the video.
	q := new(dns.Msg)
	q.SetQuestion("video.netcinema.com.", dns.TypeA)
	if r, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(q, port("resolver.umass.edu", 53)); err != nil || len(r.Answer) == 0 {
		t.Errorf("video.netcinema.com through resolver.umass.edu: %v %v", r, err)
	}
	// The seed announces to the tracker when it starts; wait for it (and
	// for the connections' closes) a little.
	want := map[string]bool{
		"msg dns": false, "cache.miss dns": false, "cache.hit dns": false,
		"cache.miss http": false, "cache.hit http": false,
		"conn.open tcp": false, "conn.close tcp": false,
		"handshake tls": false, "handshake quic": false,
		"msg http": false, "msg udp": false, "msg tcp": false, "msg bittorrent": false,
		"msg smtp": false, "msg cdn": false,
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		for k := range want {
			want[k] = false
		}
		answered := false
		for _, e := range collect.Events() {
			fam, _, _ := strings.Cut(e.Proto, "/")
			want[e.Type+" "+fam] = true
			if e.Type == trace.Msg && strings.HasPrefix(e.Summary, "response NOERROR") && strings.Contains(e.Summary, "A gaia.cs.umass.edu. 1/") && strings.Contains(e.Summary, ": A ") {
				answered = true
			}
		}
		missing := []string{}
		for k, ok := range want {
			if !ok {
				missing = append(missing, k)
			}
		}
		if !answered {
			missing = append(missing, "a DNS answer with its data in the summary")
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the trace lacks %v", missing)
		}
		time.Sleep(100 * time.Millisecond)
	}
	evs := collect.Events()
	bad := 0
	for _, e := range evs {
		if err := trace.Validate(e); err != nil {
			bad++
			if bad <= 20 {
				t.Error(err)
			}
		}
		if e.Host == "" {
			t.Errorf("event without the lab host that observed it: %+v", e)
		}
	}
	t.Logf("%d events, %d off the schema", len(evs), bad)
}

// sendPlain hands one message to an SMTP server without STARTTLS (server
// to server, as on port 25 between the lab's mail servers).
func sendPlain(addr, from, to, msg string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("mail.crepes.fr"); err != nil {
		return err
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}
