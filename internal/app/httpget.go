package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/applayer/applayer/web/client"
)

type getFlags struct {
	verbose, head, timing, page, include bool
	h11, h2, h3                          bool
	out, data, method, mode              string
	headers                              []string
	cookieIn, cookieOut, jarFile         string
	cacheDir                             string
	parallel                             int
	opts                                 client.Options

	// curl's habits.
	silent, showError, location, fail, compressed bool
	writeOut, userAgent, user, upload, maxTime    string
	maxRedirs                                     int

	jsonOut  bool
	useLab   bool
	offset   int
	topoPath string
}

func httpGetCommand(g *globals) *cobra.Command {
	var f getFlags
	cmd := &cobra.Command{
		Use:   "get URL",
		Short: "Fetch a URL like curl: show messages (-v), time phases, keep cookies and a cache, load whole pages",
		Long: `Sends one request and prints the body (or -o FILE), with curl's options: -v
prints the request and the response head as they went over the wire (status
lines as curl prints them: HTTP/1.1 200 OK, HTTP/2 200, HTTP/3 200), -i the
head before the body, -I sends HEAD, -d sends a body (POST unless -X says
otherwise), -T FILE uploads with PUT, -L follows redirects, -f fails (exit 22)
on an HTTP error, -s is silent, -w FORMAT writes %{http_code}, %{time_total}...
afterwards, -A sets the User-Agent, -u USER:PASS sends basic auth,
--compressed asks for gzip (and decodes it), -m SECONDS bounds each request.
--timing prints DNS, connect, TLS, time to first byte and transfer. -b/-c
read/write a Netscape cookies.txt file (curl's format); --cookie-jar FILE does
both. --cache DIR keeps responses and revalidates them (If-None-Match /
If-Modified-Since), reporting 304s. --page loads the HTML page and every object
it references in --mode (nonpersistent, nonpersistent-parallel, persistent,
pipelined, h2, h3, or all). --resolver ADDR resolves names through that DNS
server; --lab talks to the default lab: names through its resolver
(resolver.nyu.edu) and every port offset as lab up offsets it (by 10000 when
not root). --json prints the result as JSON.`,
		Example: `  applayer http get --lab -v http://gaia.cs.umass.edu/
  applayer http get --lab --page --mode all http://gaia.cs.umass.edu/
  applayer http get --lab -s -o /dev/null -w '%{http_code} %{size_download}\n' http://gaia.cs.umass.edu/
  applayer http get --lab -L --cookie-jar /tmp/cookies.txt http://shop.amazon.com/
  applayer http get --lab --json -I http://gaia.cs.umass.edu/`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			err := runGet(cmd, g, &f, args[0])
			if err != nil && f.silent && !f.showError {
				return silenced(err)
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "print the request and response heads (as sent and received) to stderr")
	fl.BoolVarP(&f.include, "include", "i", false, "print the response head before the body")
	fl.BoolVarP(&f.head, "head", "I", false, "send HEAD and print the response head")
	fl.StringVarP(&f.out, "output", "o", "", "write the body to `FILE`")
	fl.StringVarP(&f.data, "data", "d", "", "send this request body (POST by default; @FILE reads a file)")
	fl.StringVarP(&f.upload, "upload-file", "T", "", "upload `FILE` with PUT (- reads stdin; a URL ending in / gets the file's name)")
	fl.StringVarP(&f.method, "request", "X", "", "request method")
	fl.StringArrayVarP(&f.headers, "header", "H", nil, "extra request header `Name: value`")
	fl.StringVarP(&f.userAgent, "user-agent", "A", "applayer", "User-Agent `NAME`")
	fl.StringVarP(&f.user, "user", "u", "", "basic authentication `USER:PASSWORD`")
	fl.BoolVarP(&f.location, "location", "L", false, "follow redirects (301, 302, 303, 307, 308)")
	fl.IntVar(&f.maxRedirs, "max-redirs", 50, "with -L: most redirects to follow")
	fl.BoolVarP(&f.fail, "fail", "f", false, "fail with exit code 22 and no body on an HTTP error (400 and above)")
	fl.BoolVarP(&f.silent, "silent", "s", false, "silent: no progress notes or error messages on stderr")
	fl.BoolVarP(&f.showError, "show-error", "S", false, "with -s: still print errors")
	fl.StringVarP(&f.writeOut, "write-out", "w", "", "print `FORMAT` after the transfer: %{http_code}, %{time_total}, %{size_download}, %{url_effective}... as curl")
	fl.BoolVar(&f.compressed, "compressed", false, "ask for a gzip-compressed response and decode it")
	fl.BoolVar(&f.h11, "http1.1", false, "use HTTP/1.1")
	fl.BoolVar(&f.h2, "http2", false, "use HTTP/2 (ALPN for https, prior knowledge h2c for http)")
	fl.BoolVar(&f.h3, "http3", false, "use HTTP/3 over QUIC")
	fl.StringVarP(&f.opts.Proxy, "proxy", "x", "", "use this HTTP proxy `URL`")
	fl.StringVar(&f.opts.Resolver, "resolver", "", "resolve names through this DNS server `ADDR` (host:port)")
	fl.BoolVar(&f.useLab, "lab", false, "talk to the default lab: resolve names through its resolver and offset every port as lab up does")
	fl.IntVar(&f.offset, "port-offset", -1, "with --lab: the lab's port offset (default: as lab up decides)")
	fl.StringVar(&f.topoPath, "lab-topology", "", "with --lab: the lab's topology `FILE` (default: the embedded one)")
	fl.StringVar(&f.opts.CAFile, "cacert", "", "trust this CA certificate `FILE` (e.g. the lab CA's ca.pem)")
	fl.BoolVarP(&f.opts.Insecure, "insecure", "k", false, "do not verify the server certificate")
	fl.StringVarP(&f.maxTime, "max-time", "m", "30", "`SECONDS` allowed for each request (as curl; 0.5 and 2s work too)")
	fl.StringVarP(&f.cookieIn, "cookie", "b", "", "read cookies from this cookies.txt `FILE`")
	fl.StringVarP(&f.cookieOut, "cookie-out", "c", "", "write cookies to this cookies.txt `FILE` afterwards")
	fl.StringVar(&f.jarFile, "cookie-jar", "", "read and write cookies in this cookies.txt `FILE`")
	fl.StringVar(&f.cacheDir, "cache", "", "keep responses in `DIR` and revalidate them with conditional requests")
	fl.BoolVar(&f.timing, "timing", false, "print DNS, connect, TLS, first-byte and transfer times")
	fl.BoolVar(&f.page, "page", false, "load the page and every object it references")
	fl.StringVar(&f.mode, "mode", "persistent", "page mode: "+strings.Join(client.Modes(), ", ")+" or all")
	fl.IntVar(&f.parallel, "parallel", 5, "connections for nonpersistent-parallel and persistent-parallel")
	fl.BoolVar(&f.jsonOut, "json", false, "print the result (status, head, timing, body; or the page loads) as JSON")
	return cmd
}

// exitError is an error with curl's exit code for it.
type exitError struct {
	code   int
	err    error
	silent bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }
func (e *exitError) ExitCode() int { return e.code }
func (e *exitError) Silent() bool  { return e.silent }

// silenced marks err so Main does not print it (curl -s), keeping its exit
// code.
func silenced(err error) error {
	var ee *exitError
	if errors.As(err, &ee) {
		return &exitError{code: ee.code, err: ee.err, silent: true}
	}
	return &exitError{code: 1, err: err, silent: true}
}

// parseSeconds reads curl's -m: seconds, fractions allowed, or a Go
// duration such as 2s.
func parseSeconds(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 0 {
		return time.Duration(f * float64(time.Second)), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return d, nil
	}
	return 0, fmt.Errorf("-m %q: want seconds, e.g. 5 or 0.5", s)
}

// curlExit maps a transfer error to curl's exit code.
func curlExit(err error) error {
	code := 1
	var de *net.DNSError
	var oe *net.OpError
	switch {
	case errors.As(err, &de):
		code = 6 // couldn't resolve host
	case errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err):
		code = 28 // operation timed out
	case errors.As(err, &oe) && oe.Op == "dial":
		code = 7 // couldn't connect
	}
	return &exitError{code: code, err: err}
}

func runGet(cmd *cobra.Command, g *globals, f *getFlags, u string) error {
	ctx := cmd.Context()
	switch {
	case f.h3:
		f.opts.Proto = client.ProtoH3
	case f.h2:
		f.opts.Proto = client.ProtoH2
	case f.h11:
		f.opts.Proto = client.ProtoH1
	}
	var err error
	if f.opts.Timeout, err = parseSeconds(f.maxTime); err != nil {
		return err
	}
	f.opts.NoCompression = !f.compressed
	if f.useLab {
		plan, err := clientLabPlan(f.topoPath, f.offset)
		if err != nil {
			return err
		}
		f.opts.PortOffset = plan.PortOffset
		if f.opts.Resolver == "" {
			if f.opts.Resolver, err = labResolver(plan); err != nil {
				return err
			}
		}
	}
	if f.page {
		return runPage(ctx, g, f, u)
	}
	var jar *client.Jar
	in := f.cookieIn
	if f.jarFile != "" {
		in = f.jarFile
	}
	if in != "" || f.cookieOut != "" {
		if jar, err = client.LoadJar(in); err != nil {
			return err
		}
		f.opts.Jar = jar
	}
	if f.cacheDir != "" {
		if f.opts.Cache, err = client.OpenCache(f.cacheDir); err != nil {
			return err
		}
	}
	c, err := client.New(f.opts)
	if err != nil {
		return err
	}
	defer c.Close()

	method := f.method
	var body []byte
	hasBody := false
	switch {
	case f.upload != "":
		if f.upload == "-" {
			body, err = io.ReadAll(g.stdin)
		} else {
			body, err = os.ReadFile(f.upload)
			if strings.HasSuffix(u, "/") {
				u += url.PathEscape(path.Base(f.upload))
			}
		}
		if err != nil {
			return &exitError{code: 26, err: fmt.Errorf("-T: %w", err)}
		}
		hasBody = true
		if method == "" {
			method = http.MethodPut
		}
	case f.data != "":
		body = []byte(f.data)
		if name, ok := strings.CutPrefix(f.data, "@"); ok {
			if body, err = os.ReadFile(name); err != nil {
				return &exitError{code: 26, err: fmt.Errorf("-d: %w", err)}
			}
		}
		hasBody = true
		if method == "" {
			method = http.MethodPost
		}
	}
	if f.head {
		method = http.MethodHead
	}
	if method == "" {
		method = http.MethodGet
	}
	hdr := http.Header{}
	hostOverride := ""
	for _, h := range f.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return fmt.Errorf("-H %q: want 'Name: value'", h)
		}
		if k, v = strings.TrimSpace(k), strings.TrimSpace(v); strings.EqualFold(k, "Host") {
			hostOverride = v
			continue
		}
		hdr.Set(k, v)
	}
	if hdr.Get("User-Agent") == "" && f.userAgent != "" {
		hdr.Set("User-Agent", f.userAgent)
	}
	if hasBody && method == http.MethodPost && f.upload == "" && hdr.Get("Content-Type") == "" {
		hdr.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	var authUser, authPass string
	if f.user != "" {
		var ok bool
		if authUser, authPass, ok = strings.Cut(f.user, ":"); !ok {
			return fmt.Errorf("-u %q: want USER:PASSWORD", f.user)
		}
	}

	var res *client.Result
	var firstHost string
	redirects := 0
	var total time.Duration
	for {
		var rd io.Reader
		if hasBody {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, u, rd)
		if err != nil {
			return err
		}
		if firstHost == "" {
			firstHost = req.URL.Host
		}
		req.Header = hdr.Clone()
		sameHost := req.URL.Host == firstHost
		if sameHost {
			req.Host = hostOverride
			if f.user != "" {
				req.SetBasicAuth(authUser, authPass) // curl drops them on another host
			}
		}
		if res, err = c.Do(ctx, req); err != nil {
			return curlExit(err)
		}
		total += res.Timing.Total
		if f.verbose && !f.jsonOut {
			printExchange(g.stderr, res)
		}
		loc := res.Response.Header.Get("Location")
		if !f.location || loc == "" || !isRedirect(res.Response.StatusCode) {
			break
		}
		if redirects >= f.maxRedirs {
			return &exitError{code: 47, err: fmt.Errorf("maximum (%d) redirects followed", f.maxRedirs)}
		}
		next, err := req.URL.Parse(loc)
		if err != nil {
			return fmt.Errorf("redirect to %q: %w", loc, err)
		}
		redirects++
		u = next.String()
		code := res.Response.StatusCode
		if code == http.StatusSeeOther && method != http.MethodHead || (code == 301 || code == 302) && method == http.MethodPost {
			method, hasBody, body = http.MethodGet, false, nil
			hdr.Del("Content-Type")
		}
	}
	resp := res.Response
	if f.jsonOut {
		if err := writeJSON(g.stdout, getJSON(res, u, redirects, total, f.head)); err != nil {
			return err
		}
	} else {
		if (f.head || f.include) && !(f.fail && resp.StatusCode >= 400) {
			printResponseHead(g.stdout, resp, "")
		}
		if res.FromCache && !f.silent {
			fmt.Fprintf(g.stderr, "* 304 Not Modified: body served from the cache (%d bytes)\n", len(res.Body))
		}
	}
	if f.fail && resp.StatusCode >= 400 {
		return &exitError{code: 22, err: fmt.Errorf("the requested URL returned error: %d", resp.StatusCode)}
	}
	if !f.head && !f.jsonOut || f.out != "" {
		if f.out != "" {
			if err := os.WriteFile(f.out, res.Body, 0o644); err != nil {
				return &exitError{code: 23, err: err}
			}
		} else if _, err := g.stdout.Write(res.Body); err != nil {
			return &exitError{code: 23, err: err}
		}
	}
	if f.timing && !f.silent {
		t := res.Timing
		fmt.Fprintf(g.stderr, "* timing: dns %s, connect %s, tls %s, first byte %s, transfer %s, total %s (connection reused: %v)\n",
			t.DNS, t.Connect, t.TLS, t.TTFB, t.Transfer, t.Total, t.Reused)
	}
	if f.writeOut != "" {
		s, unknown := writeOut(f.writeOut, res, u, redirects, total)
		for _, v := range unknown {
			if !f.silent {
				fmt.Fprintf(g.stderr, "applayer: unknown --write-out variable: '%s'\n", v)
			}
		}
		io.WriteString(g.stdout, s)
	}
	out := f.cookieOut
	if f.jarFile != "" {
		out = f.jarFile
	}
	if out != "" {
		return jar.Save(out)
	}
	return nil
}

func isRedirect(code int) bool {
	switch code {
	case 301, 302, 303, 307, 308:
		return true
	}
	return false
}

// runPage loads the page in each mode asked for. Errors go to stderr; the
// command fails when a mode fails.
func runPage(ctx context.Context, g *globals, f *getFlags, u string) error {
	modes := []string{f.mode}
	if f.mode == "all" {
		modes = client.Modes()
		if !strings.HasPrefix(u, "https:") {
			modes = modes[:len(modes)-1] // HTTP/3 needs https
		}
	} else if !validMode(f.mode) {
		return fmt.Errorf("--mode %q: want one of %s or all", f.mode, strings.Join(client.Modes(), ", "))
	}
	type pageJSON struct {
		Mode    string       `json:"mode"`
		Error   string       `json:"error,omitempty"`
		Conns   int          `json:"connections"`
		TotalMS float64      `json:"total_ms"`
		Objects []objectJSON `json:"objects,omitempty"`
	}
	var all []pageJSON
	var failed []string
	for _, m := range modes {
		pr, err := client.LoadPage(ctx, u, client.PageOptions{Mode: m, Parallel: f.parallel, Options: f.opts})
		if err == nil {
			for _, o := range pr.Objects {
				if o.Err != nil {
					err = fmt.Errorf("%s: %w", o.URL, o.Err)
					break
				}
			}
		}
		if err != nil {
			failed = append(failed, m)
			if !f.silent || f.showError {
				fmt.Fprintf(g.stderr, "applayer: mode %s: %v\n", m, err)
			}
		}
		if f.jsonOut {
			pj := pageJSON{Mode: m}
			if err != nil {
				pj.Error = err.Error()
			}
			if pr != nil {
				pj.Conns, pj.TotalMS = pr.Conns, ms(pr.Total)
				for _, o := range pr.Objects {
					oj := objectJSON{URL: o.URL, Status: o.Status, Bytes: o.Bytes, StartMS: ms(o.Start), EndMS: ms(o.End)}
					if o.Err != nil {
						oj.Error = o.Err.Error()
					}
					pj.Objects = append(pj.Objects, oj)
				}
			}
			all = append(all, pj)
			continue
		}
		if pr != nil {
			pr.Summary(g.stdout)
		}
	}
	if f.jsonOut {
		if err := writeJSON(g.stdout, all); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return silentIf(f, fmt.Errorf("page load failed in %d of %d modes (%s)", len(failed), len(modes), strings.Join(failed, ", ")))
	}
	return nil
}

// silentIf keeps a summary error quiet when its details were printed.
func silentIf(f *getFlags, err error) error {
	return &exitError{code: 1, err: err, silent: f.silent && !f.showError}
}

func validMode(m string) bool {
	for _, x := range client.Modes() {
		if m == x {
			return true
		}
	}
	return false
}

type objectJSON struct {
	URL     string  `json:"url"`
	Status  int     `json:"status,omitempty"`
	Bytes   int     `json:"bytes"`
	StartMS float64 `json:"start_ms"`
	EndMS   float64 `json:"end_ms"`
	Error   string  `json:"error,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// getResult is http get's --json output.
type getResult struct {
	URL        string              `json:"url"`
	Status     int                 `json:"status"`
	StatusLine string              `json:"status_line"`
	Proto      string              `json:"proto"`
	Header     map[string][]string `json:"header"`
	Remote     string              `json:"remote,omitempty"`
	Redirects  int                 `json:"redirects"`
	FromCache  bool                `json:"from_cache"`
	Bytes      int                 `json:"size_download"`
	Body       *string             `json:"body,omitempty"`
	BodyBase64 []byte              `json:"body_base64,omitempty"`
	Timing     struct {
		DNS      float64 `json:"dns_ms"`
		Connect  float64 `json:"connect_ms"`
		TLS      float64 `json:"tls_ms"`
		TTFB     float64 `json:"first_byte_ms"`
		Transfer float64 `json:"transfer_ms"`
		Total    float64 `json:"total_ms"`
		Reused   bool    `json:"reused"`
	} `json:"timing"`
}

func getJSON(r *client.Result, u string, redirects int, total time.Duration, head bool) *getResult {
	resp := r.Response
	out := &getResult{URL: u, Status: resp.StatusCode, StatusLine: statusLine(resp), Proto: protoName(resp),
		Header: wireHeader(resp), Remote: r.Remote, Redirects: redirects, FromCache: r.FromCache, Bytes: r.WireBytes}
	if !head {
		if utf8.Valid(r.Body) {
			s := string(r.Body)
			out.Body = &s
		} else {
			out.BodyBase64 = r.Body
		}
	}
	t := r.Timing
	out.Timing.DNS, out.Timing.Connect, out.Timing.TLS = ms(t.DNS), ms(t.Connect), ms(t.TLS)
	out.Timing.TTFB, out.Timing.Transfer, out.Timing.Total, out.Timing.Reused = ms(t.TTFB), ms(t.Transfer), ms(total), t.Reused
	return out
}

// writeOut expands curl's -w variables; it returns the text and the
// variables it does not know.
func writeOut(format string, r *client.Result, u string, redirects int, total time.Duration) (string, []string) {
	t := r.Timing
	resp := r.Response
	secs := func(d time.Duration) string { return fmt.Sprintf("%.6f", d.Seconds()) }
	host, port, _ := net.SplitHostPort(r.Remote)
	// curl's times are cumulative from the start.
	vars := map[string]string{
		"http_code": fmt.Sprintf("%03d", resp.StatusCode), "response_code": fmt.Sprintf("%03d", resp.StatusCode),
		"http_version":       strings.TrimPrefix(protoName(resp), "HTTP/"),
		"time_namelookup":    secs(t.DNS),
		"time_connect":       secs(t.DNS + t.Connect),
		"time_appconnect":    secs(t.DNS + t.Connect + t.TLS),
		"time_pretransfer":   secs(t.DNS + t.Connect + t.TLS),
		"time_starttransfer": secs(t.DNS + t.Connect + t.TLS + t.TTFB),
		"time_total":         secs(total),
		"size_download":      strconv.Itoa(r.WireBytes),
		"size_header":        strconv.Itoa(headSize(resp)),
		"url_effective":      u,
		"content_type":       resp.Header.Get("Content-Type"),
		"num_redirects":      strconv.Itoa(redirects),
		"remote_ip":          host,
		"remote_port":        port,
		"method":             r.Request.Method,
	}
	var b strings.Builder
	var unknown []string
	for i := 0; i < len(format); i++ {
		c := format[i]
		switch {
		case c == '%' && strings.HasPrefix(format[i:], "%{"):
			end := strings.IndexByte(format[i:], '}')
			if end < 0 {
				b.WriteString(format[i:])
				i = len(format)
				continue
			}
			name := format[i+2 : i+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else if strings.HasPrefix(name, "header{") && strings.HasSuffix(name, "}") {
				b.WriteString(resp.Header.Get(name[7 : len(name)-1]))
			} else {
				unknown = append(unknown, name)
			}
			i += end
		case c == '%' && i+1 < len(format) && format[i+1] == '%':
			b.WriteByte('%')
			i++
		case c == '\\' && i+1 < len(format):
			switch format[i+1] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '\\':
				b.WriteByte('\\')
			default:
				b.WriteByte(c)
				continue
			}
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), unknown
}

// headSize is the size of the response head as HTTP/1.1 would carry it.
func headSize(resp *http.Response) int {
	n := len(statusLine(resp)) + 2
	for k, vs := range wireHeader(resp) {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	return n + 2
}

// protoName is the protocol as curl names it: HTTP/1.1, HTTP/2, HTTP/3.
func protoName(resp *http.Response) string {
	if resp.ProtoMajor >= 2 {
		return fmt.Sprintf("HTTP/%d", resp.ProtoMajor)
	}
	return resp.Proto
}

// statusLine is the response's status line as curl prints it: HTTP/1.x
// with its reason phrase, HTTP/2 and HTTP/3 (which have none) with the code.
func statusLine(resp *http.Response) string {
	if resp.ProtoMajor >= 2 {
		return fmt.Sprintf("%s %d", protoName(resp), resp.StatusCode)
	}
	return resp.Proto + " " + resp.Status
}

// wireHeader is the response header as the server sent it: net/http moves
// Transfer-Encoding out of the map, so it is put back.
func wireHeader(resp *http.Response) http.Header {
	h := resp.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if len(resp.TransferEncoding) > 0 && h.Get("Transfer-Encoding") == "" {
		h["Transfer-Encoding"] = []string{strings.Join(resp.TransferEncoding, ", ")}
	}
	return h
}

func printExchange(w io.Writer, r *client.Result) {
	if r.Remote != "" {
		fmt.Fprintf(w, "* connected to %s\n", r.Remote)
	}
	req := r.Request
	fmt.Fprintf(w, "> %s %s %s\n", req.Method, req.URL.RequestURI(), protoName(r.Response))
	lower := r.Response.ProtoMajor >= 2
	if len(r.SentHeader) > 0 {
		for _, h := range r.SentHeader {
			if lower {
				k, v, _ := strings.Cut(h, ":")
				h = strings.ToLower(k) + ":" + v
			}
			fmt.Fprintf(w, "> %s\n", h)
		}
	} else {
		fmt.Fprintf(w, "> Host: %s\n", req.URL.Host)
		printHeader(w, req.Header, "> ", lower)
	}
	fmt.Fprintln(w, ">")
	printResponseHead(w, r.Response, "< ")
	if r.Decoded {
		fmt.Fprintf(w, "* decoded the gzip body: %d bytes on the wire\n", r.WireBytes)
	}
}

// printResponseHead prints the status line and header as they came over
// the wire (HTTP/2 and HTTP/3 field names in lower case, as curl shows them).
func printResponseHead(w io.Writer, resp *http.Response, prefix string) {
	fmt.Fprintf(w, "%s%s\n", prefix, statusLine(resp))
	printHeader(w, wireHeader(resp), prefix, resp.ProtoMajor >= 2)
	fmt.Fprintln(w, strings.TrimSpace(prefix))
}

func printHeader(w io.Writer, h http.Header, prefix string, lower bool) {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name := k
		if lower {
			name = strings.ToLower(k)
		}
		for _, v := range h[k] {
			fmt.Fprintf(w, "%s%s: %s\n", prefix, name, v)
		}
	}
}
