package app

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/applayer/applayer/internal/config"
	"github.com/applayer/applayer/internal/service"
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
		Example: `  applayer http serve --root ./site --listen 127.0.0.1:8080
  applayer http serve --root ./site --listen 127.0.0.1:8080 --tls-listen 127.0.0.1:8443 --http3 --ca-dir /tmp/ca
  applayer http serve --root ./a --listen 127.0.0.1:8080 --vhost b.example=./b --redirect /old=/new --access-log combined
  applayer http serve --root ./site --demo 10 --listen 127.0.0.1:8080 --tls-listen 127.0.0.1:8443 --push 16
  applayer http serve --shop /tmp/shopdata --listen 127.0.0.1:8081
  printf 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' | nc 127.0.0.1 8080`,
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
