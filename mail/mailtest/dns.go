package mailtest

import (
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// DNS runs a DNS server on 127.0.0.1:0 (UDP) for the test, answering from
// the given master-file records (any class; the question's type picks
// them) and NXDOMAIN for names it has none for; it returns the address.
// It stands in for the resolver a mail server asks in tests of the queue's
// MX logic that do not need the whole lab.
func DNS(t testing.TB, records ...string) string {
	t.Helper()
	rrs := map[string][]dns.RR{}
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.ToLower(rr.Header().Name)
		rrs[name] = append(rrs[name], rr)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if len(r.Question) == 1 {
			q := r.Question[0]
			have, ok := rrs[strings.ToLower(q.Name)]
			if !ok {
				m.Rcode = dns.RcodeNameError
			}
			for _, rr := range have {
				if rr.Header().Rrtype == q.Qtype {
					m.Answer = append(m.Answer, rr)
				}
			}
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}
