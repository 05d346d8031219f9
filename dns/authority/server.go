// Package authority is applayer's authoritative DNS server: zones from
// RFC 1035 master files (several per server), answered as NSD and Knot
// answer them (AA, referrals with glue, NXDOMAIN/NODATA with the SOA, CNAME
// chains, RFC 4592 wildcards, additional addresses, A-record rotation,
// REFUSED outside its zones), EDNS0 (RFC 6891: 1232-byte ceiling, DO,
// BADVERS, NSID RFC 5001, cookies RFC 7873/9018), truncation over UDP and
// full answers over TCP, AXFR/IXFR out (RFC 5936, RFC 1995) to allowed
// addresses, NOTIFY (RFC 1996), secondary zones, and DNSSEC (RFC 4033-4035,
// NSEC3 RFC 5155) for pre-signed or self-signed zones.
//
// The read path takes no locks: the zones live in an atomic.Pointer that a
// reload swaps.
package authority

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/applayer/applayer/dns/internal/udpbatch"
	"github.com/applayer/applayer/dns/zone"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/trace"
)

// Server is an authoritative DNS server.
type Server struct {
	// beforeAnswer, when set (by tests), runs before each query is
	// answered.
	beforeAnswer func(*dns.Msg)

	cfg  Config
	deps service.Deps
	log  *slog.Logger
	m    *metrics
	acl  []aclEntry
	tsig map[string]tsigKey

	zones  atomic.Pointer[zoneSet]
	rotate atomic.Uint32
	secret [16]byte

	reloadMu sync.Mutex // serialises writers of zones
	sources  map[string]*source

	mu      sync.Mutex
	udp     []*net.UDPConn
	raw     []*udpbatch.Sock
	tcpLn   net.Listener
	tcp     *dns.Server
	local   string
	stop    chan struct{}
	wg      sync.WaitGroup
	started bool
	once    service.Once
}

// New returns a server for cfg with its zones loaded (and signed, where
// asked); Start binds it.
func New(cfg Config, deps service.Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	cfg.defaults()
	deps = deps.Defaults()
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger.With("service", "dns-authority"), sources: map[string]*source{}}
	s.tsig, _ = parseTSIGKeys(cfg.TSIGKeys)
	for _, a := range cfg.AllowTransfer {
		e, _ := parseACL(a, s.tsig)
		s.acl = append(s.acl, e)
	}
	if _, err := rand.Read(s.secret[:]); err != nil {
		return nil, fmt.Errorf("authority: cookie secret: %w", err)
	}
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	s.m = m
	s.zones.Store(&zoneSet{zones: map[string]*zone.Zone{}})
	for _, zc := range cfg.Zones {
		src := &source{cfg: zc, key: zone.Key(zc.Origin), kick: make(chan struct{}, 1)}
		s.sources[src.key] = src
		if zc.Primary != "" {
			continue // transferred after Start
		}
		src.prev = s.restoreJournal(src)
		z, err := s.loadSource(src)
		if err != nil {
			return nil, err
		}
		s.install(src.key, z)
		s.record(src, src.prev, z)
		src.prev = nil
	}
	return s, nil
}

// Name implements service.Service.
func (s *Server) Name() string { return "dns-authority " + s.cfg.Addr }

// Zone returns the zone with the given origin as currently served, or nil.
func (s *Server) Zone(origin string) *zone.Zone {
	return s.zones.Load().zones[zone.Key(origin)]
}

// SetZone serves z in place of the zone with the same origin (or adds
// it), as a reload would. Tests use it to serve doctored zones.
func (s *Server) SetZone(z *zone.Zone) { s.install(z.Origin, z) }

// install swaps in a zone set with z at key (nil removes it).
func (s *Server) install(key string, z *zone.Zone) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	old := s.zones.Load()
	next := &zoneSet{zones: make(map[string]*zone.Zone, len(old.zones)+1)}
	for k, v := range old.zones {
		next.zones[k] = v
	}
	if z == nil {
		delete(next.zones, key)
	} else {
		next.zones[key] = z
	}
	s.zones.Store(next)
}

func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReusePort, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// Start binds the UDP sockets and the TCP listener and starts serving.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("authority: already started")
	}
	// TCP binds without SO_REUSEPORT, so that another process already on
	// the address makes Start fail instead of silently sharing the port.
	// The UDP sockets share the port among themselves.
	var plain net.ListenConfig
	lc := net.ListenConfig{Control: reusePort}
	addr := s.cfg.Addr
	s.stop = make(chan struct{})
	var err error
	if strings.Contains(s.cfg.Network, "tcp") {
		s.tcpLn, err = plain.Listen(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("authority: tcp listen: %w", err)
		}
		addr = s.tcpLn.Addr().String()
	}
	if strings.Contains(s.cfg.Network, "udp") {
		n := s.cfg.UDPSockets
		if n <= 0 {
			n = runtime.GOMAXPROCS(0)
		}
		ulc := lc
		if n == 1 {
			ulc = plain
		}
		for i := 0; i < n; i++ {
			pc, err := ulc.ListenPacket(ctx, "udp", addr)
			if err != nil {
				s.closeListeners()
				return fmt.Errorf("authority: udp listen: %w", err)
			}
			s.udp = append(s.udp, pc.(*net.UDPConn))
			addr = pc.LocalAddr().String()
		}
	}
	s.local = addr
	if err := s.writeDS(); err != nil {
		s.closeListeners()
		return err
	}
	for _, c := range s.udp {
		s.wg.Add(1)
		if r, err := udpbatch.Open(c); err == nil {
			s.raw = append(s.raw, r)
			go s.serveRaw(r, c.LocalAddr().String())
			continue
		}
		go s.serveUDP(c)
	}
	if s.tcpLn != nil {
		started := make(chan struct{})
		s.tcp = &dns.Server{
			Listener:          &limitListener{Listener: s.tcpLn, sem: make(chan struct{}, s.cfg.MaxTCPConns)},
			Handler:           dns.HandlerFunc(s.serveTCP),
			ReadTimeout:       s.cfg.ReadTimeout.D(),
			WriteTimeout:      s.cfg.ReadTimeout.D(),
			IdleTimeout:       func() time.Duration { return s.cfg.IdleTimeout.D() },
			MaxTCPQueries:     1000,
			TsigSecret:        s.secrets(),
			NotifyStartedFunc: func() { close(started) },
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.tcp.ActivateAndServe(); err != nil {
				s.log.Debug("tcp server stopped", "err", err)
			}
		}()
		<-started
	}
	s.started = true
	s.startBackground()
	// Tell the secondaries the zones are (re)loaded, as Knot does at start.
	for _, src := range s.sources {
		if z := s.zones.Load().zones[src.key]; z != nil && src.cfg.Primary == "" {
			s.notifyLocked(z)
		}
	}
	s.log.Info("dns authority listening", "addr", addr, "network", s.cfg.Network, "zones", len(s.cfg.Zones))
	return nil
}

func (s *Server) closeListeners() {
	for _, c := range s.udp {
		c.Close()
	}
	s.udp = nil
	if s.tcpLn != nil {
		s.tcpLn.Close()
		s.tcpLn = nil
	}
}

// Addrs returns the bound addresses after Start: TCP first, then UDP.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []net.Addr
	if s.tcpLn != nil {
		out = append(out, s.tcpLn.Addr())
	}
	if len(s.udp) > 0 {
		out = append(out, s.udp[0].LocalAddr())
	}
	return out
}

// Shutdown stops the listeners and waits for the serving goroutines.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.once.Do(ctx, func(ctx context.Context) error {
		s.mu.Lock()
		if !s.started {
			s.mu.Unlock()
			return nil
		}
		close(s.stop)
		for _, c := range s.udp {
			c.Close()
		}
		for _, r := range s.raw {
			r.Wake()
		}
		tcp := s.tcp
		s.mu.Unlock()
		var err error
		if tcp != nil {
			err = tcp.ShutdownContext(ctx)
		}
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		}
		return err
	})
}

// --- serving ---

// batch is how many datagrams one recvmmsg/sendmmsg moves at most.
const batch = 32

// batchConn reads and writes several datagrams per call (ipv4 and ipv6
// PacketConns share the message type).
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// serveUDP answers datagrams on c, reading and writing them in batches
// (recvmmsg/sendmmsg on Linux) so that a busy server makes few syscalls.
func (s *Server) serveUDP(c *net.UDPConn) {
	defer s.wg.Done()
	var pc batchConn = ipv4.NewPacketConn(c)
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() == nil {
		pc = ipv6.NewPacketConn(c)
	}
	local := c.LocalAddr().String()
	var cache answerCache
	in := make([]ipv4.Message, batch)
	out := make([]ipv4.Message, batch)
	outBufs := make([][]byte, batch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, 65535)}
		outBufs[i] = make([]byte, 65535)
		out[i].Buffers = [][]byte{nil}
	}
	errs := 0
	for {
		n, err := pc.ReadBatch(in, 0)
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
		zs := s.zones.Load()
		tracing := s.deps.Trace.Enabled()
		k := 0
		for i := 0; i < n; i++ {
			s.m.udpQueries.Inc()
			q := in[i].Buffers[0][:in[i].N]
			ua, ok := in[i].Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			from := ua.AddrPort()
			resp := cache.get(zs, q, outBufs[i])
			if resp == nil || tracing {
				var cacheable bool
				resp, cacheable = s.respond(q, from, false, outBufs[i])
				if resp == nil {
					continue
				}
				if cacheable {
					cache.put(zs, q, resp)
				}
			} else {
				s.m.rcode(int(resp[3] & 0xf))
			}
			if tracing {
				s.traceMsg(local, from.String(), "dns/udp", resp)
			}
			out[k].Buffers[0] = resp
			out[k].Addr = ua
			k++
		}
		for sent := 0; sent < k; {
			m, err := pc.WriteBatch(out[sent:k], 0)
			if err != nil {
				s.log.Debug("udp write", "err", err)
				sent++ // skip the datagram that failed
				continue
			}
			sent += m
		}
	}
}

// answerCache keeps packed UDP answers by the exact bytes of the query
// after its ID (so case, flags, EDNS buffer and DO all take part), for one
// serving goroutine: no locks. It is emptied when the zones change and when
// it grows past maxCached entries.
type answerCache struct {
	zs *zoneSet
	m  map[string][]byte
}

const maxCached = 200_000

func (c *answerCache) get(zs *zoneSet, q, out []byte) []byte {
	if c.zs != zs || len(q) < 12 {
		return nil
	}
	a, ok := c.m[string(q[2:])]
	if !ok {
		return nil
	}
	out = append(out[:0], q[0], q[1])
	return append(out, a...)
}

func (c *answerCache) put(zs *zoneSet, q, a []byte) {
	if c.zs != zs || c.m == nil || len(c.m) >= maxCached {
		c.zs, c.m = zs, make(map[string][]byte)
	}
	c.m[string(q[2:])] = append([]byte(nil), a[2:]...)
}

func (s *Server) traceMsg(from, to, proto string, wire []byte) {
	m := new(dns.Msg)
	if err := m.Unpack(wire); err != nil {
		s.deps.Trace.Publish(trace.Event{From: from, To: to, Proto: proto, Summary: "malformed message", Bytes: len(wire)})
		return
	}
	s.deps.Trace.Publish(trace.Event{From: from, To: to, Proto: proto, Summary: Summary(m), Bytes: len(wire)})
}

// Summary describes a DNS message in one line for traces: "query A
// www.example.com. rd" or "response NOERROR aa A www.example.com. 2/0/1".
func Summary(m *dns.Msg) string {
	var b strings.Builder
	if m.Response {
		b.WriteString("response ")
		b.WriteString(dns.RcodeToString[m.Rcode])
	} else if m.Opcode != dns.OpcodeQuery {
		b.WriteString(strings.ToLower(dns.OpcodeToString[m.Opcode]))
	} else {
		b.WriteString("query")
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{m.Authoritative, "aa"}, {m.Truncated, "tc"}, {m.RecursionDesired, "rd"}, {m.RecursionAvailable, "ra"}, {m.AuthenticatedData, "ad"}} {
		if f.on {
			b.WriteString(" " + f.name)
		}
	}
	if len(m.Question) > 0 {
		q := m.Question[0]
		fmt.Fprintf(&b, " %s %s", dns.TypeToString[q.Qtype], q.Name)
	}
	if m.Response {
		fmt.Fprintf(&b, " %d/%d/%d", len(m.Answer), len(m.Ns), len(m.Extra))
	}
	return b.String()
}

// Respond answers one wire-format query. It returns the wire answer
// (packed into buf when it fits) or nil when the input deserves silence
// (a response, or fewer than 12 bytes). It never panics: a panic while
// answering becomes SERVFAIL.
func (s *Server) Respond(wire []byte, from netip.AddrPort, tcp bool, buf []byte) []byte {
	out, _ := s.respond(wire, from, tcp, buf)
	return out
}

// respond is Respond that also says whether the answer may be cached
// (depends only on the query's bytes and the zones).
func (s *Server) respond(wire []byte, from netip.AddrPort, tcp bool, buf []byte) (out []byte, cacheable bool) {
	if len(wire) < 12 || wire[2]&0x80 != 0 {
		s.m.dropped.Inc()
		return nil, false
	}
	if s.deps.Trace.Enabled() {
		proto := "dns/udp"
		if tcp {
			proto = "dns/tcp"
		}
		s.traceMsg(from.String(), s.local, proto, wire)
	}
	req := new(dns.Msg)
	if err := req.Unpack(wire); err != nil {
		s.m.rcode(dns.RcodeFormatError)
		return formErr(wire, buf), false
	}
	if t := req.IsTsig(); t != nil {
		return s.respondTSIG(wire, req, t, from, tcp, buf), false
	}
	defer func() {
		if r := recover(); r != nil {
			s.m.panics.Inc()
			s.log.Error("panic answering query", "panic", r, "remote", from.String())
			m := new(dns.Msg)
			m.SetRcode(req, dns.RcodeServerFailure)
			out, _ = m.PackBuffer(buf)
			cacheable = false
		}
	}()
	m, cacheable := s.handle(req, from, tcp)
	s.m.rcode(m.Rcode)
	// Compressed as NSD and Knot do (smaller datagrams; the UDP answer
	// cache pays the packing cost once per distinct query).
	m.Compress = true
	if !tcp {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = min(max(int(opt.UDPSize()), dns.MinMsgSize), s.cfg.MaxUDPSize)
		}
		m.Truncate(size)
		if m.Truncated {
			s.m.truncated.Inc()
		}
	}
	out, err := m.PackBuffer(buf)
	if err != nil {
		s.log.Debug("pack answer", "err", err)
		m = new(dns.Msg)
		m.SetRcode(req, dns.RcodeServerFailure)
		out, _ = m.PackBuffer(buf)
		return out, false
	}
	return out, cacheable
}

// respondTSIG answers a signed query: verified, answered, and the answer
// signed with the same key (RFC 8945); a failed check gets NOTAUTH.
func (s *Server) respondTSIG(wire []byte, req *dns.Msg, t *dns.TSIG, from netip.AddrPort, tcp bool, buf []byte) (out []byte) {
	defer func() {
		if r := recover(); r != nil {
			s.m.panics.Inc()
			s.log.Error("panic answering query", "panic", r, "remote", from.String())
			m := new(dns.Msg)
			m.SetRcode(req, dns.RcodeServerFailure)
			out, _ = m.PackBuffer(buf)
		}
	}()
	k, code := s.verifyTSIG(wire, t)
	if code != 0 {
		s.m.rcode(dns.RcodeNotAuth)
		return tsigRejectWire(req, t, code, buf)
	}
	m, _ := s.handle(req, from, tcp)
	s.m.rcode(m.Rcode)
	if !tcp {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = min(max(int(opt.UDPSize()), dns.MinMsgSize), s.cfg.MaxUDPSize)
		}
		m.Truncate(size - len(k.name) - len(k.alg) - 64)
	}
	m.SetTsig(k.name, k.alg, tsigFudge, s.deps.Now().Unix())
	out, _, err := dns.TsigGenerate(m, k.secret, t.MAC, false)
	if err != nil {
		s.log.Debug("tsig sign", "err", err)
		return nil
	}
	return out
}

// formErr answers an unparsable query with its header only: same ID and
// opcode, QR set, RCODE FORMERR, no records.
func formErr(wire, buf []byte) []byte {
	out := append(buf[:0], wire[:12]...)
	out[2] = 0x80 | wire[2]&0x79 // QR, keep opcode and RD
	out[3] = dns.RcodeFormatError
	for i := 4; i < 12; i++ {
		out[i] = 0
	}
	return out
}

// Handle answers a parsed query (not a transfer). It is the server's
// semantics, independent of the transport; Respond adds truncation. A
// TSIG in req is taken as verified (Respond checks it first).
func (s *Server) Handle(req *dns.Msg, from netip.AddrPort, tcp bool) *dns.Msg {
	m, _ := s.handle(req, from, tcp)
	return m
}

func (s *Server) handle(req *dns.Msg, from netip.AddrPort, tcp bool) (*dns.Msg, bool) {
	if s.beforeAnswer != nil {
		s.beforeAnswer(req)
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionDesired = req.RecursionDesired
	if len(req.Question) != 1 {
		m.Question = nil
		m.Rcode = dns.RcodeFormatError
		return m, false
	}
	opt, nopt := findOPT(req)
	if nopt > 1 {
		m.Rcode = dns.RcodeFormatError
		return m, false
	}
	do := false
	if opt != nil {
		do = opt.Do()
		ro := s.replyOPT(opt, do)
		m.Extra = append(m.Extra, ro)
		if opt.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			return m, false
		}
		if !s.options(opt, ro, from) {
			m.Rcode = dns.RcodeFormatError
			return m, false
		}
	}
	switch req.Opcode {
	case dns.OpcodeQuery:
	case dns.OpcodeNotify:
		s.notified(req, from, m)
		return m, false
	default:
		m.Rcode = dns.RcodeNotImplemented
		return m, false
	}
	q := req.Question[0]
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		m.Rcode = dns.RcodeRefused
		return m, false
	}
	switch q.Qtype {
	case dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY, 0:
		m.Rcode = dns.RcodeFormatError
		return m, false
	case dns.TypeAXFR, dns.TypeIXFR:
		// Transfers go over TCP (serveTCP); over UDP, AXFR is refused and
		// IXFR gets TC so the client retries over TCP.
		if q.Qtype == dns.TypeIXFR && !tcp {
			m.Truncated = true
			return m, false
		}
		m.Rcode = dns.RcodeFormatError
		return m, false
	case dns.TypeMAILA, dns.TypeMAILB:
		m.Rcode = dns.RcodeNotImplemented
		return m, false
	}
	key := zone.Key(q.Name)
	z := s.zones.Load().find(key, q.Qtype)
	if z == nil {
		m.Rcode = dns.RcodeRefused
		return m, false
	}
	// The OPT record goes last: take it off while sections fill.
	extra := m.Extra
	m.Extra = nil
	l := lookup{z: z, m: m, do: do && z.Signed(), rotate: &s.rotate}
	l.run(q)
	m.Extra = append(m.Extra, extra...)
	return m, !l.rotated && (opt == nil || len(opt.Option) == 0)
}

func findOPT(m *dns.Msg) (*dns.OPT, int) {
	var opt *dns.OPT
	n := 0
	for _, rr := range m.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			if opt == nil {
				opt = o
			}
			n++
		}
	}
	return opt, n
}

func (s *Server) replyOPT(req *dns.OPT, do bool) *dns.OPT {
	o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	o.SetUDPSize(uint16(s.cfg.MaxUDPSize))
	if do {
		o.SetDo()
	}
	return o
}

// options handles the query's EDNS options, adding NSID and the cookie
// to ro. It returns false for a malformed cookie (FORMERR).
func (s *Server) options(opt, ro *dns.OPT, from netip.AddrPort) bool {
	for _, o := range opt.Option {
		switch o := o.(type) {
		case *dns.EDNS0_NSID:
			if s.cfg.NSID != "" {
				ro.Option = append(ro.Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: hex.EncodeToString([]byte(s.cfg.NSID))})
			}
		case *dns.EDNS0_COOKIE:
			raw, err := hex.DecodeString(o.Cookie)
			if err != nil || len(raw) < 8 || (len(raw) > 8 && len(raw) < 16) || len(raw) > 40 {
				return false
			}
			ro.Option = append(ro.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: hex.EncodeToString(s.serverCookie(raw[:8], from))})
		}
	}
	return true
}

// serverCookie returns the client cookie followed by an RFC 9018 server
// cookie: version 1, three reserved bytes, a timestamp and an 8-byte MAC
// over the client cookie, the header and the client's address.
func (s *Server) serverCookie(client []byte, from netip.AddrPort) []byte {
	out := make([]byte, 0, 24)
	out = append(out, client...)
	out = append(out, 1, 0, 0, 0)
	out = binary.BigEndian.AppendUint32(out, uint32(s.deps.Now().Unix()))
	mac := hmac.New(sha256.New, s.secret[:])
	mac.Write(out)
	ip := from.Addr().As16()
	mac.Write(ip[:])
	return mac.Sum(out)[:24]
}

func (s *Server) serveTCP(w dns.ResponseWriter, req *dns.Msg) {
	s.m.tcpQueries.Inc()
	from, _ := netip.ParseAddrPort(w.RemoteAddr().String())
	if t := req.IsTsig(); t != nil {
		// miekg/dns checked the MAC on the wire bytes (TsigSecret).
		if err := w.TsigStatus(); err != nil {
			code := dns.RcodeBadSig
			if _, ok := s.tsig[strings.ToLower(t.Hdr.Name)]; !ok {
				code = dns.RcodeBadKey
			} else if errors.Is(err, dns.ErrTime) {
				code = dns.RcodeBadTime
			}
			s.log.Info("tsig check failed", "remote", from.String(), "key", t.Hdr.Name, "err", err)
			w.Write(tsigRejectWire(req, t, code, nil))
			return
		}
	}
	if len(req.Question) == 1 && (req.Question[0].Qtype == dns.TypeAXFR || req.Question[0].Qtype == dns.TypeIXFR) && req.Opcode == dns.OpcodeQuery {
		if s.deps.Trace.Enabled() {
			s.deps.Trace.Publish(trace.Event{From: from.String(), To: s.local, Proto: "dns/tcp", Summary: Summary(req), Bytes: req.Len()})
		}
		s.transfer(w, req, from)
		return
	}
	if t := req.IsTsig(); t != nil {
		m := s.Handle(req, from, true)
		m.Compress = true
		m.SetTsig(t.Hdr.Name, t.Algorithm, tsigFudge, s.deps.Now().Unix())
		if err := w.WriteMsg(m); err != nil {
			s.log.Debug("tcp write", "remote", from.String(), "err", err)
		}
		return
	}
	wire, err := req.Pack()
	if err != nil {
		m := new(dns.Msg)
		m.SetRcodeFormatError(req)
		w.WriteMsg(m)
		return
	}
	out := s.Respond(wire, from, true, make([]byte, 0, 4096))
	if out == nil {
		return
	}
	if _, err := w.Write(out); err != nil {
		s.log.Debug("tcp write", "remote", from.String(), "err", err)
		return
	}
	if s.deps.Trace.Enabled() {
		s.traceMsg(s.local, from.String(), "dns/tcp", out)
	}
}

// limitListener caps concurrent connections; extra ones wait in Accept.
type limitListener struct {
	net.Listener
	sem chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// soReusePort is SO_REUSEPORT on Linux (the syscall package lacks it).
const soReusePort = 0xf
