package authority

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/zone"
	"github.com/applayer/applayer/internal/trace"
)

// transfer answers AXFR, and IXFR with the whole zone (RFC 1995 section
// 4 allows it) unless the client is current.
func (s *Server) transfer(w dns.ResponseWriter, req *dns.Msg, from netip.AddrPort) {
	q := req.Question[0]
	z := s.Zone(q.Name)
	// A signed request (verified by then: serveStream) gets signed answers.
	key := ""
	sign := func(m *dns.Msg) {}
	if t := req.IsTsig(); t != nil {
		key = strings.ToLower(t.Hdr.Name)
		sign = func(m *dns.Msg) { m.SetTsig(t.Hdr.Name, t.Algorithm, tsigFudge, s.deps.Now().Unix()) }
	}
	fail := func(rcode int, why string) {
		s.m.transfers.WithLabelValues("out", why).Inc()
		m := new(dns.Msg)
		m.SetRcode(req, rcode)
		sign(m)
		w.WriteMsg(m)
	}
	if tsigMisplaced(req) {
		fail(dns.RcodeFormatError, "formerr")
		return
	}
	if !s.transferAllowed(from, key) {
		s.log.Info("transfer refused", "zone", q.Name, "remote", from.String())
		fail(dns.RcodeRefused, "refused")
		return
	}
	if z == nil {
		fail(dns.RcodeNotAuth, "notauth")
		return
	}
	if q.Qtype == dns.TypeIXFR && len(req.Ns) == 1 {
		if soa, ok := req.Ns[0].(*dns.SOA); ok && !serialLess(soa.Serial, z.SOA.Serial) {
			m := new(dns.Msg)
			m.SetReply(req)
			m.Authoritative = true
			m.Answer = []dns.RR{z.SOA}
			sign(m)
			w.WriteMsg(m)
			s.m.transfers.WithLabelValues("out", "current").Inc()
			return
		}
	}
	var rrs []dns.RR
	kind := "axfr"
	if q.Qtype == dns.TypeIXFR && len(req.Ns) == 1 {
		if soa, ok := req.Ns[0].(*dns.SOA); ok {
			if src := s.sources[z.Origin]; src != nil {
				rrs = src.ixfr(soa.Serial, z)
				kind = "ixfr"
			}
		}
	}
	if rrs == nil {
		rrs = z.Records()
		rrs = append(rrs, z.SOA)
		kind = "axfr"
	}
	ch := make(chan *dns.Envelope)
	tr := new(dns.Transfer)
	errc := make(chan error, 1)
	go func() { errc <- tr.Out(w, req, ch) }()
	const chunk = 500
	for i := 0; i < len(rrs); i += chunk {
		ch <- &dns.Envelope{RR: rrs[i:min(i+chunk, len(rrs))]}
	}
	close(ch)
	if err := <-errc; err != nil {
		s.m.transfers.WithLabelValues("out", "error").Inc()
		s.log.Debug("transfer out", "zone", q.Name, "err", err)
		return
	}
	s.m.transfers.WithLabelValues("out", "ok").Inc()
	s.log.Info("zone transferred", "zone", z.Origin, "remote", from.String(), "records", len(rrs), "form", kind)
	if s.deps.Trace.Enabled() {
		s.deps.Trace.Publish(trace.Event{From: s.local, To: from.String(), Proto: "dns/tcp", Summary: fmt.Sprintf("%s %s %d records", dns.TypeToString[q.Qtype], z.Origin, len(rrs))})
	}
}

// serialLess compares serials in RFC 1982 arithmetic.
func serialLess(a, b uint32) bool { return a != b && int32(b-a) > 0 }

// notify sends NOTIFY for z to the configured secondaries (in the
// background, three tries each).
func (s *Server) notify(z *zone.Zone) {
	if len(s.cfg.Notify) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notifyLocked(z)
}

func (s *Server) notifyLocked(z *zone.Zone) {
	if !s.started || len(s.cfg.Notify) == 0 {
		return
	}
	for _, target := range s.cfg.Notify {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			m := new(dns.Msg)
			m.SetNotify(z.Origin)
			m.Answer = []dns.RR{z.SOA}
			signOut(m, s.keyFor(s.cfg.NotifyKey))
			for try := 0; try < 3; try++ {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err := s.exchange(ctx, m, target, "udp")
				cancel()
				if err == nil {
					s.log.Info("notify acknowledged", "zone", z.Origin, "secondary", target)
					return
				}
				select {
				case <-s.stop:
					return
				case <-time.After(time.Second << try):
				}
			}
			s.log.Warn("notify not acknowledged", "zone", z.Origin, "secondary", target)
		}()
	}
}

// exchange sends m to addr through the injected dialer.
func (s *Server) exchange(ctx context.Context, m *dns.Msg, addr, network string) (*dns.Msg, error) {
	c, err := s.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	co := &dns.Conn{Conn: c}
	if m.IsTsig() != nil {
		co.TsigSecret = s.secrets()
	}
	if err := co.WriteMsg(m); err != nil {
		return nil, err
	}
	r, err := co.ReadMsg()
	if err != nil {
		return nil, err
	}
	if r.Id != m.Id {
		return nil, errors.New("authority: answer id mismatch")
	}
	return r, nil
}

// dial opens an outbound connection. With the default dialer and a
// specific listen address, it is made from that address, so the peer (an
// ACL, a primary checking a NOTIFY's source) sees the server's own address.
func (s *Server) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if d, ok := s.deps.Dialer.(*net.Dialer); ok {
		if ap, err := netip.ParseAddrPort(s.cfg.Addr); err == nil && !ap.Addr().IsUnspecified() {
			dd := *d
			if strings.HasPrefix(network, "udp") {
				dd.LocalAddr = &net.UDPAddr{IP: ap.Addr().AsSlice()}
			} else {
				dd.LocalAddr = &net.TCPAddr{IP: ap.Addr().AsSlice()}
			}
			return dd.DialContext(ctx, network, addr)
		}
	}
	return s.deps.Dialer.DialContext(ctx, network, addr)
}

// notified handles an incoming NOTIFY: a secondary zone whose primary
// sent it is refreshed at once.
func (s *Server) notified(req *dns.Msg, from netip.AddrPort, m *dns.Msg) {
	q := req.Question[0]
	src := s.sources[zone.Key(q.Name)]
	if src == nil || src.cfg.Primary == "" {
		m.Rcode = dns.RcodeNotAuth
		return
	}
	if !s.notifyAllowed(src, req, from) {
		s.log.Warn("notify refused", "zone", src.key, "from", from.String(), "hint", "list the sender in the zone's allow_notify")
		m.Rcode = dns.RcodeRefused
		return
	}
	s.log.Info("notify accepted", "zone", src.key, "from", from.String())
	m.Authoritative = true
	select {
	case src.kick <- struct{}{}:
	default:
	}
}

// secondary keeps a secondary zone fresh: it transfers the zone (IXFR when
// it has a copy, AXFR otherwise), refreshes as the SOA says, retries on
// failure, and stops serving the zone once it expires.
func (s *Server) secondary(src *source) {
	defer s.wg.Done()
	lastOK := src.refreshed
	wait := time.Duration(0)
	for {
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-s.stop:
				t.Stop()
				return
			case <-src.kick:
				t.Stop()
			case <-t.C:
			}
		}
		select {
		case <-s.stop:
			return
		default:
		}
		z, kind, err := s.refresh(src)
		cur := s.Zone(src.key)
		switch {
		case err == nil:
			lastOK = s.deps.Now()
			if z != nil {
				s.install(src.key, z)
				cur = z
				s.log.Info("secondary zone loaded", "zone", src.key, "serial", z.SOA.Serial, "records", z.Len(), "transfer", kind)
			}
			s.saveSecondary(src, z, lastOK)
			wait = time.Duration(cur.SOA.Refresh) * time.Second
		default:
			s.log.Warn("secondary refresh failed", "zone", src.key, "primary", src.cfg.Primary, "err", err)
			wait = 5 * time.Second
			if cur != nil {
				wait = time.Duration(cur.SOA.Retry) * time.Second
				if exp := time.Duration(cur.SOA.Expire) * time.Second; s.deps.Now().Sub(lastOK) > exp {
					s.install(src.key, nil)
					s.log.Warn("secondary zone expired; no longer served", "zone", src.key)
				}
			}
		}
		wait = max(wait, time.Second)
	}
}

// refresh checks the primary's serial and transfers the zone when it is
// newer. It returns a nil zone when the copy is current; kind says how the
// zone came ("AXFR", or "IXFR" when the primary sent differences).
func (s *Server) refresh(src *source) (z *zone.Zone, kind string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cur := s.Zone(src.key)
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(src.cfg.Origin), dns.TypeSOA)
	key := s.keyFor(src.cfg.PrimaryKey)
	signOut(q, key)
	r, err := s.exchange(ctx, q, src.cfg.Primary, "udp")
	if err != nil {
		return nil, "", err
	}
	if len(r.Answer) == 0 || r.Rcode != dns.RcodeSuccess {
		return nil, "", fmt.Errorf("authority: primary answered %s to SOA", dns.RcodeToString[r.Rcode])
	}
	soa, ok := r.Answer[0].(*dns.SOA)
	if !ok {
		return nil, "", errors.New("authority: primary's SOA answer has no SOA")
	}
	if cur != nil && !serialLess(cur.SOA.Serial, soa.Serial) {
		return nil, "", nil
	}
	c, err := s.dial(ctx, "tcp", src.cfg.Primary)
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	tr := &dns.Transfer{Conn: &dns.Conn{Conn: c}, ReadTimeout: 10 * time.Second, TsigSecret: s.secrets()}
	m := new(dns.Msg)
	src.mu.Lock()
	old := src.records
	src.mu.Unlock()
	if cur != nil && old != nil {
		m.SetIxfr(dns.Fqdn(src.cfg.Origin), cur.SOA.Serial, cur.SOA.Ns, cur.SOA.Mbox)
	} else {
		m.SetAxfr(dns.Fqdn(src.cfg.Origin))
		old = nil
	}
	signOut(m, key)
	env, err := tr.In(m, src.cfg.Primary)
	if err != nil {
		return nil, "", err
	}
	var all []dns.RR
	var terr error
	for e := range env {
		if e.Error != nil {
			terr = e.Error
			continue
		}
		all = append(all, e.RR...)
	}
	if terr != nil {
		s.m.transfers.WithLabelValues("in", "error").Inc()
		return nil, "", fmt.Errorf("authority: transfer %s: %w", src.key, terr)
	}
	recs, err := applyTransfer(old, all)
	if err != nil {
		s.m.transfers.WithLabelValues("in", "error").Inc()
		return nil, "", err
	}
	if recs == nil {
		return nil, "", nil
	}
	kind = "AXFR"
	if _, ok := all[1].(*dns.SOA); ok && old != nil {
		kind = "IXFR"
	}
	z, err = zone.New(src.cfg.Origin, recs)
	if err != nil {
		s.m.transfers.WithLabelValues("in", "error").Inc()
		return nil, "", fmt.Errorf("authority: transferred %s: %w", src.key, err)
	}
	src.mu.Lock()
	src.records = recs
	src.mu.Unlock()
	s.m.transfers.WithLabelValues("in", "ok").Inc()
	return z, kind, nil
}

// applyTransfer turns the records of an AXFR or IXFR answer into the
// zone's new records (old holds the current ones for IXFR). It returns nil
// when the answer says the copy is current.
func applyTransfer(old, all []dns.RR) ([]dns.RR, error) {
	if len(all) == 0 {
		return nil, errors.New("authority: empty transfer")
	}
	first, ok := all[0].(*dns.SOA)
	if !ok {
		return nil, errors.New("authority: transfer does not start with a SOA")
	}
	if len(all) == 1 {
		return nil, nil
	}
	_, incremental := all[1].(*dns.SOA)
	if !incremental || old == nil {
		// AXFR style: SOA, records, SOA.
		out := append([]dns.RR(nil), all[:len(all)-1]...)
		return out, nil
	}
	recs := append([]dns.RR(nil), old...)
	// IXFR: SOA(new) [SOA(old) deletions SOA(new') additions]* SOA(new)
	adding := true // the first SOA opens a deletion section
	for _, rr := range all[1 : len(all)-1] {
		if _, ok := rr.(*dns.SOA); ok {
			adding = !adding
			if adding {
				recs = removeSOA(recs)
				recs = append(recs, rr)
			}
			continue
		}
		if adding {
			recs = append(recs, rr)
		} else {
			recs = remove(recs, rr)
		}
	}
	recs = removeSOA(recs)
	return append([]dns.RR{first}, recs...), nil
}

func remove(rrs []dns.RR, rr dns.RR) []dns.RR {
	for i, x := range rrs {
		if dns.IsDuplicate(x, rr) {
			return append(rrs[:i], rrs[i+1:]...)
		}
	}
	return rrs
}

func removeSOA(rrs []dns.RR) []dns.RR {
	out := rrs[:0]
	for _, x := range rrs {
		if _, ok := x.(*dns.SOA); !ok {
			out = append(out, x)
		}
	}
	return out
}
