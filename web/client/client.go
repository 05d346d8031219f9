// Package client is applayer's curl-like web client: HTTP/1.1, HTTP/2 and
// HTTP/3 requests with per-phase timing (DNS, connect, TLS, first byte,
// transfer), a Netscape cookies.txt jar, a local cache that revalidates
// with conditional requests, a proxy, a chosen DNS resolver, and a page
// loader that fetches a base HTML file and all its objects in the chapter's
// modes (non-persistent serial or parallel, persistent, pipelined, HTTP/2
// multiplexed, HTTP/3).
package client

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/applayer/applayer/internal/service"
)

// Protocol choices for Options.Proto.
const (
	ProtoAuto = ""
	ProtoH1   = "1.1"
	ProtoH2   = "2"
	ProtoH3   = "3"
)

// Options configure a Client. The zero value is a plain HTTP/1.1-or-2
// client using the system resolver and roots.
type Options struct {
	// Proto forces a protocol: "" (auto: HTTP/1.1, or HTTP/2 by ALPN),
	// "1.1", "2" (h2 by ALPN, or h2c prior knowledge for http://), "3".
	Proto string
	// Proxy is an http:// proxy URL for all requests.
	Proxy string
	// Resolver is a DNS server host:port used instead of the system one.
	Resolver string
	// CAFile adds a PEM CA (such as the lab CA) to the trusted roots.
	CAFile string
	// Insecure skips certificate verification.
	Insecure bool
	// NoKeepAlive uses a new connection for every request.
	NoKeepAlive bool
	// MaxConnsPerHost limits connections per host (0: no limit).
	MaxConnsPerHost int
	// Timeout bounds each request (0: none).
	Timeout time.Duration
	// Jar, when set, stores and sends cookies.
	Jar http.CookieJar
	// Cache, when set, keeps responses and revalidates them.
	Cache *Cache
	// NoCompression stops the client asking for gzip. When it asks, the
	// client decodes the body itself and leaves the response header as it
	// came over the wire (Content-Encoding and Content-Length included).
	NoCompression bool
	// PortOffset is added to the port of every connection the client
	// opens (server or proxy): the lab's offset when it runs as a normal
	// user. URLs and Host headers keep the standard ports.
	PortOffset int
	// Dialer opens the TCP connections (after the client's own name
	// lookup, so it is given an IP address). Default a net.Dialer. The lab
	// routes through it, and tests add delay to show what each new
	// connection costs. HTTP/3 (QUIC over UDP) does not use it.
	Dialer service.Dialer
	// Hosts maps names to addresses before any DNS lookup (as
	// /etc/hosts), for lab names without a lab DNS.
	Hosts map[string]string
	// QUICDialer, when set, opens the UDP "connection" HTTP/3 runs over
	// (DialContext("udp", ip:port)), so that a lab link can shape QUIC's
	// datagrams; default: quic-go's own socket.
	QUICDialer service.Dialer
}

// Client sends requests and measures them.
type Client struct {
	opts  Options
	rt    http.RoundTripper
	h3    *http3.Transport
	h1    *http.Transport
	dials atomic.Int64
	res   *net.Resolver
	tlsc  *tls.Config
	// resolverAddr is Options.Resolver with its port: errors name it
	// (net.Resolver names the system's server even when Dial goes elsewhere).
	resolverAddr string
}

// New returns a client for opts.
func New(opts Options) (*Client, error) {
	c := &Client{opts: opts, res: net.DefaultResolver}
	if opts.Resolver != "" {
		addr := opts.Resolver
		if _, _, err := net.SplitHostPort(addr); err != nil {
			addr = net.JoinHostPort(addr, "53")
		}
		c.resolverAddr = addr
		c.res = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}
	}
	c.tlsc = &tls.Config{InsecureSkipVerify: opts.Insecure}
	if opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("client: ca file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client: %s: no certificates", opts.CAFile)
		}
		c.tlsc.RootCAs = pool
	}
	switch opts.Proto {
	case ProtoH3:
		c.h3 = &http3.Transport{TLSClientConfig: c.tlsc.Clone(), DisableCompression: true, Dial: c.dialQUIC}
		c.rt = c.h3
		return c, nil
	case ProtoAuto, ProtoH1, ProtoH2:
	default:
		return nil, fmt.Errorf("client: unknown protocol %q (want 1.1, 2 or 3)", opts.Proto)
	}
	t := &http.Transport{
		DialContext:         c.dial,
		TLSClientConfig:     c.tlsc.Clone(),
		DisableKeepAlives:   opts.NoKeepAlive,
		MaxConnsPerHost:     opts.MaxConnsPerHost,
		MaxIdleConnsPerHost: 64,
		DisableCompression:  true, // Do asks for gzip and decodes it, keeping the header intact
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
	}
	if opts.Proxy != "" {
		pu, err := url.Parse(opts.Proxy)
		if err != nil || pu.Host == "" {
			return nil, fmt.Errorf("client: bad proxy URL %q", opts.Proxy)
		}
		t.Proxy = http.ProxyURL(pu)
	}
	var p http.Protocols
	switch opts.Proto {
	case ProtoH1:
		p.SetHTTP1(true)
	case ProtoH2:
		p.SetHTTP2(true)
		p.SetUnencryptedHTTP2(true)
	default:
		p.SetHTTP1(true)
		p.SetHTTP2(true)
	}
	t.Protocols = &p
	c.h1, c.rt = t, t
	return c, nil
}

// Close releases idle connections.
func (c *Client) Close() error {
	if c.h3 != nil {
		return c.h3.Close()
	}
	c.h1.CloseIdleConnections()
	return nil
}

// Dials reports how many connections the client has opened.
func (c *Client) Dials() int { return int(c.dials.Load()) }

// Timing is the time spent in each phase of one request. Zero phases did
// not happen (e.g. a reused connection has no DNS, connect or TLS).
type Timing struct {
	DNS, Connect, TLS, TTFB, Transfer, Total time.Duration
	// Reused is true when the request went on an existing connection.
	Reused bool
}

type timingKey struct{}

type phases struct {
	mu              sync.Mutex
	dns, conn, tls  time.Duration
	tlsStart        time.Time
	firstByte       time.Time
	reused, gotConn bool
	sentHeader      []string
	remote, local   string
}

func (p *phases) add(f func(p *phases)) {
	if p == nil {
		return
	}
	p.mu.Lock()
	f(p)
	p.mu.Unlock()
}

func (c *Client) resolve(ctx context.Context, host string) (string, time.Duration, error) {
	if ip := net.ParseIP(strings.Trim(host, "[]")); ip != nil {
		return ip.String(), 0, nil
	}
	if a, ok := c.opts.Hosts[strings.ToLower(strings.TrimSuffix(host, "."))]; ok {
		return a, 0, nil
	}
	start := time.Now()
	addrs, err := c.res.LookupIPAddr(ctx, host)
	d := time.Since(start)
	if err != nil {
		var de *net.DNSError
		if c.resolverAddr != "" && errors.As(err, &de) {
			de.Server = c.resolverAddr
		}
		return "", d, fmt.Errorf("client: resolve %s: %w", host, err)
	}
	for _, a := range addrs {
		if a.IP.To4() != nil {
			return a.IP.String(), d, nil
		}
	}
	return addrs[0].IP.String(), d, nil
}

// offsetPort adds the client's PortOffset to port.
func (c *Client) offsetPort(port string) string {
	if c.opts.PortOffset == 0 {
		return port
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return port
	}
	return strconv.Itoa(n + c.opts.PortOffset)
}

func (c *Client) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port = c.offsetPort(port)
	p, _ := ctx.Value(timingKey{}).(*phases)
	ip, dnsd, err := c.resolve(ctx, host)
	p.add(func(p *phases) { p.dns = dnsd })
	if err != nil {
		return nil, err
	}
	start := time.Now()
	var d service.Dialer = &net.Dialer{}
	if c.opts.Dialer != nil {
		d = c.opts.Dialer
	}
	conn, err := d.DialContext(ctx, network, net.JoinHostPort(ip, port))
	cd := time.Since(start)
	p.add(func(p *phases) { p.conn = cd })
	if err != nil {
		return nil, err
	}
	c.dials.Add(1)
	return conn, nil
}

func (c *Client) dialQUIC(ctx context.Context, addr string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port = c.offsetPort(port)
	p, _ := ctx.Value(timingKey{}).(*phases)
	ip, dnsd, err := c.resolve(ctx, host)
	p.add(func(p *phases) { p.dns = dnsd })
	if err != nil {
		return nil, err
	}
	start := time.Now()
	conn, err := c.quicDial(ctx, net.JoinHostPort(ip, port), tc, qc)
	if err != nil {
		return nil, fmt.Errorf("client: quic dial: %w", err)
	}
	// QUIC's handshake is the transport and TLS handshake in one.
	select {
	case <-conn.HandshakeComplete():
	case <-ctx.Done():
		conn.CloseWithError(0, "")
		return nil, ctx.Err()
	}
	hd := time.Since(start)
	p.add(func(p *phases) { p.conn = hd })
	c.dials.Add(1)
	return conn, nil
}

// quicDial opens a QUIC connection to addr: on quic-go's own socket, or
// over the UDP connection Options.QUICDialer opens (closed with the QUIC
// connection).
func (c *Client) quicDial(ctx context.Context, addr string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
	if c.opts.QUICDialer == nil {
		return quic.DialAddrEarly(ctx, addr, tc, qc)
	}
	uc, err := c.opts.QUICDialer.DialContext(ctx, "udp", addr)
	if err != nil {
		return nil, err
	}
	tr := &quic.Transport{Conn: connPacket{uc}}
	conn, err := tr.DialEarly(ctx, uc.RemoteAddr(), tc, qc)
	if err != nil {
		tr.Close()
		uc.Close()
		return nil, err
	}
	go func() {
		<-conn.Context().Done()
		tr.Close()
		uc.Close()
	}()
	return conn, nil
}

// connPacket is a connected datagram net.Conn used as the net.PacketConn
// quic-go wants: every datagram comes from, and goes to, the peer.
type connPacket struct{ net.Conn }

func (p connPacket) ReadFrom(b []byte) (int, net.Addr, error) {
	n, err := p.Read(b)
	return n, p.RemoteAddr(), err
}

func (p connPacket) WriteTo(b []byte, _ net.Addr) (int, error) { return p.Write(b) }

// SetReadBuffer and SetWriteBuffer pass quic-go's socket buffer sizes on
// when the connection has a socket (a lab link's user-space queue has none).
func (p connPacket) SetReadBuffer(n int) error {
	if s, ok := p.Conn.(interface{ SetReadBuffer(int) error }); ok {
		return s.SetReadBuffer(n)
	}
	return nil
}

func (p connPacket) SetWriteBuffer(n int) error {
	if s, ok := p.Conn.(interface{ SetWriteBuffer(int) error }); ok {
		return s.SetWriteBuffer(n)
	}
	return nil
}

// Result is a completed exchange.
type Result struct {
	// Request is the request as sent (header fields in wire order in SentHeader).
	Request    *http.Request
	SentHeader []string
	// Response has its body already read into Body.
	Response *http.Response
	Body     []byte
	Timing   Timing
	// FromCache is true when the cache revalidated the entry (the server
	// answered 304) and Body comes from the cache.
	FromCache bool
	// Remote is the server address the request went to, Local the
	// client's end of the connection it went on.
	Remote, Local string
	// Decoded is true when the body came gzip-encoded (the Response's
	// Content-Encoding says so) and Body holds it decoded. WireBytes is the
	// body's size as it came over the wire.
	Decoded   bool
	WireBytes int
}

// Do sends req, reads the whole body, and measures every phase.
func (c *Client) Do(ctx context.Context, req *http.Request) (*Result, error) {
	if c.opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.Timeout)
		defer cancel()
	}
	p := &phases{}
	var entry *cacheEntry
	if c.opts.Cache != nil && (req.Method == http.MethodGet) {
		entry = c.opts.Cache.lookup(req.URL.String())
		if entry != nil {
			if entry.ETag != "" {
				req.Header.Set("If-None-Match", entry.ETag)
			}
			if entry.LastModified != "" {
				req.Header.Set("If-Modified-Since", entry.LastModified)
			}
		}
	}
	// Cookies belong to the Host the request names (as curl does with -H Host).
	jarURL := *req.URL
	if req.Host != "" {
		jarURL.Host = req.Host
	}
	if c.opts.Jar != nil {
		for _, ck := range c.opts.Jar.Cookies(&jarURL) {
			req.AddCookie(ck)
		}
	}
	ct := &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) {
			p.add(func(p *phases) {
				p.reused, p.gotConn = i.Reused, true
				if i.Conn != nil {
					p.remote = i.Conn.RemoteAddr().String()
					p.local = i.Conn.LocalAddr().String()
				}
			})
		},
		TLSHandshakeStart: func() { p.add(func(p *phases) { p.tlsStart = time.Now() }) },
		TLSHandshakeDone: func(tls.ConnectionState, error) {
			p.add(func(p *phases) { p.tls = time.Since(p.tlsStart) })
		},
		WroteHeaderField: func(k string, v []string) {
			p.add(func(p *phases) {
				for _, x := range v {
					p.sentHeader = append(p.sentHeader, k+": "+x)
				}
			})
		},
		GotFirstResponseByte: func() { p.add(func(p *phases) { p.firstByte = time.Now() }) },
	}
	askedGzip := false
	if !c.opts.NoCompression && req.Header.Get("Accept-Encoding") == "" && req.Header.Get("Range") == "" {
		req.Header.Set("Accept-Encoding", "gzip")
		askedGzip = true
	}
	ctx = context.WithValue(httptrace.WithClientTrace(ctx, ct), timingKey{}, p)
	req = req.WithContext(ctx)
	start := time.Now()
	resp, err := c.rt.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: %w", req.Method, req.URL, err)
	}
	headerAt := time.Now()
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	end := time.Now()
	if err != nil {
		return nil, fmt.Errorf("client: reading body: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fb := p.firstByte
	if fb.IsZero() {
		fb = headerAt
	}
	r := &Result{Request: req, SentHeader: p.sentHeader, Response: resp, Body: body, Remote: p.remote, Local: p.local, WireBytes: len(body)}
	if askedGzip && len(body) > 0 && strings.EqualFold(strings.TrimSpace(resp.Header.Get("Content-Encoding")), "gzip") {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err == nil {
			body, err = io.ReadAll(io.LimitReader(zr, maxDecoded))
		}
		if err != nil {
			return nil, fmt.Errorf("client: %s %s: gzip body: %w", req.Method, req.URL, err)
		}
		r.Body, r.Decoded = body, true
	}
	r.Timing = Timing{DNS: p.dns, Connect: p.conn, TLS: p.tls, Reused: p.reused, Total: end.Sub(start), Transfer: end.Sub(fb)}
	r.Timing.TTFB = fb.Sub(start) - p.dns - p.conn - p.tls
	if c.opts.Jar != nil {
		if cs := resp.Cookies(); len(cs) > 0 {
			c.opts.Jar.SetCookies(&jarURL, cs)
		}
	}
	if c.opts.Cache != nil && req.Method == http.MethodGet {
		switch {
		case resp.StatusCode == http.StatusNotModified && entry != nil:
			r.FromCache = true
			r.Body = entry.body
		case resp.StatusCode == http.StatusOK:
			if err := c.opts.Cache.store(req.URL.String(), resp, r.Body); err != nil {
				return r, err
			}
		}
	}
	return r, nil
}

// maxDecoded bounds a decoded gzip body (a small body can inflate a
// thousandfold).
const maxDecoded = 1 << 30

// Get fetches u.
func (c *Client) Get(ctx context.Context, u string) (*Result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return c.Do(ctx, req)
}

// ErrNotHTML is returned by LoadPage when the base object is not HTML.
var ErrNotHTML = errors.New("client: base object is not HTML")
