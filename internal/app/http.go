package app

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/web/client"
	"github.com/applayer/applayer/web/server"
)

// httpCommand is `applayer http`; its subcommands come from one slice so a
// new one (e.g. proxy) is one line.
func httpCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "http",
		Short: "The Web: an HTTP/1.1, HTTP/2 and HTTP/3 server and a curl-like client",
		Long: `The Web chapter's systems: a web server (static files with ETag and
Last-Modified, conditional GET, ranges, gzip, virtual hosts, TLS with a lab
CA, HTTP/2 and HTTP/3, persistent or non-persistent connections, the cookie
shop) and a client that shows the messages, times every phase and loads whole
pages in the chapter's persistent / non-persistent / pipelined / HTTP/2 /
HTTP/3 modes.`,
		Example: `  applayer http serve --root ./site --listen 127.0.0.1:8080
  applayer http get -v http://127.0.0.1:8080/
  applayer http get --page --mode all http://127.0.0.1:8080/`,
	}
	for _, sub := range []func(*globals) *cobra.Command{
		httpServeCommand,
		httpGetCommand,
		httpProxyCommand,
	} {
		cmd.AddCommand(sub(g))
	}
	return cmd
}

// siteFlags are `http serve`'s flags that build its sites: given on the
// command line, they replace the config file's sites.
func siteFlags() []string {
	return []string{"root", "shop", "demo", "push", "index", "listing", "follow-symlinks", "uploads", "max-body", "no-gzip", "vhost", "redirect"}
}

func httpServeCommand(g *globals) *cobra.Command {
	var (
		cfgFile, root, shopDir string
		site                   server.Site
		vhosts, redirects      []string
		cfg                    server.Config
		demo, push             int
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the web server: static files, virtual hosts, TLS, HTTP/2, HTTP/3, the cookie shop",
		Long: `Serves files from --root (or the cookie shop with --shop DIR) over HTTP/1.1 and
cleartext HTTP/2 on --listen, and with --tls-listen over TLS (HTTP/1.1 and
HTTP/2 by ALPN), plus HTTP/3 on the same UDP port with --http3. Without
--cert/--key the server issues its own certificate from a lab CA kept in
--ca-dir; give ca.pem from there to curl --cacert. --config reads a YAML or
JSON server config (see docs/web.md); flags given on the command line
override it (the site flags --root, --shop, --vhost, --redirect, --index...
replace its sites).`,
		Example: `  applayer http serve --root ./site
  applayer http serve --root ./site --tls-listen 127.0.0.1:8443 --http3 --ca-dir /tmp/ca
  applayer http serve --root ./a --vhost b.example=./b --redirect /old=/new --access-log combined
  applayer http serve --root ./site --demo 10 --tls-listen 127.0.0.1:8443 --push 16
  applayer http serve --shop /tmp/shopdata --listen 127.0.0.1:8081
  printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' | nc 127.0.0.1 8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := loadConfigFile(cmd, cfgFile, &cfg); err != nil {
				return err
			}
			if fromFlag(cmd, len(cfg.Sites) == 0, siteFlags()...) {
				if demo > 0 {
					if err := server.WriteDemoSite(root, demo); err != nil {
						return err
					}
				}
				site.Root, site.Shop = root, shopDir
				if shopDir != "" {
					site.Root = ""
				}
				if push > 0 && shopDir == "" {
					site.Push = &server.Push{Refs: true, Max: push}
				}
				site.Redirects = map[string]string{}
				for _, r := range redirects {
					from, to, ok := strings.Cut(r, "=")
					if !ok {
						return fmt.Errorf("--redirect %q: want /path=URL", r)
					}
					site.Redirects[from] = to
				}
				cfg.Sites = []server.Site{site}
				for _, v := range vhosts {
					name, dir, ok := strings.Cut(v, "=")
					if !ok {
						return fmt.Errorf("--vhost %q: want name=dir", v)
					}
					s := site
					s.Hosts, s.Root, s.Shop, s.Redirects = []string{name}, dir, "", nil
					cfg.Sites = append(cfg.Sites, s)
				}
			}
			return serve(cmd, g, func(d service.Deps) (service.Service, error) { return server.New(cfg, d) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgFile, "config", "", "read the server config from this YAML/JSON `FILE`; flags given override it")
	f.StringVar(&cfg.Addr, "listen", "127.0.0.1:8080", "cleartext address (HTTP/1.1 and h2c); empty disables")
	f.StringVar(&cfg.TLSAddr, "tls-listen", "", "TLS address (HTTP/1.1 and HTTP/2 by ALPN)")
	f.BoolVar(&cfg.HTTP3, "http3", false, "also serve HTTP/3 on the TLS port (UDP) and advertise it with Alt-Svc")
	f.BoolVar(&cfg.NoH2C, "no-h2c", false, "refuse cleartext HTTP/2")
	f.StringVar(&cfg.TLS.CertFile, "cert", "", "certificate PEM file")
	f.StringVar(&cfg.TLS.KeyFile, "key", "", "private key PEM file")
	f.StringVar(&cfg.TLS.CADir, "ca-dir", filepath.Join(os.TempDir(), "applayer-ca"), "lab CA directory (ca.pem, ca.key), used without --cert")
	f.StringSliceVar(&cfg.TLS.Names, "tls-name", nil, "extra DNS names for the lab-CA certificate")
	f.StringVar(&root, "root", ".", "directory to serve")
	f.IntVar(&push, "push", 0, "HTTP/2 server push: push up to `N` same-site objects each HTML page references (0: off)")
	f.IntVar(&demo, "demo", 0, "write the chapter's demo page with `N` images into --root first")
	f.StringVar(&shopDir, "shop", "", "serve the cookie shop with its SQLite database in `DIR` instead of files")
	f.StringSliceVar(&site.Index, "index", []string{"index.html"}, "index file names")
	f.BoolVar(&site.Listing, "listing", false, "list directories without an index file")
	f.BoolVar(&site.FollowSymlinks, "follow-symlinks", false, "let symbolic links point outside the root")
	f.BoolVar(&site.Uploads, "uploads", false, "accept PUT uploads and POST forms")
	f.Int64Var(&site.MaxBodyBytes, "max-body", 1<<20, "largest request body, in bytes (413 beyond)")
	f.BoolVar(&site.NoGzip, "no-gzip", false, "never compress")
	f.StringArrayVar(&vhosts, "vhost", nil, "virtual host `name=dir` (repeatable)")
	f.StringArrayVar(&redirects, "redirect", nil, "301 redirect `/path=URL` (repeatable)")
	f.BoolVar(&cfg.NonPersistent, "non-persistent", false, "close the connection after every response")
	cfg.ReadHeaderTimeout, cfg.IdleTimeout = config.Duration(10*time.Second), config.Duration(60*time.Second)
	f.Var(&cfg.ReadHeaderTimeout, "read-header-timeout", "time allowed to send a request header")
	f.Var(&cfg.IdleTimeout, "idle-timeout", "close keep-alive connections idle this long")
	f.IntVar(&cfg.MaxHeaderBytes, "max-header-bytes", 16<<10, "largest request header (431 beyond)")
	f.StringVar(&cfg.AccessLog, "access-log", "", "access log format: common or combined")
	f.StringVar(&cfg.AccessLogFile, "access-log-file", "", "write the access log to this file (default: the log)")
	adminFlags(cmd, g, "")
	return cmd
}

type getFlags struct {
	verbose, head, timing, page, include bool
	h11, h2, h3                          bool
	out, data, method, mode              string
	headers                              []string
	cookieIn, cookieOut, jarFile         string
	cacheDir                             string
	parallel                             int
	opts                                 client.Options
}

func httpGetCommand(g *globals) *cobra.Command {
	var f getFlags
	cmd := &cobra.Command{
		Use:   "get URL",
		Short: "Fetch a URL like curl: show messages (-v), time phases, keep cookies and a cache, load whole pages",
		Long: `Sends one request and prints the body (or -o FILE). -v prints the request and
response messages, -I sends HEAD, -d sends a body (POST unless -X says
otherwise). --timing prints DNS, connect, TLS, time to first byte and
transfer. -b/-c read/write a Netscape cookies.txt file (curl's format);
--cookie-jar FILE does both. --cache DIR keeps responses and revalidates them
(If-None-Match / If-Modified-Since), reporting 304s. --page loads the HTML
page and every object it references in --mode (nonpersistent,
nonpersistent-parallel, persistent, pipelined, h2, h3, or all).
--resolver ADDR resolves names through that DNS server.`,
		Example: `  applayer http get -v http://127.0.0.1:8080/
  applayer http get --http2 --cacert /tmp/applayer-ca/ca.pem https://localhost:8443/
  applayer http get --cookie-jar cookies.txt http://shop.amazon.com/
  applayer http get --cache /tmp/webcache http://gaia.cs.umass.edu/
  applayer http get --page --mode all --resolver 127.1.0.2:53 http://gaia.cs.umass.edu/`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runGet(cmd, g, &f, args[0]) },
	}
	fl := cmd.Flags()
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "print the request and response messages to stderr")
	fl.BoolVarP(&f.include, "include", "i", false, "print the response header before the body")
	fl.BoolVarP(&f.head, "head", "I", false, "send HEAD and print the response header")
	fl.StringVarP(&f.out, "output", "o", "", "write the body to `FILE`")
	fl.StringVarP(&f.data, "data", "d", "", "send this request body (POST by default; @FILE reads a file)")
	fl.StringVarP(&f.method, "request", "X", "", "request method")
	fl.StringArrayVarP(&f.headers, "header", "H", nil, "extra request header `Name: value`")
	fl.BoolVar(&f.h11, "http1.1", false, "use HTTP/1.1")
	fl.BoolVar(&f.h2, "http2", false, "use HTTP/2 (ALPN for https, prior knowledge h2c for http)")
	fl.BoolVar(&f.h3, "http3", false, "use HTTP/3 over QUIC")
	fl.StringVarP(&f.opts.Proxy, "proxy", "x", "", "use this HTTP proxy `URL`")
	fl.StringVar(&f.opts.Resolver, "resolver", "", "resolve names through this DNS server `ADDR` (host:port)")
	fl.StringVar(&f.opts.CAFile, "cacert", "", "trust this CA certificate `FILE` (e.g. the lab CA's ca.pem)")
	fl.BoolVarP(&f.opts.Insecure, "insecure", "k", false, "do not verify the server certificate")
	fl.DurationVarP(&f.opts.Timeout, "max-time", "m", 30*time.Second, "time allowed for each request")
	fl.StringVarP(&f.cookieIn, "cookie", "b", "", "read cookies from this cookies.txt `FILE`")
	fl.StringVarP(&f.cookieOut, "cookie-out", "c", "", "write cookies to this cookies.txt `FILE` afterwards")
	fl.StringVar(&f.jarFile, "cookie-jar", "", "read and write cookies in this cookies.txt `FILE`")
	fl.StringVar(&f.cacheDir, "cache", "", "keep responses in `DIR` and revalidate them with conditional requests")
	fl.BoolVar(&f.timing, "timing", false, "print DNS, connect, TLS, first-byte and transfer times")
	fl.BoolVar(&f.page, "page", false, "load the page and every object it references")
	fl.StringVar(&f.mode, "mode", "persistent", "page mode: "+strings.Join(client.Modes(), ", ")+" or all")
	fl.IntVar(&f.parallel, "parallel", 5, "connections for nonpersistent-parallel")
	return cmd
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
	if f.page {
		modes := []string{f.mode}
		if f.mode == "all" {
			modes = client.Modes()
			if !strings.HasPrefix(u, "https:") {
				modes = modes[:len(modes)-1] // HTTP/3 needs https
			}
		}
		for _, m := range modes {
			pr, err := client.LoadPage(ctx, u, client.PageOptions{Mode: m, Parallel: f.parallel, Options: f.opts})
			if err != nil {
				fmt.Fprintf(g.stdout, "mode %s: %v\n", m, err)
				continue
			}
			pr.Summary(g.stdout)
		}
		return nil
	}
	var jar *client.Jar
	var err error
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
	var body io.Reader
	if f.data != "" {
		b := []byte(f.data)
		if name, ok := strings.CutPrefix(f.data, "@"); ok {
			if b, err = os.ReadFile(name); err != nil {
				return err
			}
		}
		body = bytes.NewReader(b)
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
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "applayer")
	if f.data != "" && method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, h := range f.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return fmt.Errorf("-H %q: want 'Name: value'", h)
		}
		if k, v = strings.TrimSpace(k), strings.TrimSpace(v); strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	res, err := c.Do(ctx, req)
	if err != nil {
		return err
	}
	if f.verbose {
		printExchange(g.stderr, res)
	}
	if f.head || f.include {
		printResponseHead(g.stdout, res.Response, "")
	}
	if res.FromCache {
		fmt.Fprintf(g.stderr, "* 304 Not Modified: body served from the cache (%d bytes)\n", len(res.Body))
	}
	if !f.head {
		if f.out != "" {
			if err := os.WriteFile(f.out, res.Body, 0o644); err != nil {
				return err
			}
		} else {
			g.stdout.Write(res.Body)
		}
	}
	if f.timing {
		t := res.Timing
		fmt.Fprintf(g.stderr, "* timing: dns %s, connect %s, tls %s, first byte %s, transfer %s, total %s (connection reused: %v)\n",
			t.DNS, t.Connect, t.TLS, t.TTFB, t.Transfer, t.Total, t.Reused)
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

func printExchange(w io.Writer, r *client.Result) {
	if r.Remote != "" {
		fmt.Fprintf(w, "* connected to %s\n", r.Remote)
	}
	req := r.Request
	proto := r.Response.Proto
	fmt.Fprintf(w, "> %s %s %s\n", req.Method, req.URL.RequestURI(), proto)
	if len(r.SentHeader) > 0 {
		for _, h := range r.SentHeader {
			fmt.Fprintf(w, "> %s\n", h)
		}
	} else {
		fmt.Fprintf(w, "> Host: %s\n", req.URL.Host)
		printHeader(w, req.Header, "> ")
	}
	fmt.Fprintln(w, ">")
	printResponseHead(w, r.Response, "< ")
}

func printResponseHead(w io.Writer, resp *http.Response, prefix string) {
	fmt.Fprintf(w, "%s%s %s\n", prefix, resp.Proto, resp.Status)
	h := resp.Header.Clone()
	if resp.ContentLength >= 0 && h.Get("Content-Length") == "" {
		h.Set("Content-Length", fmt.Sprint(resp.ContentLength))
	}
	printHeader(w, h, prefix)
	fmt.Fprintln(w, strings.TrimSpace(prefix))
}

func printHeader(w io.Writer, h http.Header, prefix string) {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			fmt.Fprintf(w, "%s%s: %s\n", prefix, k, v)
		}
	}
}
