package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Page-loading modes.
const (
	ModeNonPersistent         = "nonpersistent"          // one connection per object, one after another
	ModeNonPersistentParallel = "nonpersistent-parallel" // one connection per object, N at a time
	ModePersistent            = "persistent"             // one connection, one request at a time
	ModePersistentParallel    = "persistent-parallel"    // N persistent HTTP/1.1 connections (a browser's 6)
	ModePipelined             = "pipelined"              // one connection, all requests sent back to back
	ModeH2                    = "h2"                     // HTTP/2, all requests multiplexed on one connection
	ModeH3                    = "h3"                     // HTTP/3, all requests multiplexed on one QUIC connection
)

// Modes returns every page-loading mode (a fresh slice each call).
func Modes() []string {
	return []string{ModeNonPersistent, ModeNonPersistentParallel, ModePersistent, ModePersistentParallel, ModePipelined, ModeH2, ModeH3}
}

// Object is one fetched object of a page.
type Object struct {
	URL    string
	Status int
	Bytes  int
	// Start and End are offsets from the start of the page load.
	Start, End time.Duration
	Err        error
	// Proto is the response's protocol ("HTTP/1.1", "HTTP/2.0"); Local
	// and Remote are the ends of the connection it came on.
	Proto, Local, Remote string
}

// PageResult is a loaded page.
type PageResult struct {
	Mode    string
	Objects []Object // the base HTML file first
	Total   time.Duration
	// Conns is how many connections were opened.
	Conns int
}

// PageOptions configure LoadPage.
type PageOptions struct {
	// Mode is one of Modes().
	Mode string
	// Parallel is N for ModeNonPersistentParallel (default 5) and
	// ModePersistentParallel (default 6, as browsers).
	Parallel int
	// Client options (protocol, keep-alive and connection limits are set by the mode).
	Options Options
	// Done, when set, is called as each object is complete (or has
	// failed), from the goroutine that fetched it: the base file's before
	// any referenced object is requested.
	Done func(Object)
}

// LoadPage fetches the base HTML file at base and every object it
// references, the way Mode says, and times each.
func LoadPage(ctx context.Context, base string, po PageOptions) (*PageResult, error) {
	bu, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	o := po.Options
	o.Cache = nil
	o.NoCompression = true
	switch po.Mode {
	case ModeNonPersistent, ModeNonPersistentParallel:
		o.NoKeepAlive, o.Proto = true, ProtoH1
	case ModePersistent, ModePipelined:
		o.MaxConnsPerHost, o.Proto = 1, ProtoH1
	case ModePersistentParallel:
		if po.Parallel <= 0 {
			po.Parallel = 6
		}
		o.MaxConnsPerHost, o.Proto = po.Parallel, ProtoH1
	case ModeH2:
		o.Proto = ProtoH2
	case ModeH3:
		o.Proto = ProtoH3
	default:
		return nil, fmt.Errorf("client: unknown page mode %q (want one of %s)", po.Mode, strings.Join(Modes(), ", "))
	}
	c, err := New(o)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	pr := &PageResult{Mode: po.Mode}
	start := time.Now()
	done := func(ob Object) Object {
		if po.Done != nil {
			po.Done(ob)
		}
		return ob
	}
	fetch := func(u string) Object {
		ob := Object{URL: u, Start: time.Since(start)}
		r, err := c.Get(ctx, u)
		ob.End = time.Since(start)
		if err != nil {
			ob.Err = err
			return done(ob)
		}
		ob.Status, ob.Bytes = r.Response.StatusCode, len(r.Body)
		ob.Proto, ob.Local, ob.Remote = r.Response.Proto, r.Local, r.Remote
		return done(ob)
	}
	if po.Mode == ModePipelined {
		// The base file must arrive before the objects are known.
		pc := &pipeConn{}
		defer pc.close()
		objs, dials, err := pipeline(ctx, c, pc, []*url.URL{bu}, start, po.Done)
		if err != nil {
			return nil, err
		}
		pr.Objects = []Object{objs[0].Object}
		pr.Conns += dials
		if objs[0].Err != nil {
			pr.Total = time.Since(start)
			return pr, nil
		}
		refs := ExtractRefs(bu, objs[0].body)
		if len(refs) > 0 {
			more, dials, err := pipeline(ctx, c, pc, refs, start, po.Done)
			if err != nil {
				return nil, err
			}
			for _, o := range more {
				pr.Objects = append(pr.Objects, o.Object)
			}
			pr.Conns += dials
		}
		pr.Total = time.Since(start)
		return pr, nil
	}
	r, err := c.Get(ctx, base)
	if err != nil {
		return nil, err
	}
	pr.Objects = append(pr.Objects, done(Object{URL: base, Status: r.Response.StatusCode, Bytes: len(r.Body), End: time.Since(start),
		Proto: r.Response.Proto, Local: r.Local, Remote: r.Remote}))
	refs := ExtractRefs(bu, r.Body)
	objs := make([]Object, len(refs))
	workers := 1
	switch po.Mode {
	case ModeNonPersistentParallel, ModePersistentParallel:
		workers = po.Parallel
		if workers <= 0 {
			workers = 5
		}
	case ModeH2, ModeH3:
		workers = len(refs)
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(workers, max(len(refs), 1)) {
		wg.Go(func() {
			for i := range next {
				objs[i] = fetch(refs[i].String())
			}
		})
	}
	for i := range refs {
		next <- i
	}
	close(next)
	wg.Wait()
	pr.Objects = append(pr.Objects, objs...)
	pr.Total = time.Since(start)
	pr.Conns = c.Dials()
	return pr, nil
}

type pipeObject struct {
	Object
	body []byte
}

// pipeline sends GETs for urls (all on one host) back to back on one
// HTTP/1.1 connection and reads the answers in order; when the server
// closes the connection early, it reconnects and sends the rest.
// pipeConn is the connection a pipelined page load keeps between the base
// file and its objects.
type pipeConn struct {
	conn net.Conn
	br   *bufio.Reader
}

func (p *pipeConn) close() {
	if p.conn != nil {
		p.conn.Close()
		p.conn = nil
	}
}

func pipeline(ctx context.Context, c *Client, pc *pipeConn, urls []*url.URL, start time.Time, notify func(Object)) ([]pipeObject, int, error) {
	type res = pipeObject
	out := make([]res, len(urls))
	dials := 0
	done := 0
	for done < len(urls) {
		if pc.conn == nil {
			conn, err := c.rawDial(ctx, urls[done])
			if err != nil {
				return nil, dials, err
			}
			dials++
			if dl, ok := ctx.Deadline(); ok {
				conn.SetDeadline(dl)
			}
			pc.conn, pc.br = conn, bufio.NewReader(conn)
		}
		conn := pc.conn
		bw := bufio.NewWriter(conn)
		sent := time.Since(start)
		for _, u := range urls[done:] {
			fmt.Fprintf(bw, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: applayer\r\n\r\n", u.RequestURI(), u.Host)
		}
		if err := bw.Flush(); err != nil {
			conn.Close()
			return nil, dials, fmt.Errorf("client: pipeline write: %w", err)
		}
		br := pc.br
		progressed := false
		closed := false
		for done < len(urls) {
			req := &http.Request{Method: http.MethodGet, URL: urls[done]}
			resp, err := http.ReadResponse(br, req)
			if err != nil {
				closed = true
				break
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				closed = true
				break
			}
			out[done] = res{Object: Object{URL: urls[done].String(), Status: resp.StatusCode, Bytes: len(body), Start: sent, End: time.Since(start),
				Proto: resp.Proto, Local: conn.LocalAddr().String(), Remote: conn.RemoteAddr().String()}, body: body}
			if notify != nil {
				notify(out[done].Object)
			}
			done++
			progressed = true
			if resp.Close {
				closed = true
				break
			}
		}
		if closed {
			pc.close()
		}
		if !progressed {
			return nil, dials, fmt.Errorf("client: pipeline: connection closed before any answer")
		}
	}
	return out, dials, nil
}

func (c *Client) rawDial(ctx context.Context, u *url.URL) (net.Conn, error) {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	conn, err := c.dial(ctx, "tcp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return nil, err
	}
	if u.Scheme != "https" {
		return conn, nil
	}
	tc := c.tlsc.Clone()
	tc.ServerName = u.Hostname()
	tc.NextProtos = []string{"http/1.1"}
	tconn := tls.Client(conn, tc)
	if err := tconn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("client: tls: %w", err)
	}
	return tconn, nil
}

// Summary formats a page result as the table the chapter's comparison needs.
func (pr *PageResult) Summary(w io.Writer) {
	fmt.Fprintf(w, "mode %s: %d objects, %d connections, total %s\n", pr.Mode, len(pr.Objects), pr.Conns, pr.Total.Round(time.Microsecond))
	for _, o := range pr.Objects {
		st := fmt.Sprint(o.Status)
		if o.Err != nil {
			st = "ERR " + o.Err.Error()
		}
		fmt.Fprintf(w, "  %10s -> %10s  %4s %7d B  %s\n", o.Start.Round(time.Microsecond), o.End.Round(time.Microsecond), st, o.Bytes, o.URL)
	}
}
