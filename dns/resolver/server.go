package resolver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/dnsserver"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
	"github.com/applayer/applayer/internal/transport"
)

// Server is the recursive resolver: it serves clients over UDP and TCP and
// answers their queries with its Engine (iteration or forwarding, the
// caches, validation), plus a cache of packed replies for the fast path.
type Server struct {
	Engine

	allow []netip.Prefix

	msgs *store[*msgEntry]
	// testHook, set only by this package's tests, runs before a query is
	// answered on the slow path (to inject a panic).
	testHook func(*dns.Msg)

	sem chan struct{}

	flightMu sync.Mutex
	flight   map[string]*call

	// srv serves the Server (a dnsserver.Handler) over UDP and TCP.
	srv *dnsserver.Server

	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelFunc
	started bool
	workers sync.WaitGroup
	once    service.Once
}

type call struct {
	done chan struct{}
	res  *result
	err  error
}

// New returns a resolver for cfg; Start binds it.
func New(cfg Config, deps service.Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("resolver: config: %w", err)
	}
	cfg.defaults()
	deps = deps.Defaults()
	s := &Server{flight: map[string]*call{}}
	if err := s.Engine.init(cfg, deps, "dns-resolver"); err != nil {
		return nil, err
	}
	if len(cfg.Allow) == 0 {
		s.allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	for _, a := range cfg.Allow {
		p, _ := parsePrefix(a)
		s.allow = append(s.allow, p)
	}
	s.msgs = newStore[*msgEntry](cfg.CacheSize, cfg.CacheBytes/2)
	s.msgs.now = func() int64 { return s.deps.Now().UnixNano() }
	s.sem = make(chan struct{}, cfg.MaxConcurrent)
	m, err := newMetrics(s.deps.Metrics, func() int { return s.msgs.len() + s.rr.len() }, func() (int64, int64, int64) {
		r, n := s.rr.s.bytes()
		p, _ := s.msgs.bytes()
		return r, n, p
	})
	if err != nil {
		return nil, err
	}
	s.m = m
	s.srv = dnsserver.New(dnsserver.Config{
		Addr: cfg.Listen, UDPReaders: max(1, min(runtime.GOMAXPROCS(0), 8)),
		RecursionAvailable: true,
		// TCP slots as Unbound keeps them (issue 10 item 5): refused
		// clients closed at once, the oldest idle connection dropped
		// for a new one when full, a per-client cap, idle and
		// per-query timeouts.
		MaxTCPConns: cfg.MaxTCPConns, DropIdle: true, MaxTCPConnsPerClient: cfg.MaxTCPConnsPerClient,
		IdleTimeout: cfg.TCPIdleTimeout.D(), QueryTimeout: cfg.TCPQueryTimeout.D(),
		Refuse: func(ap netip.AddrPort) bool { return !s.allowed(ap.Addr()) },
		Now:    s.deps.Now, Logger: s.log, Trace: s.deps.Trace,
		OnPanic: func(any) { s.m.servfail.Inc() },
		Observe: func(e transport.Event) {
			switch e.Kind {
			case transport.EventRefused, transport.EventRejected:
				s.m.refused.Inc()
			}
		},
	}, s)
	return s, nil
}

// Name implements service.Service.
func (s *Server) Name() string { return "dns-resolver " + s.cfg.Listen }

// readAnchorsWait reads the trust anchor file, retrying for up to wait
// while it is missing or incomplete (being written).
func readAnchorsWait(ctx context.Context, name string, wait time.Duration) ([]dns.RR, error) {
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		anchors, err := ReadTrustAnchors(name)
		if err == nil || time.Now().After(deadline) {
			return anchors, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (waiting for %s)", err, name)
		case <-tick.C:
		}
	}
}

// Start loads the trust anchor, binds UDP and TCP on the same address and
// starts serving.
func (s *Server) Start(ctx context.Context) error {
	if f := s.cfg.TrustAnchorFile; f != "" {
		anchors, err := readAnchorsWait(ctx, f, s.cfg.TrustAnchorWait.D())
		switch {
		case err == nil:
			s.anchors = anchors
		case s.cfg.TrustAnchorOptional && errors.Is(err, fs.ErrNotExist):
			s.log.Warn("trust anchor file not found: DNSSEC validation is OFF", "file", f, "waited", s.cfg.TrustAnchorWait.D().String())
		default:
			return err
		}
	}
	if len(s.roots) == 0 && len(s.forwarders) == 0 {
		s.log.Warn("no root hints and no forwarders: every query will fail")
	}
	bctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.ctx, s.cancel = bctx, cancel
	s.mu.Unlock()
	if err := s.srv.Start(ctx); err != nil {
		cancel()
		return fmt.Errorf("resolver: %w", err)
	}
	s.mu.Lock()
	s.started = true
	s.mu.Unlock()
	s.log.Info("resolver listening", "addr", s.srv.Local(), "validating", s.validating(), "forwarding", len(s.forwarders) > 0)
	return nil
}

// Addrs returns the UDP and TCP addresses after Start.
func (s *Server) Addrs() []net.Addr {
	a := s.srv.Addrs()
	if len(a) != 2 {
		return nil
	}
	return []net.Addr{a[1], a[0]}
}

// Shutdown stops listening and waits for every resolution in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.once.Do(ctx, func(ctx context.Context) error {
		s.mu.Lock()
		started, cancel := s.started, s.cancel
		s.mu.Unlock()
		if !started {
			return nil
		}
		cancel()
		err := s.srv.Shutdown(ctx)
		done := make(chan struct{})
		go func() { s.workers.Wait(); close(done) }()
		select {
		case <-done:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}

func (s *Server) allowed(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ServeDNS answers one client query (dnsserver.Handler): from the packed
// reply cache on the fast path, else by resolution, on a goroutine of its
// own over UDP (the reply is sent when ready) and in turn over TCP.
func (s *Server) ServeDNS(req *dnsserver.Request, out []byte) []byte {
	s.m.queries.Inc()
	if !s.allowed(req.From.Addr()) {
		s.m.refused.Inc()
		return refuse(req.Wire)
	}
	if q, ok := req.Query(); ok {
		if reply, ok := s.fromMsgCache(q, req.Wire, out, req.MaxSize(), req.Now); ok {
			s.traceCache(req, trace.CacheHit)
			return reply
		}
	}
	s.m.misses.Inc()
	s.traceCache(req, trace.CacheMiss)
	if req.Proto == dnsserver.TCP {
		return s.slow(req)
	}
	select {
	case s.sem <- struct{}{}:
	default:
		s.m.dropped.Inc()
		return nil
	}
	s.workers.Add(1)
	ok := req.Clone().Go(func(r *dnsserver.Request) []byte {
		defer s.workers.Done()
		defer func() { <-s.sem }()
		return s.slow(r)
	})
	if !ok { // not from a started server (a test calling ServeDNS)
		s.workers.Done()
		<-s.sem
		return s.slow(req)
	}
	return nil
}

// fromMsgCache answers q from the packed-reply cache, counting TTLs down,
// and reports whether it did. out is scratch space for the reply; now is
// read once per batch of datagrams by the UDP readers.
func (s *Server) fromMsgCache(q *query, b, out []byte, limit int, now time.Time) ([]byte, bool) {
	e, ok := s.msgs.get(q.Key)
	if !ok {
		return nil, false
	}
	exp := e.expiresAt()
	if now.UnixNano() > exp {
		return nil, false
	}
	if e.wireLen() > limit {
		return nil, false
	}
	// ID and the client's own question (its spelling of the name); RD
	// as asked.
	out, offs := e.reply(out, b)
	out[2] = out[2]&^0x01 | b[2]&0x01
	el := e.elapsed(now)
	for i := 0; i+1 < len(offs); i += 2 {
		off := int(offs[i])<<8 | int(offs[i+1])
		ttl := binary.BigEndian.Uint32(out[off:])
		if ttl > el {
			ttl -= el
		} else {
			ttl = 0
		}
		binary.BigEndian.PutUint32(out[off:], ttl)
	}
	s.m.hits.Inc()
	if !s.cfg.NoPrefetch && e.hits() >= 2 && e.life() >= 10 && exp-now.UnixNano() < int64(e.life())*int64(time.Second/10) && e.startPrefetch() {
		s.prefetch(e, append([]byte(nil), q.Key...))
	}
	return out, true
}

func (s *Server) prefetch(e *msgEntry, key []byte) {
	if s.ctx.Err() != nil {
		return
	}
	select {
	case s.sem <- struct{}{}:
	default:
		return
	}
	s.m.prefetches.Inc()
	s.workers.Add(1)
	go func() {
		defer s.workers.Done()
		defer func() { <-s.sem }()
		// The key is the lower-cased wire name, the type and the flags.
		fl := key[len(key)-1]
		qname, _, err := dns.UnpackDomainName(key, 0)
		if err != nil {
			return
		}
		qtype := binary.BigEndian.Uint16(key[len(key)-3:])
		req := new(dns.Msg)
		req.SetQuestion(qname, qtype)
		req.CheckingDisabled = fl&4 != 0
		if fl&1 != 0 {
			req.SetEdns0(1232, fl&2 != 0)
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ResolveTimeout.D())
		defer cancel()
		res, err := s.resolve(ctx, &task{refresh: true}, qname, qtype)
		if err != nil {
			return
		}
		s.store(key, req, res)
	}()
}

// refuse answers b with REFUSED if it looks like a query.
func refuse(b []byte) []byte { return errorReply(b, dns.RcodeRefused) }

func errorReply(b []byte, rcode int) []byte {
	req := new(dns.Msg)
	if err := req.Unpack(b); err != nil || req.Response {
		// Not a parseable query: answer with just a header if it has one.
		if len(b) < 12 || b[2]&0x80 != 0 {
			return nil
		}
		out := make([]byte, 12)
		copy(out, b[:2])
		out[2] = 0x80 | b[2]&0x79
		out[3] = 0x80 | byte(dns.RcodeFormatError)
		if rcode == dns.RcodeRefused {
			out[3] = 0x80 | byte(rcode)
		}
		return out
	}
	resp := new(dns.Msg)
	resp.SetRcode(req, rcode)
	resp.RecursionAvailable = true
	if req.IsEdns0() != nil {
		resp.SetEdns0(1232, false)
	}
	out, _ := resp.Pack()
	return out
}

// slow handles a query the fast path could not: a cache miss or an
// unusual message. A panic is answered with SERVFAIL by the DNS server.
func (s *Server) slow(r *dnsserver.Request) (reply []byte) {
	start := time.Now()
	defer func() { s.m.latency.Observe(time.Since(start).Seconds()) }()
	b := r.Wire
	req, err := r.Msg()
	if err != nil {
		if len(b) >= 12 && b[2]&0x80 == 0 {
			return errorReply(b, dns.RcodeFormatError)
		}
		return nil
	}
	if req.Response {
		return nil
	}
	resp := new(dns.Msg)
	switch {
	case malformedEDNS(req, resp):
	case req.Opcode != dns.OpcodeQuery:
		resp.SetRcode(req, dns.RcodeNotImplemented)
	case len(req.Question) != 1:
		resp.SetRcode(req, dns.RcodeFormatError)
	case req.Question[0].Qclass != dns.ClassINET:
		resp.SetRcode(req, dns.RcodeRefused)
	case req.Question[0].Qtype == dns.TypeANY || req.Question[0].Qtype == 0:
		// QTYPE 0 is reserved: NOTIMP, as Knot answers.
		resp.SetRcode(req, dns.RcodeNotImplemented)
	case req.Question[0].Qtype == dns.TypeAXFR || req.Question[0].Qtype == dns.TypeIXFR || req.Question[0].Qtype == dns.TypeOPT:
		resp.SetRcode(req, dns.RcodeRefused)
	default:
		if s.testHook != nil {
			s.testHook(req)
		}
		return s.answerQuery(r, req)
	}
	resp.RecursionAvailable = true
	if req.IsEdns0() != nil && resp.IsEdns0() == nil {
		resp.SetEdns0(1232, false)
	}
	out, _ := resp.Pack()
	return out
}

func (s *Server) answerQuery(r *dnsserver.Request, req *dns.Msg) []byte {
	b := r.Wire
	q := req.Question[0]
	var key []byte
	pq, ok := r.Query()
	if ok {
		key = pq.Key
	}
	res, err := s.resolveShared(q.Name, q.Qtype, req.CheckingDisabled)
	if err != nil {
		if key != nil {
			if e, ok := s.msgs.get(key); ok && s.cfg.ServeStale > 0 && s.deps.Now().Before(e.expiry().Add(s.cfg.ServeStale.D())) {
				s.m.stale.Inc()
				return staleReply(e, b)
			}
		}
		s.log.Debug("resolution failed", "name", q.Name, "type", dns.TypeToString[q.Qtype], "err", err)
		s.m.servfail.Inc()
		resp := new(dns.Msg)
		resp.SetRcode(req, dns.RcodeServerFailure)
		resp.RecursionAvailable = true
		if req.IsEdns0() != nil {
			resp.SetEdns0(1232, false)
			code := dns.ExtendedErrorCodeNoReachableAuthority
			if !errors.Is(err, errTimeout) && !errors.Is(err, context.DeadlineExceeded) {
				code = dns.ExtendedErrorCodeOther
			}
			resp.IsEdns0().Option = append(resp.IsEdns0().Option, &dns.EDNS0_EDE{InfoCode: code, ExtraText: shorten(err.Error())})
		}
		out, _ := resp.Pack()
		return out
	}
	if s.validating() {
		switch res.sec {
		case secSecure:
			s.m.secure.Inc()
		case secBogus:
			s.m.bogus.Inc()
			if !req.CheckingDisabled {
				s.m.servfail.Inc()
			}
		default:
			s.m.insecure.Inc()
		}
	}
	return s.store(key, req, res)
}

func shorten(s string) string {
	if len(s) > 100 {
		return s[:100]
	}
	return s
}

// staleReply serves an expired cached reply with TTL 30 (RFC 8767).
func staleReply(e *msgEntry, b []byte) []byte {
	out, offs := e.reply(make([]byte, 0, e.wireLen()), b)
	for i := 0; i+1 < len(offs); i += 2 {
		binary.BigEndian.PutUint32(out[int(offs[i])<<8|int(offs[i+1]):], 30)
	}
	return out
}

// store builds the client's reply for res, caches it under key (if any)
// and returns it packed.
func (s *Server) store(key []byte, req *dns.Msg, res *result) []byte {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	resp.Compress = true
	resp.Rcode = res.rcode
	opt := req.IsEdns0()
	do := opt != nil && opt.Do()
	servfail := res.sec == secBogus && !req.CheckingDisabled
	if servfail {
		// RFC 4035 5.5: bogus data is not handed out, unless CD.
		resp.Rcode = dns.RcodeServerFailure
		resp.Answer, resp.Ns = nil, nil
	} else {
		qname := req.Question[0].Name
		resp.Answer = clientSpelling(filterDNSSEC(res.answer, do, req.Question[0].Qtype), qname)
		resp.Ns = clientSpelling(filterDNSSEC(res.ns, do, req.Question[0].Qtype), qname)
		resp.AuthenticatedData = res.sec == secSecure && (do || req.AuthenticatedData) && !req.CheckingDisabled
		// MaxTTL caps what the client is told and what the reply cache
		// keeps, as it caps the RRset cache.
		maxTTL := uint32(s.cfg.MaxTTL.D() / time.Second)
		resp.Answer, resp.Ns = capTTL(resp.Answer, maxTTL), capTTL(resp.Ns, maxTTL)
	}
	if opt != nil {
		resp.SetEdns0(1232, do)
		// The reason for SERVFAIL, or for an insecure answer (EDE 1/2:
		// unsupported DNSKEY algorithm or DS digest).
		if res.ede != nil && (servfail || res.sec == secInsecure && !req.CheckingDisabled) {
			resp.IsEdns0().Option = append(resp.IsEdns0().Option, res.ede)
		}
	}
	out, err := resp.Pack()
	if err != nil {
		s.log.Warn("pack reply", "err", err)
		return errorReply(mustPack(req), dns.RcodeServerFailure)
	}
	if key == nil || (resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError) {
		return out
	}
	ttl := ^uint32(0)
	for _, rr := range resp.Answer {
		ttl = min(ttl, rr.Header().Ttl)
	}
	for _, rr := range resp.Ns {
		ttl = min(ttl, rr.Header().Ttl)
	}
	if len(resp.Answer)+len(resp.Ns) == 0 || ttl == 0 {
		return out
	}
	if res.sec == secBogus {
		ttl = min(ttl, uint32(s.cfg.BogusTTL.D()/time.Second))
	}
	offs, err := ttlOffsets(out)
	if err != nil {
		return out
	}
	if e, err := newMsgEntry(key, out, offs, s.deps.Now(), ttl); err == nil {
		s.msgs.put(key, e)
	}
	return out
}

func mustPack(m *dns.Msg) []byte { b, _ := m.Pack(); return b }

// capTTL returns rrs with every TTL above max lowered to it (those
// records copied: rrs may be the cache's own).
func capTTL(rrs []dns.RR, max uint32) []dns.RR {
	var out []dns.RR
	for i, rr := range rrs {
		if rr.Header().Ttl <= max {
			continue
		}
		if out == nil {
			out = append([]dns.RR(nil), rrs...)
		}
		c := dns.Copy(rr)
		c.Header().Ttl = max
		out[i] = c
	}
	if out == nil {
		return rrs
	}
	return out
}

// filterDNSSEC drops DNSSEC records the client did not ask for (no DO bit).
func filterDNSSEC(rrs []dns.RR, do bool, qtype uint16) []dns.RR {
	if do {
		return rrs
	}
	out := make([]dns.RR, 0, len(rrs))
	for _, rr := range rrs {
		switch t := rr.Header().Rrtype; t {
		case dns.TypeRRSIG, dns.TypeNSEC, dns.TypeNSEC3:
			if t != qtype {
				continue
			}
		}
		out = append(out, rr)
	}
	return out
}

// resolveShared resolves with one resolution per name and type in flight:
// identical concurrent misses wait for the same result.
// Validation always runs: with CD the client gets the data whatever the
// outcome (store decides), so CD and non-CD queries share resolutions.
func (s *Server) resolveShared(name string, qtype uint16, cd bool) (*result, error) {
	k := strings.ToLower(name) + "/" + itoa(int(qtype))
	s.flightMu.Lock()
	if c, ok := s.flight[k]; ok {
		s.flightMu.Unlock()
		<-c.done
		return c.res, c.err
	}
	c := &call{done: make(chan struct{})}
	s.flight[k] = c
	s.flightMu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ResolveTimeout.D())
	c.res, c.err = s.resolve(ctx, &task{}, name, qtype)
	cancel()
	s.flightMu.Lock()
	delete(s.flight, k)
	s.flightMu.Unlock()
	close(c.done)
	return c.res, c.err
}

// traceCache publishes the reply cache's decision on a client's query
// (client to resolver), the question as summary: "A gaia.cs.umass.edu.".
func (s *Server) traceCache(req *dnsserver.Request, typ string) {
	if !s.deps.Trace.Enabled() {
		return
	}
	summary := "reply cache"
	if len(req.Wire) > 12 {
		if name, off, err := dns.UnpackDomainName(req.Wire, 12); err == nil && off+2 <= len(req.Wire) {
			summary = dns.TypeToString[binary.BigEndian.Uint16(req.Wire[off:])] + " " + name
		}
	}
	s.deps.Trace.Publish(trace.Event{Type: typ, From: req.From.String(), To: req.LocalAddr(), Proto: "dns/" + req.Proto.String(), Summary: summary})
}
