package authority

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// RateLimitConfig is response rate limiting (RRL) for UDP answers, as NSD
// (rrl-ratelimit, rrl-slip) and Knot (rate-limit, rate-limit-slip) do it:
// a spoofed flood cannot turn the server into an amplifier. Answers are
// counted per second per client network (IPv4 /24, IPv6 /56) and per kind
// of answer: the name and type for a positive answer, the zone for
// NXDOMAIN, NODATA, referrals and errors (so a random-name flood shares
// one budget). Over the rate, answers are dropped, but every slip-th is
// sent truncated (TC, no records) so that a real client behind a spoofed
// address retries over TCP, which is never limited.
type RateLimitConfig struct {
	// Rate is answers per second per client network and kind. 0 means
	// 200 (NSD's default); a negative value turns RRL off.
	Rate int `json:"rate,omitempty"`
	// Slip sends every slip-th limited answer truncated instead of
	// dropping it. 0 means 2 (NSD's default); 1 truncates every limited
	// answer (Knot's default); a negative value drops them all.
	Slip int `json:"slip,omitempty"`
	// Loopback also limits clients on 127.0.0.0/8 and ::1. Off by
	// default: the lab and local benchmarks query from loopback.
	Loopback bool `json:"loopback,omitempty"`
}

func (c RateLimitConfig) rate() int {
	if c.Rate == 0 {
		return 200
	}
	return c.Rate
}

func (c RateLimitConfig) slip() int {
	if c.Slip == 0 {
		return 2
	}
	return c.Slip
}

// rrlSlots is the size of the bucket table (fixed memory: a flood of
// sources cannot grow it; distinct keys that collide share a bucket, as
// in NSD's table).
const rrlSlots = 1 << 16

type rrlBucket struct {
	key     uint64
	second  int64
	count   int32
	limited int32
}

// rrl is the limiter; nil when off.
type rrl struct {
	rate, slip int
	loopback   bool
	now        func() time.Time
	seed       maphash.Seed
	mu         [64]sync.Mutex
	slots      []rrlBucket
	actions    *prometheus.CounterVec
	dropped    prometheus.Counter
	slipped    prometheus.Counter
}

func newRRL(c RateLimitConfig, now func() time.Time, reg prometheus.Registerer) (*rrl, error) {
	if c.rate() < 0 {
		return nil, nil
	}
	r := &rrl{rate: c.rate(), slip: c.slip(), loopback: c.Loopback, now: now, seed: maphash.MakeSeed(), slots: make([]rrlBucket, rrlSlots)}
	r.actions = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "applayer", Subsystem: "dns_authority", Name: "rrl_limited_total",
		Help: "UDP answers over the response rate limit, by what was done (dropped, or sent truncated: slip)."}, []string{"action"})
	r.dropped, r.slipped = r.actions.WithLabelValues("drop"), r.actions.WithLabelValues("slip")
	if err := reg.Register(r.actions); err != nil {
		return nil, fmt.Errorf("authority: metrics: %w", err)
	}
	return r, nil
}

// rrlAction is what to do with a UDP answer.
type rrlAction int

const (
	rrlSend rrlAction = iota
	rrlDrop
	rrlSlip
)

// check counts resp (a packed UDP answer to from) and says whether to
// send it, drop it, or send it truncated. zones finds the zone of a
// negative answer.
func (r *rrl) check(from netip.Addr, resp []byte, zones *zoneSet) rrlAction {
	if r == nil || len(resp) < 12 {
		return rrlSend
	}
	from = from.Unmap()
	if from.IsLoopback() && !r.loopback {
		return rrlSend
	}
	var h maphash.Hash
	h.SetSeed(r.seed)
	if from.Is4() {
		p, _ := from.Prefix(24)
		b := p.Addr().As4()
		h.Write(b[:])
	} else {
		p, _ := from.Prefix(56)
		b := p.Addr().As16()
		h.Write(b[:])
	}
	r.kind(&h, resp, zones)
	key := h.Sum64()
	now := r.now().Unix()
	slot := key % rrlSlots
	mu := &r.mu[slot%uint64(len(r.mu))]
	mu.Lock()
	b := &r.slots[slot]
	if b.key != key || b.second != now {
		if b.key != key {
			b.limited = 0
		}
		b.key, b.second, b.count = key, now, 0
	}
	b.count++
	over := int(b.count) > r.rate
	limited := int32(0)
	if over {
		b.limited++
		limited = b.limited
	}
	mu.Unlock()
	if !over {
		return rrlSend
	}
	if r.slip > 0 && int(limited)%r.slip == 0 {
		r.slipped.Inc()
		return rrlSlip
	}
	r.dropped.Inc()
	return rrlDrop
}

// kind hashes what the answer is about: the question's name and type for
// a positive answer, the zone (the longest origin served that holds the
// name) and the rcode for the rest.
func (r *rrl) kind(h *maphash.Hash, resp []byte, zones *zoneSet) {
	rcode := resp[3] & 0xf
	ancount := binary.BigEndian.Uint16(resp[6:])
	aa := resp[2]&0x04 != 0
	name, off, err := dns.UnpackDomainName(resp, 12)
	if err != nil || off+4 > len(resp) {
		h.WriteByte(0xff)
		return
	}
	name = strings.ToLower(name)
	if rcode == dns.RcodeSuccess && ancount > 0 {
		h.WriteByte(1)
		h.WriteString(name)
		h.Write(resp[off : off+2])
		return
	}
	h.WriteByte(2 + rcode)
	if !aa {
		h.WriteByte(0x80) // referral
	}
	if zones != nil {
		for n := name; ; {
			if _, ok := zones.zones[n]; ok {
				h.WriteString(n)
				return
			}
			i := strings.IndexByte(n, '.')
			if i < 0 || n == "." {
				break
			}
			n = n[i+1:]
			if n == "" {
				n = "."
			}
		}
	}
	h.WriteString(".")
}

// slipReply turns resp into a truncated answer in place: header and
// question only, TC set.
func slipReply(resp []byte) []byte {
	_, off, err := dns.UnpackDomainName(resp, 12)
	if err != nil || off+4 > len(resp) || binary.BigEndian.Uint16(resp[4:]) != 1 {
		resp = resp[:12]
		binary.BigEndian.PutUint16(resp[4:], 0)
	} else {
		resp = resp[:off+4]
	}
	resp[2] |= 0x02 // TC
	for i := 6; i < 12; i++ {
		resp[i] = 0
	}
	return resp
}

// limit applies response rate limiting to a UDP answer to from: it
// returns resp, resp truncated in place (slip), or nil (drop).
func (s *Server) limit(from netip.Addr, resp []byte, zones *zoneSet) []byte {
	switch s.rrl.check(from, resp, zones) {
	case rrlDrop:
		return nil
	case rrlSlip:
		return slipReply(resp)
	}
	return resp
}
