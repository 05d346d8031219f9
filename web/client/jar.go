package client

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Jar is a cookie jar that reads and writes the Netscape cookies.txt format
// curl uses (-b / -c), so cookies can be exchanged with curl both ways.
type Jar struct {
	mu      sync.Mutex
	now     func() time.Time
	entries []jarEntry
}

type jarEntry struct {
	Domain     string // without leading dot
	Subdomains bool   // false: host-only cookie
	Path       string
	Secure     bool
	HTTPOnly   bool
	Expires    int64 // unix seconds; 0 for a session cookie
	Name       string
	Value      string
}

// NewJar returns an empty jar.
func NewJar() *Jar { return &Jar{now: time.Now} }

// LoadJar reads a cookies.txt file; a missing file gives an empty jar.
func LoadJar(path string) (*Jar, error) {
	j := NewJar()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return j, nil
	}
	if err != nil {
		return nil, fmt.Errorf("client: cookie jar: %w", err)
	}
	defer f.Close()
	if err := j.Read(f); err != nil {
		return nil, fmt.Errorf("client: cookie jar %s: %w", path, err)
	}
	return j, nil
}

// Read adds the cookies of a Netscape cookies.txt stream. Malformed lines
// are skipped, as curl does.
func (j *Jar) Read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		httpOnly := false
		if rest, ok := strings.CutPrefix(line, "#HttpOnly_"); ok {
			line, httpOnly = rest, true
		} else if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) < 6 {
			continue
		}
		if len(f) == 6 {
			f = append(f, "")
		}
		exp, err := strconv.ParseInt(f[4], 10, 64)
		if err != nil {
			continue
		}
		// A domain name never begins with a dot: "..x" is x (trimming one
		// dot would write back as ".x", read next time as x).
		domain := strings.ToLower(strings.TrimLeft(f[0], "."))
		if !validCookieDomain(domain) {
			continue // "#x" would be written back as a comment and lost
		}
		e := jarEntry{
			Domain: domain, Subdomains: strings.EqualFold(f[1], "TRUE"),
			Path: f[2], Secure: strings.EqualFold(f[3], "TRUE"), Expires: exp, Name: f[5], Value: f[6], HTTPOnly: httpOnly,
		}
		j.mu.Lock()
		j.put(e)
		j.mu.Unlock()
	}
	return sc.Err()
}

// Write writes every unexpired cookie in cookies.txt format.
func (j *Jar) Write(w io.Writer) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	bw := bufio.NewWriter(w)
	bw.WriteString("# Netscape HTTP Cookie File\n# Written by applayer; curl -b/-c reads and writes this format.\n\n")
	now := j.now().Unix()
	tf := func(b bool) string {
		if b {
			return "TRUE"
		}
		return "FALSE"
	}
	for _, e := range j.entries {
		if e.Expires != 0 && e.Expires <= now {
			continue
		}
		d := e.Domain
		if e.Subdomains {
			d = "." + d
		}
		if e.HTTPOnly {
			d = "#HttpOnly_" + d
		}
		fmt.Fprintf(bw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d, tf(e.Subdomains), e.Path, tf(e.Secure), e.Expires, e.Name, e.Value)
	}
	return bw.Flush()
}

// Save writes the jar to path.
func (j *Jar) Save(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("client: cookie jar: %w", err)
	}
	if err := j.Write(f); err != nil {
		f.Close()
		return fmt.Errorf("client: cookie jar: %w", err)
	}
	return f.Close()
}

func (j *Jar) put(e jarEntry) {
	for i, x := range j.entries {
		if x.Domain == e.Domain && x.Path == e.Path && x.Name == e.Name {
			j.entries[i] = e
			return
		}
	}
	j.entries = append(j.entries, e)
}

func (j *Jar) remove(domain, path, name string) {
	for i, x := range j.entries {
		if x.Domain == domain && x.Path == path && x.Name == name {
			j.entries = append(j.entries[:i], j.entries[i+1:]...)
			return
		}
	}
}

// validCookieDomain reports whether d can be a cookie's domain: a host name
// (letters, digits, '-', '_', '.') or an IP address (IPv6 without brackets,
// as hostOf gives it). Anything else, such as a "#" (the comment marker of
// cookies.txt), is a malformed line, skipped as curl skips them.
func validCookieDomain(d string) bool {
	if d == "" {
		return false
	}
	if net.ParseIP(d) != nil {
		return true
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func hostOf(u *url.URL) string {
	return strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
}

func domainMatch(host, domain string) bool {
	return host == domain || (strings.HasSuffix(host, "."+domain) && net.ParseIP(host) == nil)
}

func defaultPath(u *url.URL) string {
	p := u.EscapedPath()
	i := strings.LastIndex(p, "/")
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

func pathMatch(reqPath, cookiePath string) bool {
	if reqPath == "" {
		reqPath = "/"
	}
	if reqPath == cookiePath {
		return true
	}
	return strings.HasPrefix(reqPath, cookiePath) && (strings.HasSuffix(cookiePath, "/") || reqPath[len(cookiePath)] == '/')
}

// SetCookies implements http.CookieJar (RFC 6265 storage rules, without a
// public-suffix list: a Domain attribute must match the request host).
func (j *Jar) SetCookies(u *url.URL, cookies []*http.Cookie) {
	j.mu.Lock()
	defer j.mu.Unlock()
	host := hostOf(u)
	now := j.now()
	for _, c := range cookies {
		e := jarEntry{Name: c.Name, Value: c.Value, Secure: c.Secure, HTTPOnly: c.HttpOnly, Domain: host, Path: c.Path}
		if c.Domain != "" {
			d := strings.ToLower(strings.TrimPrefix(c.Domain, "."))
			if !domainMatch(host, d) || !strings.Contains(d, ".") && d != host {
				continue
			}
			e.Domain, e.Subdomains = d, true
		}
		if e.Path == "" || !strings.HasPrefix(e.Path, "/") {
			e.Path = defaultPath(u)
		}
		switch {
		case c.MaxAge < 0:
			j.remove(e.Domain, e.Path, e.Name)
			continue
		case c.MaxAge > 0:
			e.Expires = now.Add(time.Duration(c.MaxAge) * time.Second).Unix()
		case !c.Expires.IsZero():
			if !c.Expires.After(now) {
				j.remove(e.Domain, e.Path, e.Name)
				continue
			}
			e.Expires = c.Expires.Unix()
		}
		j.put(e)
	}
}

// Cookies implements http.CookieJar.
func (j *Jar) Cookies(u *url.URL) []*http.Cookie {
	j.mu.Lock()
	defer j.mu.Unlock()
	host := hostOf(u)
	now := j.now().Unix()
	secure := u.Scheme == "https"
	var match []jarEntry
	for _, e := range j.entries {
		if e.Expires != 0 && e.Expires <= now {
			continue
		}
		if e.Subdomains && !domainMatch(host, e.Domain) || !e.Subdomains && host != e.Domain {
			continue
		}
		if e.Secure && !secure || !pathMatch(u.EscapedPath(), e.Path) {
			continue
		}
		match = append(match, e)
	}
	sort.SliceStable(match, func(a, b int) bool { return len(match[a].Path) > len(match[b].Path) })
	out := make([]*http.Cookie, len(match))
	for i, e := range match {
		out[i] = &http.Cookie{Name: e.Name, Value: e.Value}
	}
	return out
}
