package resolver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"

	"github.com/applayer/applayer/dns/internal/udpbatch"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
)

// Server is the recursive resolver: it serves clients over UDP and TCP and
// resolves their queries by iteration (or forwarding), with a cache.
type Server struct {
	cfg  Config
	deps service.Deps
	log  *slog.Logger
	m    *metrics

	roots      []netip.AddrPort
	forwarders []netip.AddrPort
	allow      []netip.Prefix
	anchors    []dns.RR

	rr   *store[*rrEntry]
	msgs *store[*msgEntry]
	// testHook, set only by this package's tests, runs before a query is
	// answered on the slow path (to inject a panic).
	testHook func(*dns.Msg)
	infra    infra

	sem chan struct{}

	flightMu sync.Mutex
	flight   map[string]*call

	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelFunc
	udp     *net.UDPConn
	tcp     net.Listener
	readers sync.WaitGroup
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
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger.With("service", "dns-resolver"), flight: map[string]*call{}}
	s.infra.m = map[netip.AddrPort]*serverStat{}
	for _, h := range cfg.RootHints {
		ap, _ := parseServer(h, cfg.UpstreamPort)
		s.roots = append(s.roots, ap)
	}
	if len(cfg.RootHints) == 0 && cfg.RootHintsFile != "" {
		addrs, err := ReadRootHints(cfg.RootHintsFile)
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			s.roots = append(s.roots, netip.AddrPortFrom(a, uint16(cfg.UpstreamPort)))
		}
	}
	for _, h := range cfg.Forwarders {
		ap, _ := parseServer(h, 53)
		s.forwarders = append(s.forwarders, ap)
	}
	if len(cfg.Allow) == 0 {
		s.allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	for _, a := range cfg.Allow {
		p, _ := parsePrefix(a)
		s.allow = append(s.allow, p)
	}
	s.rr = newStore(cfg.CacheSize, func(e *rrEntry) time.Time { return e.expires })
	s.msgs = newStore(cfg.CacheSize, (*msgEntry).expiry)
	s.sem = make(chan struct{}, cfg.MaxConcurrent)
	m, err := newMetrics(deps.Metrics, s)
	if err != nil {
		return nil, err
	}
	s.m = m
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
	var lc net.ListenConfig
	var udp *net.UDPConn
	var ln net.Listener
	_, port, _ := net.SplitHostPort(s.cfg.Listen)
	for try := 0; ; try++ {
		pc, err := lc.ListenPacket(ctx, "udp", s.cfg.Listen)
		if err != nil {
			return fmt.Errorf("resolver: udp listen: %w", err)
		}
		udp = pc.(*net.UDPConn)
		ln, err = lc.Listen(ctx, "tcp", udp.LocalAddr().String())
		if err == nil {
			break
		}
		udp.Close()
		// With port 0 the UDP port may be taken for TCP: pick another.
		if port != "0" || try == 20 {
			return fmt.Errorf("resolver: tcp listen: %w", err)
		}
	}
	bctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.udp, s.tcp, s.ctx, s.cancel = udp, ln, bctx, cancel
	s.mu.Unlock()
	n := max(1, min(runtime.GOMAXPROCS(0), 8))
	for range n {
		s.readers.Add(1)
		b := udpbatch.NewBatch()
		if p, err := udpbatch.NewPoller(udp, b); err == nil {
			go s.serveBatch(udp, p, b)
			continue
		}
		go s.serveUDP(udp)
	}
	s.readers.Add(1)
	go s.serveTCP(ln)
	s.log.Info("resolver listening", "addr", udp.LocalAddr().String(), "validating", s.validating(), "forwarding", len(s.forwarders) > 0)
	return nil
}

// Addrs returns the UDP and TCP addresses after Start.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.udp == nil {
		return nil
	}
	return []net.Addr{s.udp.LocalAddr(), s.tcp.Addr()}
}

// Shutdown stops listening and waits for every resolution in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.once.Do(ctx, func(ctx context.Context) error {
		s.mu.Lock()
		udp, tcp, cancel := s.udp, s.tcp, s.cancel
		s.mu.Unlock()
		if udp == nil {
			return nil
		}
		cancel()
		udp.Close()
		tcp.Close()
		done := make(chan struct{})
		go func() { s.readers.Wait(); s.workers.Wait(); close(done) }()
		select {
		case <-done:
			return nil
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

// serveUDP reads queries in batches (recvmmsg) and answers cache hits in
// batches (sendmmsg): on the cache-hit path the system calls are the cost.
func (s *Server) serveUDP(conn *net.UDPConn) {
	la, _ := netip.ParseAddrPort(conn.LocalAddr().String())
	if !la.Addr().Is4() {
		s.serveUDPSimple(conn)
		return
	}
	defer s.readers.Done()
	const batch = 32
	pc := ipv4.NewPacketConn(conn)
	in := make([]ipv4.Message, batch)
	outs := make([]ipv4.Message, 0, batch)
	bufs := make([][]byte, batch)
	obufs := make([][]byte, batch)
	for i := range in {
		bufs[i] = make([]byte, 65535)
		obufs[i] = make([]byte, 0, 4096)
		in[i].Buffers = [][]byte{bufs[i]}
	}
	var q query
	q.key = make([]byte, 0, 300)
	local := conn.LocalAddr().String()
	for {
		n, err := pc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		outs = outs[:0]
		now := s.deps.Now()
		for i := 0; i < n; i++ {
			ua, ok := in[i].Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			from := ua.AddrPort()
			if reply := s.handleUDP(conn, bufs[i][:in[i].N], from, &q, obufs[len(outs)], local, now); reply != nil {
				obufs[len(outs)] = reply[:0]
				outs = append(outs, ipv4.Message{Buffers: [][]byte{reply}, Addr: ua})
			}
		}
		for len(outs) > 0 {
			k, err := pc.WriteBatch(outs, 0)
			if err != nil || k == 0 {
				break
			}
			outs = outs[k:]
		}
	}
}

// serveBatch is serveUDP on the Linux fast path (package udpbatch): raw
// recvmmsg/sendmmsg through the netpoller, batches of 64, no allocation
// per cache hit.
func (s *Server) serveBatch(conn *net.UDPConn, r *udpbatch.Poller, b *udpbatch.Batch) {
	defer s.readers.Done()
	obufs := make([][]byte, udpbatch.Size)
	for i := range obufs {
		obufs[i] = make([]byte, 0, 4096)
	}
	var q query
	q.key = make([]byte, 0, 300)
	local := conn.LocalAddr().String()
	for {
		n, err := r.Recv()
		if err != nil || s.ctx.Err() != nil {
			return
		}
		now := s.deps.Now()
		for i := 0; i < n; i++ {
			d, cut := b.Datagram(i)
			from, ok := b.From(i)
			if !ok {
				continue
			}
			var reply []byte
			if cut {
				// No query is this big: the header alone says FORMERR.
				if len(d) >= 12 {
					reply = errorReply(d[:12], dns.RcodeFormatError)
				}
			} else {
				reply = s.handleUDP(conn, d, from, &q, obufs[i], local, now)
			}
			if len(reply) > 0 {
				obufs[i] = reply[:0]
				b.Reply(i, reply)
			}
		}
		r.Send()
	}
}

// handleUDP answers one datagram: a cache hit's reply is returned for the
// caller to send; anything else is answered (or dropped) here.
func (s *Server) handleUDP(conn *net.UDPConn, b []byte, from netip.AddrPort, q *query, out []byte, local string, now time.Time) []byte {
	s.m.queries.Inc()
	if s.deps.Trace.Enabled() {
		s.deps.Trace.Publish(trace.Event{From: from.String(), To: local, Proto: "dns/udp", Summary: "client query", Bytes: len(b)})
	}
	if !s.allowed(from.Addr()) {
		s.m.refused.Inc()
		return refuse(b)
	}
	if parseQuery(b, q) == nil {
		if reply, ok := s.fromMsgCache(q, b, out, q.udpSize, now); ok {
			return reply
		}
	}
	s.m.misses.Inc()
	select {
	case s.sem <- struct{}{}:
	default:
		s.m.dropped.Inc()
		return nil
	}
	req := append([]byte(nil), b...)
	s.workers.Add(1)
	go func() {
		defer s.workers.Done()
		defer func() { <-s.sem }()
		reply := s.slow(req, from.Addr(), 0)
		if reply != nil {
			if len(reply) > maxUDP(req) {
				reply = truncate(req)
			}
			conn.WriteToUDPAddrPort(reply, from)
		}
	}()
	return nil
}

func (s *Server) serveUDPSimple(conn *net.UDPConn) {
	defer s.readers.Done()
	buf := make([]byte, 65535)
	out := make([]byte, 0, 4096)
	var q query
	q.key = make([]byte, 0, 300)
	local := conn.LocalAddr().String()
	errs := 0
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A socket that keeps failing must not spin the CPU.
			if errs++; errs > 10 {
				time.Sleep(10 * time.Millisecond)
			}
			continue
		}
		errs = 0
		if reply := s.handleUDP(conn, buf[:n], from, &q, out[:0], local, s.deps.Now()); reply != nil {
			conn.WriteToUDPAddrPort(reply, from)
		}
	}
}

// maxUDP is the reply size the client can take.
func maxUDP(req []byte) int {
	var q query
	if parseQuery(req, &q) == nil {
		return q.udpSize
	}
	return 512
}

// fromMsgCache answers q from the packed-reply cache, counting TTLs down,
// and reports whether it did. out is scratch space for the reply; now is
// read once per batch of datagrams by the UDP readers.
func (s *Server) fromMsgCache(q *query, b, out []byte, limit int, now time.Time) ([]byte, bool) {
	e, ok := s.msgs.get(q.key)
	if !ok {
		return nil, false
	}
	if now.UnixNano() > e.expires {
		return nil, false
	}
	if int(e.wireLen) > limit {
		return nil, false
	}
	out = append(out[:0], e.wire()...)
	// ID and the client's own spelling of the name; RD and CD as asked.
	out[0], out[1] = b[0], b[1]
	out[2] = out[2]&^0x01 | b[2]&0x01
	copy(out[12:q.qnameEnd], b[12:q.qnameEnd])
	el := e.elapsed(now)
	offs := e.ttlOffsets()
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
	hits := e.hits.Add(1)
	if !s.cfg.NoPrefetch && hits >= 2 && e.life >= 10 && e.expires-now.UnixNano() < int64(e.life)*int64(time.Second/10) && e.prefetched.CompareAndSwap(false, true) {
		s.prefetch(e, append([]byte(nil), q.key...))
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

// truncate returns an empty reply with TC set, telling the client to retry over TCP.
func truncate(req []byte) []byte {
	m := new(dns.Msg)
	if m.Unpack(req) != nil {
		return nil
	}
	r := new(dns.Msg)
	r.SetReply(m)
	r.Truncated, r.RecursionAvailable = true, true
	if m.IsEdns0() != nil {
		r.SetEdns0(1232, false)
	}
	out, _ := r.Pack()
	return out
}

// slow handles a query the fast path could not: a cache miss or an
// unusual message. It never panics: a panic is answered with SERVFAIL.
func (s *Server) slow(b []byte, from netip.Addr, _ int) (reply []byte) {
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic answering query", "panic", p, "client", from.String())
			s.m.servfail.Inc()
			reply = errorReply(b, dns.RcodeServerFailure)
		}
		s.m.latency.Observe(time.Since(start).Seconds())
	}()
	req := new(dns.Msg)
	if err := req.Unpack(b); err != nil {
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
		return s.answerQuery(b, req)
	}
	resp.RecursionAvailable = true
	if req.IsEdns0() != nil && resp.IsEdns0() == nil {
		resp.SetEdns0(1232, false)
	}
	out, _ := resp.Pack()
	return out
}

func (s *Server) answerQuery(b []byte, req *dns.Msg) []byte {
	q := req.Question[0]
	var key []byte
	var pq query
	if parseQuery(b, &pq) == nil {
		key = pq.key
	}
	res, err := s.resolveShared(q.Name, q.Qtype, req.CheckingDisabled)
	if err != nil {
		if key != nil {
			if e, ok := s.msgs.get(key); ok && s.cfg.ServeStale > 0 && s.deps.Now().Before(e.expiry().Add(s.cfg.ServeStale.D())) {
				s.m.stale.Inc()
				return staleReply(e, b, &pq)
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
func staleReply(e *msgEntry, b []byte, q *query) []byte {
	out := append([]byte(nil), e.wire()...)
	out[0], out[1] = b[0], b[1]
	copy(out[12:q.qnameEnd], b[12:q.qnameEnd])
	offs := e.ttlOffsets()
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
	s.msgs.put(key, newMsgEntry(out, offs, s.deps.Now(), ttl))
	return out
}

func mustPack(m *dns.Msg) []byte { b, _ := m.Pack(); return b }

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

func (s *Server) serveTCP(ln net.Listener) {
	defer s.readers.Done()
	conns := make(chan struct{}, s.cfg.MaxTCPConns)
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	defer func() {
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		select {
		case conns <- struct{}{}:
		default:
			s.m.refused.Inc()
			c.Close()
			continue
		}
		mu.Lock()
		open[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-conns }()
			defer func() { mu.Lock(); delete(open, c); mu.Unlock(); c.Close() }()
			s.serveConn(c)
		}()
	}
}

func (s *Server) serveConn(c net.Conn) {
	ra, _ := netip.ParseAddrPort(c.RemoteAddr().String())
	okClient := s.allowed(ra.Addr())
	var q query
	q.key = make([]byte, 0, 300)
	out := make([]byte, 0, 4096)
	var l [2]byte
	for {
		c.SetDeadline(time.Now().Add(s.cfg.TCPIdleTimeout.D()))
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		buf := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		s.m.queries.Inc()
		var reply []byte
		switch {
		case !okClient:
			s.m.refused.Inc()
			reply = refuse(buf)
		case parseQuery(buf, &q) == nil:
			if r, ok := s.fromMsgCache(&q, buf, out, 65535, s.deps.Now()); ok {
				reply = r
				break
			}
			fallthrough
		default:
			s.m.misses.Inc()
			reply = s.slow(buf, ra.Addr(), 0)
		}
		if reply == nil {
			return
		}
		frame := make([]byte, 2, 2+len(reply))
		binary.BigEndian.PutUint16(frame, uint16(len(reply)))
		if _, err := c.Write(append(frame, reply...)); err != nil {
			return
		}
	}
}
