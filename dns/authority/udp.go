package authority

import (
	"errors"
	"net"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

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
			if resp = s.limit(from.Addr(), resp, zs); resp == nil {
				continue
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
