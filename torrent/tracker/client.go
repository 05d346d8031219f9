package tracker

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/applayer/applayer/torrent/bencode"
)

// Client announces to HTTP and UDP trackers. The zero value works; set
// LocalAddr so the tracker sees the address the peer listens on.
type Client struct {
	// LocalAddr, when valid, is the source address of every request.
	LocalAddr netip.Addr
	// Timeout bounds one announce or scrape. Default 15s.
	Timeout time.Duration
	// Now is the clock (connection-id reuse). Default time.Now.
	Now func() time.Time

	mu      sync.Mutex
	http    *http.Client
	connIDs map[string]cachedConnID
}

type cachedConnID struct {
	id  uint64
	got time.Time
}

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return 15 * time.Second
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) httpClient() *http.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.http == nil {
		d := &net.Dialer{Timeout: c.timeout()}
		if c.LocalAddr.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: c.LocalAddr.AsSlice()}
		}
		c.http = &http.Client{
			Timeout:   c.timeout(),
			Transport: &http.Transport{DialContext: d.DialContext, Proxy: nil, MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return errors.New("tracker: redirects are not followed")
			},
		}
	}
	return c.http
}

// Close releases idle connections.
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.http != nil {
		c.http.CloseIdleConnections()
	}
}

// Announce sends req to the tracker at announceURL (http, https or udp).
// req.Addr's port is the port announced; its address is sent as ip only
// for HTTP when it is valid.
func (c *Client) Announce(ctx context.Context, announceURL string, req AnnounceRequest) (AnnounceResult, error) {
	u, err := url.Parse(announceURL)
	if err != nil {
		return AnnounceResult{}, fmt.Errorf("tracker: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	switch u.Scheme {
	case "http", "https":
		return c.announceHTTP(ctx, u, req)
	case "udp":
		return c.announceUDP(ctx, u, req)
	}
	return AnnounceResult{}, fmt.Errorf("tracker: unsupported scheme %q", u.Scheme)
}

func (c *Client) announceHTTP(ctx context.Context, u *url.URL, req AnnounceRequest) (AnnounceResult, error) {
	q := "info_hash=" + url.QueryEscape(string(req.InfoHash[:])) +
		"&peer_id=" + url.QueryEscape(string(req.PeerID[:])) +
		"&port=" + strconv.Itoa(int(req.Addr.Port())) +
		"&uploaded=" + strconv.FormatInt(req.Uploaded, 10) +
		"&downloaded=" + strconv.FormatInt(req.Downloaded, 10) +
		"&left=" + strconv.FormatInt(req.Left, 10) +
		"&compact=1"
	if req.Event != EventNone {
		q += "&event=" + req.Event.String()
	}
	if req.NumWant >= 0 {
		q += "&numwant=" + strconv.Itoa(req.NumWant)
	}
	if req.Addr.Addr().IsValid() && !req.Addr.Addr().IsUnspecified() {
		q += "&ip=" + req.Addr.Addr().String()
	}
	full := u.String()
	if u.RawQuery != "" {
		full += "&" + q
	} else {
		full += "?" + q
	}
	body, err := c.get(ctx, full)
	if err != nil {
		return AnnounceResult{}, err
	}
	return ParseAnnounceResponse(body)
}

func (c *Client) get(ctx context.Context, u string) ([]byte, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("tracker: %w", err)
	}
	resp, err := c.httpClient().Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("tracker: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("tracker: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("tracker: HTTP %s", resp.Status)
	}
	return body, nil
}

// ParseAnnounceResponse reads an HTTP tracker's bencoded answer: a failure
// reason becomes an error; peers may be compact (BEP 23) or a list of
// dictionaries, and peers6 (BEP 7) adds IPv6 peers.
func ParseAnnounceResponse(body []byte) (AnnounceResult, error) {
	var r AnnounceResult
	v, err := bencode.Decode(body, bencode.Limits{MaxSize: 1 << 20})
	if err != nil {
		return r, fmt.Errorf("tracker: announce response: %w", err)
	}
	if v.Kind != bencode.KindDict {
		return r, errors.New("tracker: announce response is not a dictionary")
	}
	if f, ok := v.GetString("failure reason"); ok {
		return r, fmt.Errorf("tracker: refused: %s", f)
	}
	iv, ok := v.GetInt("interval")
	if !ok || iv < 0 || iv > 1<<31 {
		return r, errors.New("tracker: announce response has no valid interval")
	}
	r.Interval = time.Duration(iv) * time.Second
	if mi, ok := v.GetInt("min interval"); ok && mi >= 0 && mi < 1<<31 {
		r.MinInterval = time.Duration(mi) * time.Second
	}
	if n, ok := v.GetInt("complete"); ok && n >= 0 && n < 1<<31 {
		r.Seeders = int(n)
	}
	if n, ok := v.GetInt("incomplete"); ok && n >= 0 && n < 1<<31 {
		r.Leechers = int(n)
	}
	if p, ok := v.Get("peers"); ok {
		switch p.Kind {
		case bencode.KindString:
			peers, err := parseCompact(p.Str, 4)
			if err != nil {
				return r, err
			}
			r.Peers = append(r.Peers, peers...)
		case bencode.KindList:
			for _, e := range p.List {
				ip, _ := e.GetString("ip")
				port, ok := e.GetInt("port")
				a, err := netip.ParseAddr(ip)
				if err != nil || !ok || port <= 0 || port > 65535 {
					continue // a name or junk: skip the entry
				}
				var pr Peer
				if id, ok := e.GetString("peer id"); ok && len(id) == 20 {
					copy(pr.ID[:], id)
				}
				pr.Addr = netip.AddrPortFrom(a.Unmap(), uint16(port))
				r.Peers = append(r.Peers, pr)
			}
		default:
			return r, errors.New("tracker: peers is neither a string nor a list")
		}
	}
	if p, ok := v.Get("peers6"); ok && p.Kind == bencode.KindString {
		peers, err := parseCompact(p.Str, 16)
		if err != nil {
			return r, err
		}
		r.Peers = append(r.Peers, peers...)
	}
	return r, nil
}

func parseCompact(b []byte, alen int) ([]Peer, error) {
	n := alen + 2
	if len(b)%n != 0 {
		return nil, fmt.Errorf("tracker: compact peers of %d bytes is not a multiple of %d", len(b), n)
	}
	out := make([]Peer, 0, len(b)/n)
	for i := 0; i < len(b); i += n {
		a, _ := netip.AddrFromSlice(b[i : i+alen])
		port := binary.BigEndian.Uint16(b[i+alen:])
		if port == 0 {
			continue
		}
		out = append(out, Peer{Addr: netip.AddrPortFrom(a.Unmap(), port)})
	}
	return out, nil
}

// Scrape asks the tracker for the counts of hashes. For HTTP the scrape
// URL is derived from the announce URL as BEP 48 says (the last path
// element "announce" becomes "scrape").
func (c *Client) Scrape(ctx context.Context, announceURL string, hashes []InfoHash) (map[InfoHash]ScrapeResult, error) {
	u, err := url.Parse(announceURL)
	if err != nil {
		return nil, fmt.Errorf("tracker: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	switch u.Scheme {
	case "http", "https":
		i := strings.LastIndex(u.Path, "/")
		if !strings.HasPrefix(u.Path[i+1:], "announce") {
			return nil, fmt.Errorf("tracker: %s does not support scrape", announceURL)
		}
		u.Path = u.Path[:i+1] + "scrape" + u.Path[i+1+len("announce"):]
		var q []string
		for _, h := range hashes {
			q = append(q, "info_hash="+url.QueryEscape(string(h[:])))
		}
		u.RawQuery = strings.Join(q, "&")
		body, err := c.get(ctx, u.String())
		if err != nil {
			return nil, err
		}
		return ParseScrapeResponse(body)
	case "udp":
		b := make([]byte, 0, 20*len(hashes))
		for _, h := range hashes {
			b = append(b, h[:]...)
		}
		resp, err := c.udpRoundTrip(ctx, u, actionScrape, b)
		if err != nil {
			return nil, err
		}
		if len(resp) < 12*len(hashes) {
			return nil, errors.New("tracker: short udp scrape reply")
		}
		out := map[InfoHash]ScrapeResult{}
		for i, h := range hashes {
			out[h] = ScrapeResult{
				Complete:   int(binary.BigEndian.Uint32(resp[12*i:])),
				Downloaded: int(binary.BigEndian.Uint32(resp[12*i+4:])),
				Incomplete: int(binary.BigEndian.Uint32(resp[12*i+8:])),
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("tracker: unsupported scheme %q", u.Scheme)
}

// ParseScrapeResponse reads an HTTP scrape answer.
func ParseScrapeResponse(body []byte) (map[InfoHash]ScrapeResult, error) {
	v, err := bencode.Decode(body, bencode.Limits{MaxSize: 1 << 20})
	if err != nil {
		return nil, fmt.Errorf("tracker: scrape response: %w", err)
	}
	if f, ok := v.GetString("failure reason"); ok {
		return nil, fmt.Errorf("tracker: refused: %s", f)
	}
	files, ok := v.Get("files")
	if !ok || files.Kind != bencode.KindDict {
		return nil, errors.New("tracker: scrape response has no files")
	}
	out := map[InfoHash]ScrapeResult{}
	for _, e := range files.Dict {
		if len(e.Key) != 20 {
			continue
		}
		var r ScrapeResult
		n, _ := e.Value.GetInt("complete")
		r.Complete = int(n)
		n, _ = e.Value.GetInt("incomplete")
		r.Incomplete = int(n)
		n, _ = e.Value.GetInt("downloaded")
		r.Downloaded = int(n)
		out[InfoHash([]byte(e.Key))] = r
	}
	return out, nil
}

func (c *Client) announceUDP(ctx context.Context, u *url.URL, req AnnounceRequest) (AnnounceResult, error) {
	b := make([]byte, 0, 82)
	b = append(b, req.InfoHash[:]...)
	b = append(b, req.PeerID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(req.Downloaded))
	b = binary.BigEndian.AppendUint64(b, uint64(req.Left))
	b = binary.BigEndian.AppendUint64(b, uint64(req.Uploaded))
	b = binary.BigEndian.AppendUint32(b, uint32(req.Event))
	var ip [4]byte
	if a := req.Addr.Addr(); a.Is4() {
		ip = a.As4()
	}
	b = append(b, ip[:]...)
	var key [4]byte
	copy(key[:], req.PeerID[16:])
	b = append(b, key[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(int32(req.NumWant)))
	b = binary.BigEndian.AppendUint16(b, req.Addr.Port())
	resp, err := c.udpRoundTrip(ctx, u, actionAnnounce, b)
	if err != nil {
		return AnnounceResult{}, err
	}
	if len(resp) < 12 {
		return AnnounceResult{}, errors.New("tracker: short udp announce reply")
	}
	r := AnnounceResult{
		Interval: time.Duration(binary.BigEndian.Uint32(resp[0:])) * time.Second,
		Leechers: int(binary.BigEndian.Uint32(resp[4:])),
		Seeders:  int(binary.BigEndian.Uint32(resp[8:])),
	}
	alen := 4
	if (len(resp)-12)%6 != 0 && (len(resp)-12)%18 == 0 {
		alen = 16
	}
	peers, err := parseCompact(resp[12:], alen)
	if err != nil {
		return AnnounceResult{}, err
	}
	r.Peers = peers
	return r, nil
}

// udpRoundTrip gets a connection id (reused for a minute) and sends one
// request, retrying on silence, and returns the reply after the action and
// transaction id.
func (c *Client) udpRoundTrip(ctx context.Context, u *url.URL, action uint32, body []byte) ([]byte, error) {
	var la *net.UDPAddr
	if c.LocalAddr.IsValid() {
		la = &net.UDPAddr{IP: c.LocalAddr.AsSlice()}
	}
	ra, err := net.ResolveUDPAddr("udp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("tracker: %w", err)
	}
	conn, err := net.DialUDP("udp", la, ra)
	if err != nil {
		return nil, fmt.Errorf("tracker: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	key := u.Host
	c.mu.Lock()
	if c.connIDs == nil {
		c.connIDs = map[string]cachedConnID{}
	}
	cid, ok := c.connIDs[key]
	c.mu.Unlock()
	if !ok || c.now().Sub(cid.got) >= ConnIDLifetime {
		var b [16]byte
		binary.BigEndian.PutUint64(b[0:], udpProtocolID)
		resp, err := udpExchange(ctx, conn, b[:], actionConnect)
		if err != nil {
			return nil, err
		}
		if len(resp) < 8 {
			return nil, errors.New("tracker: short udp connect reply")
		}
		cid = cachedConnID{id: binary.BigEndian.Uint64(resp), got: c.now()}
		c.mu.Lock()
		c.connIDs[key] = cid
		c.mu.Unlock()
	}
	req := make([]byte, 16, 16+len(body))
	binary.BigEndian.PutUint64(req[0:], cid.id)
	binary.BigEndian.PutUint32(req[8:], action)
	req = append(req, body...)
	resp, err := udpExchange(ctx, conn, req, action)
	if err != nil {
		c.mu.Lock()
		delete(c.connIDs, key)
		c.mu.Unlock()
	}
	return resp, err
}

// udpExchange sends req with a fresh transaction id, resending after 1, 2,
// 4... seconds of silence until ctx ends, and returns the matching reply's
// payload.
func udpExchange(ctx context.Context, conn *net.UDPConn, req []byte, action uint32) ([]byte, error) {
	var tidb [4]byte
	rand.Read(tidb[:])
	tid := binary.BigEndian.Uint32(tidb[:])
	binary.BigEndian.PutUint32(req[12:], tid)
	buf := make([]byte, 4096)
	wait := time.Second
	for {
		if _, err := conn.Write(req); err != nil {
			return nil, fmt.Errorf("tracker: %w", err)
		}
		deadline := time.Now().Add(wait)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		conn.SetReadDeadline(deadline)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				if ctx.Err() != nil {
					return nil, fmt.Errorf("tracker: udp: %w", ctx.Err())
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // resend
				}
				return nil, fmt.Errorf("tracker: %w", err)
			}
			if n < 8 || binary.BigEndian.Uint32(buf[4:]) != tid {
				continue
			}
			switch binary.BigEndian.Uint32(buf[0:]) {
			case action:
				return append([]byte(nil), buf[8:n]...), nil
			case actionError:
				return nil, fmt.Errorf("tracker: refused: %s", buf[8:n])
			}
			return nil, errors.New("tracker: udp reply with the wrong action")
		}
		wait *= 2
	}
}
