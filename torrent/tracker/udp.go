package tracker

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// BEP 15 constants.
const (
	udpProtocolID  = 0x41727101980
	actionConnect  = 0
	actionAnnounce = 1
	actionScrape   = 2
	actionError    = 3

	// ConnIDLifetime is how long a connection id is accepted at least: ids
	// are minted per minute and the current and previous minute's are
	// valid, so an id lives between 1 and 2 minutes (BEP 15 has clients
	// use one for a minute and servers accept it for two).
	ConnIDLifetime = time.Minute

	// maxUDPScrape is the most info-hashes in one UDP scrape (BEP 15: about
	// 74 fit a datagram).
	maxUDPScrape = 74
)

// connIDs mints and checks BEP 15 connection ids without keeping state:
// an id is an HMAC of the client's address and the minute it was issued.
type connIDs struct {
	key []byte
}

func (c connIDs) mint(from netip.AddrPort, now time.Time) uint64 {
	return c.at(from, now.Unix()/int64(ConnIDLifetime/time.Second))
}

func (c connIDs) at(from netip.AddrPort, epoch int64) uint64 {
	m := hmac.New(sha256.New, c.key)
	b, _ := from.MarshalBinary()
	m.Write(b)
	var e [8]byte
	binary.BigEndian.PutUint64(e[:], uint64(epoch))
	m.Write(e[:])
	return binary.BigEndian.Uint64(m.Sum(nil))
}

func (c connIDs) valid(id uint64, from netip.AddrPort, now time.Time) bool {
	epoch := now.Unix() / int64(ConnIDLifetime/time.Second)
	return id == c.at(from, epoch) || id == c.at(from, epoch-1)
}

// UDPRequest is a parsed BEP 15 request.
type UDPRequest struct {
	Action        uint32
	TransactionID uint32
	ConnectionID  uint64
	Announce      AnnounceRequest // for actionAnnounce
	Hashes        []InfoHash      // for actionScrape
}

// errUDPIgnore marks a datagram not worth an answer (too short to carry a
// transaction id, or not a tracker request at all).
var errUDPIgnore = errors.New("not a tracker request")

// ParseUDPRequest parses one BEP 15 datagram from the client at from. The
// announce's address is from's IP (the ip field is honoured only when
// trustIP is set) with the port field.
func ParseUDPRequest(b []byte, from netip.AddrPort, trustIP bool) (UDPRequest, error) {
	var r UDPRequest
	if len(b) < 16 {
		return r, errUDPIgnore
	}
	r.ConnectionID = binary.BigEndian.Uint64(b[0:])
	r.Action = binary.BigEndian.Uint32(b[8:])
	r.TransactionID = binary.BigEndian.Uint32(b[12:])
	switch r.Action {
	case actionConnect:
		if r.ConnectionID != udpProtocolID {
			return r, errUDPIgnore
		}
		return r, nil
	case actionAnnounce:
		if len(b) < 98 {
			return r, fmt.Errorf("announce of %d bytes, want 98", len(b))
		}
		a := &r.Announce
		copy(a.InfoHash[:], b[16:36])
		copy(a.PeerID[:], b[36:56])
		a.Downloaded = int64(binary.BigEndian.Uint64(b[56:]))
		a.Left = int64(binary.BigEndian.Uint64(b[64:]))
		a.Uploaded = int64(binary.BigEndian.Uint64(b[72:]))
		if a.Downloaded < 0 || a.Left < 0 || a.Uploaded < 0 {
			return r, errors.New("byte counts out of range")
		}
		ev := binary.BigEndian.Uint32(b[80:])
		if ev > uint32(EventStopped) {
			return r, fmt.Errorf("unknown event %d", ev)
		}
		a.Event = Event(ev)
		ip := from.Addr().Unmap()
		if trustIP && ip.Is4() {
			if x := netip.AddrFrom4([4]byte(b[84:88])); !x.IsUnspecified() {
				ip = x
			}
		}
		// key (b[88:92]) is not used: peers are told apart by peer id.
		a.NumWant = int(int32(binary.BigEndian.Uint32(b[92:])))
		if a.NumWant < -1 {
			a.NumWant = -1
		}
		port := binary.BigEndian.Uint16(b[96:])
		if port == 0 {
			return r, errors.New("port 0")
		}
		a.Addr = netip.AddrPortFrom(ip, port)
		return r, nil
	case actionScrape:
		n := (len(b) - 16) / 20
		if n == 0 || (len(b)-16)%20 != 0 {
			return r, errors.New("scrape carries no whole info-hash")
		}
		if n > maxUDPScrape {
			return r, fmt.Errorf("scrape of %d info-hashes, limit %d", n, maxUDPScrape)
		}
		for i := range n {
			var h InfoHash
			copy(h[:], b[16+20*i:])
			r.Hashes = append(r.Hashes, h)
		}
		return r, nil
	}
	return r, fmt.Errorf("unknown action %d", r.Action)
}

func udpConnectReply(tid uint32, cid uint64) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint32(b[0:], actionConnect)
	binary.BigEndian.PutUint32(b[4:], tid)
	binary.BigEndian.PutUint64(b[8:], cid)
	return b
}

// udpAnnounceReply lists peers of the request's address family only: BEP
// 15 gives 6-byte entries over IPv4 and 18-byte ones over IPv6.
func udpAnnounceReply(tid uint32, r AnnounceResult, v6 bool) []byte {
	b := make([]byte, 20, 20+18*len(r.Peers))
	binary.BigEndian.PutUint32(b[0:], actionAnnounce)
	binary.BigEndian.PutUint32(b[4:], tid)
	binary.BigEndian.PutUint32(b[8:], uint32(r.Interval/time.Second))
	binary.BigEndian.PutUint32(b[12:], uint32(r.Leechers))
	binary.BigEndian.PutUint32(b[16:], uint32(r.Seeders))
	for _, p := range r.Peers {
		if p.Addr.Addr().Is6() == v6 {
			b = appendCompact(b, p.Addr)
		}
	}
	return b
}

func udpScrapeReply(tid uint32, hashes []InfoHash, res map[InfoHash]ScrapeResult) []byte {
	b := make([]byte, 8, 8+12*len(hashes))
	binary.BigEndian.PutUint32(b[0:], actionScrape)
	binary.BigEndian.PutUint32(b[4:], tid)
	for _, h := range hashes {
		r := res[h]
		b = binary.BigEndian.AppendUint32(b, uint32(r.Complete))
		b = binary.BigEndian.AppendUint32(b, uint32(r.Downloaded))
		b = binary.BigEndian.AppendUint32(b, uint32(r.Incomplete))
	}
	return b
}

func udpErrorReply(tid uint32, msg string) []byte {
	b := make([]byte, 8, 8+len(msg))
	binary.BigEndian.PutUint32(b[0:], actionError)
	binary.BigEndian.PutUint32(b[4:], tid)
	return append(b, msg...)
}
