package authority

import (
	"github.com/applayer/applayer/dns/internal/udpbatch"
)

// serveRaw answers datagrams on r (the Linux fast path, see package
// udpbatch) until stop is closed.
func (s *Server) serveRaw(r *udpbatch.Sock, local string) {
	defer s.wg.Done()
	defer r.Close()
	var cache answerCache
	b := udpbatch.NewBatch()
	outBuf := make([][]byte, udpbatch.Size)
	for i := range outBuf {
		outBuf[i] = make([]byte, 0, s.cfg.MaxUDPSize)
	}
	for {
		n := b.Recv(r)
		select {
		case <-s.stop:
			return
		default:
		}
		if n == 0 {
			continue // EINTR, or a shutdown racing a late packet
		}
		zs := s.zones.Load()
		tracing := s.deps.Trace.Enabled()
		s.m.udpQueries.Add(float64(n))
		for i := 0; i < n; i++ {
			q, cut := b.Datagram(i)
			if cut && len(q) >= 12 {
				// Cut: the header alone says FORMERR.
				q = q[:12]
			}
			resp := cache.get(zs, q, outBuf[i])
			if resp == nil || tracing {
				from, ok := b.From(i)
				if !ok {
					continue
				}
				var cacheable bool
				resp, cacheable = s.respond(q, from, false, outBuf[i])
				if resp == nil {
					continue
				}
				if cacheable {
					cache.put(zs, q, resp)
				}
				if tracing {
					s.traceMsg(local, from.String(), "dns/udp", resp)
				}
			} else {
				s.m.rcode(int(resp[3] & 0xf))
			}
			if len(resp) == 0 {
				continue
			}
			if s.rrl != nil {
				if from, ok := b.From(i); ok {
					if resp = s.limit(from.Addr(), resp, zs); resp == nil {
						continue
					}
				}
			}
			outBuf[i] = resp[:0]
			b.Reply(i, resp)
		}
		b.Send(r)
	}
}
