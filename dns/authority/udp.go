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
		now := s.deps.Now()
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
			resp := s.cache.get(zs, q, outBufs[i], now)
			if resp == nil || tracing {
				var cacheable bool
				resp, cacheable = s.respond(q, from, false, outBufs[i])
				if resp == nil {
					continue
				}
				if cacheable {
					s.cache.put(zs, q, resp, now)
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
