package tracker

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/applayer/applayer/torrent/bencode"
)

// MaxQuery is the longest announce or scrape query string accepted.
const MaxQuery = 4096

// httpAnnounce is a parsed HTTP announce with the response options.
type httpAnnounce struct {
	AnnounceRequest
	Compact  bool
	NoPeerID bool
}

// ParseAnnounceQuery parses the query string of an HTTP announce (BEP 3).
// remote is the address the request came from; the announced address is
// remote's IP with the port parameter, unless trustIP is set and the
// request names an ip. compact (BEP 23) defaults to on.
func ParseAnnounceQuery(rawQuery string, remote netip.Addr, trustIP bool) (req AnnounceRequest, compact, noPeerID bool, err error) {
	a, err := parseAnnounce(rawQuery, remote, trustIP)
	return a.AnnounceRequest, a.Compact, a.NoPeerID, err
}

func parseAnnounce(rawQuery string, remote netip.Addr, trustIP bool) (httpAnnounce, error) {
	var a httpAnnounce
	if len(rawQuery) > MaxQuery {
		return a, errors.New("query too long")
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return a, fmt.Errorf("bad query: %w", err)
	}
	one := func(k string) (string, bool, error) {
		v := q[k]
		switch len(v) {
		case 0:
			return "", false, nil
		case 1:
			return v[0], true, nil
		}
		return "", false, fmt.Errorf("%s given more than once", k)
	}
	ih, ok, err := one("info_hash")
	if err != nil {
		return a, err
	}
	if !ok || len(ih) != 20 {
		return a, errors.New("info_hash must be 20 bytes")
	}
	copy(a.InfoHash[:], ih)
	pid, ok, err := one("peer_id")
	if err != nil {
		return a, err
	}
	if !ok || len(pid) != 20 {
		return a, errors.New("peer_id must be 20 bytes")
	}
	copy(a.PeerID[:], pid)
	num := func(k string, required bool, lo, hi int64) (int64, error) {
		s, ok, err := one(k)
		if err != nil {
			return 0, err
		}
		if !ok {
			if required {
				return 0, fmt.Errorf("%s is missing", k)
			}
			return -1, nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < lo || n > hi {
			return 0, fmt.Errorf("%s %q is not a number in [%d, %d]", k, s, lo, hi)
		}
		return n, nil
	}
	port, err := num("port", true, 1, 65535)
	if err != nil {
		return a, err
	}
	// Transmission announces left=2^63-1 while it fetches a magnet
	// link's metadata: any non-negative int64 is accepted.
	const maxBytes = math.MaxInt64
	if a.Uploaded, err = num("uploaded", false, 0, maxBytes); err != nil {
		return a, err
	}
	if a.Downloaded, err = num("downloaded", false, 0, maxBytes); err != nil {
		return a, err
	}
	if a.Left, err = num("left", false, 0, maxBytes); err != nil {
		return a, err
	}
	a.Uploaded, a.Downloaded = max(a.Uploaded, 0), max(a.Downloaded, 0)
	if a.Left < 0 {
		return a, errors.New("left is missing")
	}
	nw, err := num("numwant", false, 0, 1<<20)
	if err != nil {
		return a, err
	}
	a.NumWant = int(nw)
	ev, _, err := one("event")
	if err != nil {
		return a, err
	}
	switch ev {
	case "", "empty", "paused":
		a.Event = EventNone
	case "started":
		a.Event = EventStarted
	case "completed":
		a.Event = EventCompleted
	case "stopped":
		a.Event = EventStopped
	default:
		return a, fmt.Errorf("unknown event %q", ev)
	}
	c, _, err := one("compact")
	if err != nil {
		return a, err
	}
	a.Compact = c != "0"
	npi, _, _ := one("no_peer_id")
	a.NoPeerID = npi == "1"
	ip := remote.Unmap()
	if s, ok, err := one("ip"); err != nil {
		return a, err
	} else if ok && trustIP {
		p, err := netip.ParseAddr(s)
		if err != nil {
			return a, fmt.Errorf("ip %q is not an address", s)
		}
		ip = p.Unmap()
	}
	if !ip.IsValid() {
		return a, errors.New("no address for the peer")
	}
	a.Addr = netip.AddrPortFrom(ip, uint16(port))
	return a, nil
}

// ParseScrapeQuery returns the info-hashes of an HTTP scrape; none means
// every torrent (a full scrape).
func ParseScrapeQuery(rawQuery string, max int) ([]InfoHash, error) {
	if len(rawQuery) > MaxQuery*4 {
		return nil, errors.New("query too long")
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, fmt.Errorf("bad query: %w", err)
	}
	var out []InfoHash
	for _, s := range q["info_hash"] {
		if len(s) != 20 {
			return nil, errors.New("info_hash must be 20 bytes")
		}
		if len(out) >= max {
			return nil, fmt.Errorf("more than %d info-hashes", max)
		}
		var h InfoHash
		copy(h[:], s)
		out = append(out, h)
	}
	return out, nil
}

// encodeAnnounce builds the bencoded HTTP announce response.
func encodeAnnounce(r AnnounceResult, compact, noPeerID bool) []byte {
	d := map[string]bencode.Value{
		"interval":     bencode.Int(int64(r.Interval / time.Second)),
		"min interval": bencode.Int(int64(r.MinInterval / time.Second)),
		"complete":     bencode.Int(int64(r.Seeders)),
		"incomplete":   bencode.Int(int64(r.Leechers)),
	}
	if compact {
		var v4, v6 []byte
		for _, p := range r.Peers {
			if p.Addr.Addr().Is4() {
				v4 = appendCompact(v4, p.Addr)
			} else {
				v6 = appendCompact(v6, p.Addr)
			}
		}
		d["peers"] = bencode.Bytes(nonNil(v4))
		if len(v6) > 0 {
			d["peers6"] = bencode.Bytes(v6)
		}
	} else {
		var l []bencode.Value
		for _, p := range r.Peers {
			pd := map[string]bencode.Value{
				"ip":   bencode.String(p.Addr.Addr().String()),
				"port": bencode.Int(int64(p.Addr.Port())),
			}
			if !noPeerID {
				pd["peer id"] = bencode.Bytes(append([]byte(nil), p.ID[:]...))
			}
			l = append(l, bencode.Dict(pd))
		}
		d["peers"] = bencode.List(l...)
	}
	return bencode.MustEncode(bencode.Dict(d))
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// appendCompact appends a peer in compact form: 4 or 16 address bytes and
// the port, big-endian (BEP 23, BEP 7).
func appendCompact(b []byte, ap netip.AddrPort) []byte {
	b = append(b, ap.Addr().AsSlice()...)
	return append(b, byte(ap.Port()>>8), byte(ap.Port()))
}

func encodeScrape(res map[InfoHash]ScrapeResult) []byte {
	files := map[string]bencode.Value{}
	for h, r := range res {
		files[string(h[:])] = bencode.Dict(map[string]bencode.Value{
			"complete":   bencode.Int(int64(r.Complete)),
			"incomplete": bencode.Int(int64(r.Incomplete)),
			"downloaded": bencode.Int(int64(r.Downloaded)),
		})
	}
	return bencode.MustEncode(bencode.Dict(map[string]bencode.Value{"files": bencode.Dict(files)}))
}

// encodeFailure is the HTTP tracker's error: a 200 with failure reason.
func encodeFailure(reason string) []byte {
	return bencode.MustEncode(bencode.Dict(map[string]bencode.Value{"failure reason": bencode.String(reason)}))
}

// remoteAddr reads the client's IP from an http.Request.
func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
