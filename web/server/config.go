package server

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/applayer/applayer/internal/config"
)

// Config configures a Server. Zero fields take the documented defaults.
type Config struct {
	// Addr is the cleartext TCP address (HTTP/1.1 and, with H2C, HTTP/2
	// with prior knowledge). Empty disables it unless TLS is off, in which
	// case it defaults to "127.0.0.1:8080".
	Addr string `json:"addr,omitempty"`
	// TLSAddr is the TLS TCP address (HTTP/1.1 and HTTP/2 by ALPN). Empty
	// disables TLS.
	TLSAddr string `json:"tls_addr,omitempty"`
	// HTTP3 also serves HTTP/3 over QUIC on TLSAddr's UDP port and
	// advertises it with Alt-Svc on the TCP listeners.
	HTTP3 bool `json:"http3,omitempty"`
	// H2C enables cleartext HTTP/2 (prior knowledge) on Addr. Default on;
	// set NoH2C to disable.
	NoH2C bool `json:"no_h2c,omitempty"`
	// TLS says where certificates come from.
	TLS TLSConfig `json:"tls,omitempty"`

	// Sites are the virtual hosts; the first is the default for Host names
	// no site claims. At least one is required.
	Sites []Site `json:"sites"`

	// NonPersistent closes the connection after every response (HTTP/1.x),
	// the chapter's non-persistent HTTP.
	NonPersistent bool `json:"non_persistent,omitempty"`
	// ReadHeaderTimeout bounds reading a request's header (slowloris). Default 10s.
	ReadHeaderTimeout config.Duration `json:"read_header_timeout,omitempty"`
	// ReadTimeout bounds reading a whole request. Default 60s.
	ReadTimeout config.Duration `json:"read_timeout,omitempty"`
	// WriteTimeout bounds writing a response. Default 0 (none: large files).
	WriteTimeout config.Duration `json:"write_timeout,omitempty"`
	// IdleTimeout closes a keep-alive connection idle this long. Default 60s.
	IdleTimeout config.Duration `json:"idle_timeout,omitempty"`
	// MaxHeaderBytes limits a request's header; larger gets 431. Default 16 KiB.
	MaxHeaderBytes int `json:"max_header_bytes,omitempty"`
	// AccessLog is "", "common" or "combined"; where it goes is
	// AccessLogFile (a path) or, when empty, the service logger.
	AccessLog     string `json:"access_log,omitempty"`
	AccessLogFile string `json:"access_log_file,omitempty"`
}

// TLSConfig selects the server certificate: CertFile/KeyFile, or a lab CA
// kept in CADir that issues a certificate for Names (and every site's hosts).
type TLSConfig struct {
	CertFile string   `json:"cert_file,omitempty"`
	KeyFile  string   `json:"key_file,omitempty"`
	CADir    string   `json:"ca_dir,omitempty"`
	Names    []string `json:"names,omitempty"`
}

// Site is one virtual host.
type Site struct {
	// Hosts are the Host header names served by this site (port ignored,
	// case-insensitive). Empty only for the default site.
	Hosts []string `json:"hosts,omitempty"`
	// Root is the directory served. Required unless Shop is set.
	Root string `json:"root,omitempty"`
	// Index are the file names served for a directory. Default index.html.
	Index []string `json:"index,omitempty"`
	// Listing serves a listing for directories without an index file.
	Listing bool `json:"listing,omitempty"`
	// FollowSymlinks lets symbolic links point outside Root. Default off:
	// such links answer 404.
	FollowSymlinks bool `json:"follow_symlinks,omitempty"`
	// Redirects maps request paths to Location URLs answered with 301.
	Redirects map[string]string `json:"redirects,omitempty"`
	// Uploads accepts PUT of files (written under Root) and POST of forms.
	Uploads bool `json:"uploads,omitempty"`
	// MaxBodyBytes limits request bodies; larger gets 413. Default 1 MiB.
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`
	// NoFileCache disables the in-memory cache of small files (up to 256
	// KiB, 64 MiB in all) and their precomputed headers.
	NoFileCache bool `json:"no_file_cache,omitempty"`
	// FileCacheValid is how long a cached file is trusted before a stat
	// checks its size and modification time again. Default 100ms.
	FileCacheValid config.Duration `json:"file_cache_valid,omitempty"`
	// NoGzip disables gzip compression of compressible types.
	NoGzip bool `json:"no_gzip,omitempty"`
	// Push, when set, pushes objects with the site's HTML pages over
	// HTTP/2 (server push): those listed for the page's path, or the
	// objects the page references.
	Push *Push `json:"push,omitempty"`
	// Shop, when set, serves the cookie shop with its database in this
	// data directory instead of files.
	Shop string `json:"shop,omitempty"`
	// Handler, when set (in-process wiring only, e.g. the DASH origin),
	// serves the site instead of files or the shop; the server still
	// adds its listeners, protocols, limits, access log and metrics.
	Handler http.Handler `json:"-"`
}

// Push configures HTTP/2 server push for a site's HTML pages (200
// answers to GET over HTTP/2, when the client allows push). Pushed objects
// are same-site paths; each push is a PUSH_PROMISE and then an ordinary
// response on the promised stream, served by the same handler.
type Push struct {
	// Paths maps a page's request path ("/" or "/index.html") to the
	// paths pushed with it ("/style.css"). A page listed here pushes
	// exactly these.
	Paths map[string][]string `json:"paths,omitempty"`
	// Refs pushes, for pages not in Paths, the same-site objects the page
	// references (img, script, link rel=stylesheet, ...; found by the
	// htmlrefs extractor the client's page loader uses). Only pages in the
	// small-file cache are scanned, once per version.
	Refs bool `json:"refs,omitempty"`
	// Max caps the pushes per page. Default 16, at most 100.
	Max int `json:"max,omitempty"`
}

func (c *Config) defaults() {
	if c.Addr == "" && c.TLSAddr == "" {
		c.Addr = "127.0.0.1:8080"
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = config.Duration(10 * time.Second)
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = config.Duration(60 * time.Second)
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = config.Duration(60 * time.Second)
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 16 << 10
	}
	for i := range c.Sites {
		s := &c.Sites[i]
		if len(s.Index) == 0 {
			s.Index = []string{"index.html"}
		}
		if s.MaxBodyBytes <= 0 {
			s.MaxBodyBytes = 1 << 20
		}
		if s.FileCacheValid <= 0 {
			s.FileCacheValid = config.Duration(100 * time.Millisecond)
		}
		if s.Push != nil && s.Push.Max <= 0 {
			p := *s.Push // do not write through the caller's pointer
			p.Max = 16
			s.Push = &p
		}
	}
}

// Validate checks the configuration, naming the offending field.
func (c *Config) Validate() error {
	if len(c.Sites) == 0 {
		return config.Errorf("sites", "at least one site is required")
	}
	for i, s := range c.Sites {
		f := fmt.Sprintf("sites[%d]", i)
		if s.Root == "" && s.Shop == "" && s.Handler == nil {
			return config.Errorf(f+".root", "a root directory (or shop) is required")
		}
		if i > 0 && len(s.Hosts) == 0 {
			return config.Errorf(f+".hosts", "only the first site may have no hosts")
		}
		if s.Push != nil {
			if s.Shop != "" {
				return config.Errorf(f+".push", "push is for file sites, not the shop")
			}
			if s.Push.Max < 0 || s.Push.Max > 100 {
				return config.Errorf(f+".push.max", "%d: want 0 (default 16) to 100", s.Push.Max)
			}
			for page, objs := range s.Push.Paths {
				if !strings.HasPrefix(page, "/") {
					return config.Errorf(f+".push.paths", "%q: page paths start with /", page)
				}
				for _, o := range objs {
					if !strings.HasPrefix(o, "/") || strings.HasPrefix(o, "//") {
						return config.Errorf(f+".push.paths", "%q: pushed paths start with / (same site)", o)
					}
				}
			}
		}
		for p, loc := range s.Redirects {
			if !strings.HasPrefix(p, "/") || loc == "" {
				return config.Errorf(f+".redirects", "%q -> %q: paths start with / and need a location", p, loc)
			}
		}
	}
	switch c.AccessLog {
	case "", "common", "combined":
	default:
		return config.Errorf("access_log", "%q: want common or combined", c.AccessLog)
	}
	if c.HTTP3 && c.TLSAddr == "" {
		return config.Errorf("http3", "needs tls_addr")
	}
	if c.TLSAddr != "" && c.TLS.CADir == "" && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		return config.Errorf("tls", "needs cert_file and key_file, or ca_dir")
	}
	if c.TLSAddr == "" && c.Addr == "" {
		return errors.New("server: no listener")
	}
	return nil
}
