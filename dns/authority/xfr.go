package authority

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/zone"
	"github.com/applayer/applayer/internal/trace"
)

// source is where a zone comes from, with its reload and refresh state.
type source struct {
	cfg ZoneConfig
	key string

	mu      sync.Mutex
	mtime   time.Time
	size    int64
	keys    *zone.Keys
	store   *zone.KeyStore // signed zones: the keys and their timing
	nextKey time.Time      // when the key set next changes (rollover)
	records []dns.RR       // secondary: the records last transferred
	kick    chan struct{}
	// prev is the version served before a restart (the journal's
	// snapshot), until the zone is first installed.
	prev *zone.Zone
	// deltas are the differences between successive versions of a
	// primary zone, oldest first, for IXFR out.
	deltas []delta
}

// delta is one version step of a zone (RFC 1995's difference sequence).
type delta struct {
	from, to *dns.SOA
	del, add []dns.RR
}

// maxDeltas bounds the versions kept for IXFR; maxDiffRecords the zone
// size above which no differences are computed (clients get AXFR form).
const (
	maxDeltas      = 16
	maxDiffRecords = 200_000
)

// diffZones returns the records removed and added from a to b, SOA aside.
func diffZones(a, b *zone.Zone) (del, add []dns.RR) {
	key := func(rr dns.RR) string { return strings.ToLower(rr.String()) }
	inA := make(map[string]bool, a.Len())
	for _, rr := range a.Records() {
		if rr.Header().Rrtype != dns.TypeSOA {
			inA[key(rr)] = true
		}
	}
	inB := make(map[string]bool, b.Len())
	for _, rr := range b.Records() {
		if rr.Header().Rrtype == dns.TypeSOA {
			continue
		}
		k := key(rr)
		inB[k] = true
		if !inA[k] {
			add = append(add, rr)
		}
	}
	for _, rr := range a.Records() {
		if rr.Header().Rrtype != dns.TypeSOA && !inB[key(rr)] {
			del = append(del, rr)
		}
	}
	return del, add
}

// recordDelta remembers the step from old to z for IXFR.
func (src *source) recordDelta(old, z *zone.Zone) {
	if old != nil && old.SOA.Serial == z.SOA.Serial && old.Len() <= maxDiffRecords && z.Len() <= maxDiffRecords {
		if del, add := diffZones(old, z); len(del) == 0 && len(add) == 0 {
			return // the same version: the differences still hold
		}
	}
	if old == nil || !serialLess(old.SOA.Serial, z.SOA.Serial) || old.Len() > maxDiffRecords || z.Len() > maxDiffRecords {
		src.mu.Lock()
		src.deltas = nil
		src.mu.Unlock()
		return
	}
	del, add := diffZones(old, z)
	src.mu.Lock()
	defer src.mu.Unlock()
	src.deltas = append(src.deltas, delta{from: old.SOA, to: z.SOA, del: del, add: add})
	if len(src.deltas) > maxDeltas {
		src.deltas = src.deltas[len(src.deltas)-maxDeltas:]
	}
}

// ixfr returns the incremental transfer from serial to z's, or nil when
// the differences are not all known.
func (src *source) ixfr(serial uint32, z *zone.Zone) []dns.RR {
	src.mu.Lock()
	defer src.mu.Unlock()
	start := -1
	for i, d := range src.deltas {
		if d.from.Serial == serial {
			start = i
			break
		}
	}
	if start < 0 || src.deltas[len(src.deltas)-1].to.Serial != z.SOA.Serial {
		return nil
	}
	out := []dns.RR{z.SOA}
	for i, d := range src.deltas[start:] {
		if i > 0 && src.deltas[start+i-1].to.Serial != d.from.Serial {
			return nil
		}
		out = append(out, d.from)
		out = append(out, d.del...)
		out = append(out, d.to)
		out = append(out, d.add...)
	}
	return append(out, z.SOA)
}

// loadSource reads (and signs) a primary zone.
func (s *Server) loadSource(src *source) (*zone.Zone, error) {
	var z *zone.Zone
	var err error
	switch {
	case src.cfg.File != "":
		st, serr := os.Stat(src.cfg.File)
		if serr != nil {
			s.m.reloads.WithLabelValues("error").Inc()
			return nil, fmt.Errorf("authority: zone %s: %w", src.key, serr)
		}
		z, err = zone.Load(src.cfg.File, src.cfg.Origin)
		if err == nil {
			src.mu.Lock()
			src.mtime, src.size = st.ModTime(), st.Size()
			src.mu.Unlock()
		}
	default:
		z, err = zone.Parse(strings.NewReader(src.cfg.Text), src.cfg.Origin, "zone "+src.key, false)
	}
	if err == nil && src.cfg.Sign != nil {
		z, err = s.sign(src, z)
	}
	if err != nil {
		s.m.reloads.WithLabelValues("error").Inc()
		return nil, fmt.Errorf("authority: %w", err)
	}
	s.m.reloads.WithLabelValues("ok").Inc()
	if s.cfg.ZoneLoaded != nil {
		s.cfg.ZoneLoaded(src.key, z.Len())
	}
	return z, nil
}

func (s *Server) sign(src *source, z *zone.Zone) (*zone.Zone, error) {
	sc := src.cfg.Sign
	now := s.deps.Now()
	prop := time.Duration(sc.PropagationDelay)
	if prop <= 0 {
		prop = 5 * time.Minute
	}
	dsTTL := time.Duration(sc.ParentDSTTL)
	if dsTTL <= 0 {
		dsTTL = 24 * time.Hour
	}
	var maxTTL uint32
	for _, rr := range z.Records() {
		maxTTL = max(maxTTL, rr.Header().Ttl)
	}
	policy := zone.KeyPolicy{
		ZSKLifetime: time.Duration(sc.ZSKLifetime),
		PublishWait: time.Duration(z.SOA.Hdr.Ttl)*time.Second + prop,
		RetireWait:  time.Duration(maxTTL)*time.Second + prop,
		KSKLifetime: time.Duration(sc.KSKLifetime),
		DSWait:      dsTTL + prop,
	}
	src.mu.Lock()
	if src.store == nil {
		st, err := zone.OpenKeyStore(sc.KeyDir, src.cfg.Origin, sc.Algorithm)
		if err != nil {
			src.mu.Unlock()
			return nil, err
		}
		st.SetLogger(s.log)
		src.store = st
	}
	keys, next, err := src.store.Step(now, policy)
	if err == nil {
		src.keys, src.nextKey = keys, next
	}
	src.mu.Unlock()
	if err != nil {
		return nil, err
	}
	validity := sc.Validity.D()
	if validity <= 0 {
		validity = 14 * 24 * time.Hour
	}
	opt := zone.SignOptions{NSEC3: sc.NSEC3, Inception: now.Add(-time.Hour), Expiration: now.Add(validity)}
	cur := s.Zone(src.key)
	if cur == nil {
		cur = src.prev
	}
	if cur != nil && !serialLess(cur.SOA.Serial, z.SOA.Serial) {
		// Same content re-signed: a new serial, so secondaries follow.
		opt.Serial = cur.SOA.Serial + 1
	}
	return zone.Sign(z, keys, opt)
}

// Keys returns the signing keys of a zone this server signs, or nil.
func (s *Server) Keys(origin string) *zone.Keys {
	src := s.sources[zone.Key(origin)]
	if src == nil {
		return nil
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	return src.keys
}

// Reload re-reads every file- or text-backed zone (force) or only the
// files that changed. A zone that fails to load keeps serving its old
// version; the errors (with file:line) are returned joined.
func (s *Server) Reload(force bool) error {
	var errs []error
	for _, src := range s.sources {
		if src.cfg.Primary != "" {
			continue
		}
		if !force {
			if src.cfg.File == "" {
				continue
			}
			st, err := os.Stat(src.cfg.File)
			src.mu.Lock()
			same := err == nil && st.ModTime().Equal(src.mtime) && st.Size() == src.size
			src.mu.Unlock()
			if same || err != nil {
				continue
			}
		}
		old := s.Zone(src.key)
		z, err := s.loadSource(src)
		if err != nil {
			s.log.Warn("zone reload failed; the old zone keeps serving", "zone", src.key, "err", err)
			errs = append(errs, err)
			continue
		}
		s.install(src.key, z)
		s.record(src, old, z)
		s.log.Info("zone loaded", "zone", src.key, "serial", z.SOA.Serial, "records", z.Len())
		if old == nil || old.SOA.Serial != z.SOA.Serial {
			s.notify(z)
		}
	}
	return errors.Join(errs...)
}

func (s *Server) startBackground() {
	interval := s.cfg.Watch.D()
	signed := false
	for _, src := range s.sources {
		if src.cfg.Sign != nil {
			signed = true
		}
		if src.cfg.Primary != "" {
			s.wg.Add(1)
			go s.secondary(src)
		}
	}
	if interval <= 0 && signed {
		interval = time.Minute
	}
	if interval > 0 {
		s.wg.Add(1)
		go s.maintain(interval)
	}
}

// maintain polls zone files for changes and re-signs zones whose
// signatures come within a quarter of their validity of expiring.
func (s *Server) maintain(interval time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if s.cfg.Watch > 0 {
			s.Reload(false)
		}
		s.resignDue()
	}
}

// resignDue re-signs the zones whose signatures expire within a quarter
// of their validity, or whose keys change (a rollover step is due).
func (s *Server) resignDue() {
	for _, src := range s.sources {
		if src.cfg.Sign == nil {
			continue
		}
		z := s.Zone(src.key)
		validity := src.cfg.Sign.Validity.D()
		if validity <= 0 {
			validity = 14 * 24 * time.Hour
		}
		now := s.deps.Now()
		src.mu.Lock()
		next := src.nextKey
		// A KSK rollover waiting for the parent's DS moves on as soon as
		// the operator confirms it.
		confirmed := src.store != nil && src.store.DSConfirmed(now)
		src.mu.Unlock()
		roll := confirmed || (!next.IsZero() && !now.Before(next))
		if z == nil || (!roll && now.Add(validity/4).Before(z.Expiry())) {
			continue
		}
		nz, err := s.loadSource(src)
		if err != nil {
			s.log.Warn("zone re-sign failed", "zone", src.key, "err", err)
			continue
		}
		s.install(src.key, nz)
		s.record(src, z, nz)
		s.notify(nz)
		s.log.Info("zone re-signed", "zone", src.key, "serial", nz.SOA.Serial, "expires", nz.Expiry(), "keys", keyTags(nz))
	}
}

// keyTags lists the tags of the zone's DNSKEYs, for logs.
func keyTags(z *zone.Zone) []uint16 {
	var tags []uint16
	if n := z.Node(z.Origin); n != nil && n.Set(dns.TypeDNSKEY) != nil {
		for _, rr := range n.Set(dns.TypeDNSKEY).RRs {
			tags = append(tags, rr.(*dns.DNSKEY).KeyTag())
		}
	}
	return tags
}

// writeDS writes the DS records of every signed zone's KSKs to DSFile.
func (s *Server) writeDS() error {
	if s.cfg.DSFile == "" {
		return nil
	}
	var b strings.Builder
	for _, z := range s.zones.Load().zones {
		for _, ds := range DSRecords(z) {
			b.WriteString(ds.String() + "\n")
		}
	}
	if b.Len() == 0 {
		return nil
	}
	if err := os.MkdirAll(dirOf(s.cfg.DSFile), 0o755); err != nil {
		return fmt.Errorf("authority: ds file: %w", err)
	}
	tmp := s.cfg.DSFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("authority: ds file: %w", err)
	}
	if err := os.Rename(tmp, s.cfg.DSFile); err != nil {
		return fmt.Errorf("authority: ds file: %w", err)
	}
	return nil
}

func dirOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		return p[:i]
	}
	return "."
}

// DSRecords returns the SHA-256 DS records of the zone's key-signing keys
// (DNSKEYs with the SEP flag), to hand to the parent or to use as a trust
// anchor.
func DSRecords(z *zone.Zone) []*dns.DS {
	n := z.Node(z.Origin)
	if n == nil || n.Set(dns.TypeDNSKEY) == nil {
		return nil
	}
	var out []*dns.DS
	for _, rr := range n.Set(dns.TypeDNSKEY).RRs {
		k := rr.(*dns.DNSKEY)
		if k.Flags&dns.SEP != 0 {
			out = append(out, k.ToDS(dns.SHA256))
		}
	}
	return out
}

// transfer answers AXFR, and IXFR with the whole zone (RFC 1995 section
// 4 allows it) unless the client is current.
func (s *Server) transfer(w dns.ResponseWriter, req *dns.Msg, from netip.AddrPort) {
	q := req.Question[0]
	z := s.Zone(q.Name)
	// A signed request (verified by then: serveTCP) gets signed answers.
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
	pri, err := netip.ParseAddrPort(src.cfg.Primary)
	signed := false
	if t := req.IsTsig(); t != nil && src.cfg.PrimaryKey != "" {
		signed = strings.EqualFold(t.Hdr.Name, dns.Fqdn(src.cfg.PrimaryKey))
	}
	if !signed && err == nil && pri.Addr().Unmap() != from.Addr().Unmap() {
		m.Rcode = dns.RcodeRefused
		return
	}
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
	var lastOK time.Time
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
		z, err := s.refresh(src)
		cur := s.Zone(src.key)
		switch {
		case err == nil:
			lastOK = s.deps.Now()
			if z != nil {
				s.install(src.key, z)
				cur = z
				s.log.Info("secondary zone loaded", "zone", src.key, "serial", z.SOA.Serial, "records", z.Len())
			}
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
// newer. It returns nil, nil when the copy is current.
func (s *Server) refresh(src *source) (*zone.Zone, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cur := s.Zone(src.key)
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(src.cfg.Origin), dns.TypeSOA)
	key := s.keyFor(src.cfg.PrimaryKey)
	signOut(q, key)
	r, err := s.exchange(ctx, q, src.cfg.Primary, "udp")
	if err != nil {
		return nil, err
	}
	if len(r.Answer) == 0 || r.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("authority: primary answered %s to SOA", dns.RcodeToString[r.Rcode])
	}
	soa, ok := r.Answer[0].(*dns.SOA)
	if !ok {
		return nil, errors.New("authority: primary's SOA answer has no SOA")
	}
	if cur != nil && !serialLess(cur.SOA.Serial, soa.Serial) {
		return nil, nil
	}
	c, err := s.dial(ctx, "tcp", src.cfg.Primary)
	if err != nil {
		return nil, err
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
		return nil, err
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
		return nil, fmt.Errorf("authority: transfer %s: %w", src.key, terr)
	}
	recs, err := applyTransfer(old, all)
	if err != nil {
		s.m.transfers.WithLabelValues("in", "error").Inc()
		return nil, err
	}
	if recs == nil {
		return nil, nil
	}
	z, err := zone.New(src.cfg.Origin, recs)
	if err != nil {
		s.m.transfers.WithLabelValues("in", "error").Inc()
		return nil, fmt.Errorf("authority: transferred %s: %w", src.key, err)
	}
	src.mu.Lock()
	src.records = recs
	src.mu.Unlock()
	s.m.transfers.WithLabelValues("in", "ok").Inc()
	return z, nil
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
