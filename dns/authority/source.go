package authority

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/zone"
	"github.com/applayer/applayer/internal/atomicfile"
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
	// refreshed is, for a secondary zone restored from disk, when it was
	// last refreshed (its expiry counts from then).
	refreshed time.Time
	kick      chan struct{}
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
	if err := atomicfile.Write(s.cfg.DSFile, []byte(b.String()), 0o644); err != nil {
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
