package server

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"html"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// CleanPath turns a decoded URL path into a path relative to a site's
// root ("." for the root itself). It refuses (ok false) paths that do not
// start with "/", contain NUL or backslash, or have a ".." segment, so
// nothing outside the root can be named.
func CleanPath(p string) (rel string, ok bool) {
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\x00\\") {
		return "", false
	}
	var parts []string
	for _, seg := range strings.Split(p[1:], "/") {
		switch seg {
		case "", ".":
			continue
		case "..":
			return "", false
		}
		parts = append(parts, seg)
	}
	if len(parts) == 0 {
		return ".", true
	}
	return strings.Join(parts, "/"), true
}

// fileSite serves one site's files.
type fileSite struct {
	cfg  Site
	root *os.Root // confines lookups to Root (symlinks may not escape)

	cache *fileCache // nil when disabled

	pushes prometheus.Counter // HTTP/2 pushes made; nil in tests

	mu    sync.Mutex
	gz    map[string][]byte // gzip bodies of large files by strong ETag
	gzLen int
}

const (
	gzipMin      = 256
	gzipMaxFile  = 8 << 20
	gzipCacheMax = 64 << 20
)

func newFileSite(cfg Site) (*fileSite, error) {
	r, err := os.OpenRoot(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("server: site root: %w", err)
	}
	s := &fileSite{cfg: cfg, root: r, gz: map[string][]byte{}}
	if !cfg.NoFileCache {
		s.cache = newFileCache(cfg.FileCacheValid.D(), s.stat)
	}
	return s, nil
}

func (s *fileSite) stat(rel string) (fs.FileInfo, error) {
	if s.cfg.FollowSymlinks {
		return os.Stat(filepath.Join(s.cfg.Root, filepath.FromSlash(rel)))
	}
	return s.root.Stat(rel)
}

func (s *fileSite) close() error {
	if s.cache != nil {
		s.cache.close()
	}
	return s.root.Close()
}

func (s *fileSite) open(rel string) (*os.File, error) {
	if s.cfg.FollowSymlinks {
		return os.Open(filepath.Join(s.cfg.Root, filepath.FromSlash(rel)))
	}
	return s.root.Open(rel)
}

func (s *fileSite) allow() string {
	if s.cfg.Uploads {
		return "GET, HEAD, OPTIONS, POST, PUT"
	}
	return "GET, HEAD, OPTIONS"
}

func (s *fileSite) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The hot path: a cached file. Only paths that passed CleanPath and are
	// not redirects are ever cached.
	if s.cache != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		if r.ProtoMajor == 2 {
			drainSmall(r.Body)
		}
		if e := s.cache.get(r.URL.Path); e != nil && !e.large {
			s.serveEntry(w, r, e)
			return
		}
	}
	rel, ok := CleanPath(r.URL.Path)
	if !ok {
		http.Error(w, "400 bad request path", http.StatusBadRequest)
		return
	}
	if loc, ok := s.cfg.Redirects[r.URL.Path]; ok {
		w.Header().Set("Location", loc)
		w.WriteHeader(http.StatusMovedPermanently)
		if r.Method != http.MethodHead {
			fmt.Fprintf(w, "<a href=\"%s\">Moved Permanently</a>.\n", html.EscapeString(loc))
		}
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.get(w, r, rel)
	case http.MethodOptions:
		w.Header().Set("Allow", s.allow())
		w.WriteHeader(http.StatusNoContent)
	case http.MethodPut:
		if !s.cfg.Uploads {
			s.refuse(w, r)
			return
		}
		s.put(w, r, rel)
	case http.MethodPost:
		if !s.cfg.Uploads {
			s.refuse(w, r)
			return
		}
		s.post(w, r)
	default:
		methodNotAllowed(w, s.allow())
	}
}

// refuse answers 405 after reading a small request body, so that a
// malformed body is reported as such (see post).
func (s *fileSite) refuse(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, io.LimitReader(r.Body, min(s.cfg.MaxBodyBytes, 64<<10)))
	methodNotAllowed(w, s.allow())
}

// drainSmall reads up to 64 KiB of an HTTP/2 GET's request body (normally
// none: it returns at once) before the answer, so that frames arriving on
// a stream the client left open (WINDOW_UPDATE overflow, a bad
// content-length) are judged while the stream is still open rather than
// raced by a fast response (h2spec 6.9.1/3).
func drainSmall(b io.Reader) {
	// A pooled buffer: one on the stack escapes through the interface call
	// and cost an allocation per HTTP/2 request.
	buf := drainPool.Get().(*[512]byte)
	defer drainPool.Put(buf)
	for n := 0; n < 64<<10; {
		m, err := b.Read(buf[:])
		n += m
		if err != nil {
			return
		}
	}
}

var drainPool = sync.Pool{New: func() any { return new([512]byte) }}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
}

func openError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, fs.ErrPermission):
		http.Error(w, "403 forbidden", http.StatusForbidden)
	default: // not found, or a symlink escaping the root
		http.Error(w, "404 page not found", http.StatusNotFound)
	}
}

func (s *fileSite) get(w http.ResponseWriter, r *http.Request, rel string) {
	f, err := s.open(rel)
	if err != nil {
		openError(w, err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		openError(w, err)
		return
	}
	if fi.IsDir() {
		if !strings.HasSuffix(r.URL.Path, "/") {
			u := *r.URL
			u.Path += "/"
			http.Redirect(w, r, u.RequestURI(), http.StatusMovedPermanently)
			return
		}
		for _, idx := range s.cfg.Index {
			name := path.Join(rel, idx)
			g, err := s.open(name)
			if err != nil {
				continue
			}
			gi, err := g.Stat()
			if err != nil || gi.IsDir() {
				g.Close()
				continue
			}
			defer g.Close()
			s.file(w, r, name, g, gi)
			return
		}
		if !s.cfg.Listing {
			http.Error(w, "403 directory listing disabled", http.StatusForbidden)
			return
		}
		s.listing(w, r, f)
		return
	}
	if !fi.Mode().IsRegular() {
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	s.file(w, r, rel, f, fi)
}

// ETag returns the strong entity tag the server uses for a file: its size
// and modification time in nanoseconds.
func ETag(fi fs.FileInfo) string {
	return `"` + strconv.FormatInt(fi.Size(), 16) + "-" + strconv.FormatInt(fi.ModTime().UnixNano(), 16) + `"`
}

var compressible = []string{"text/", "application/javascript", "application/json", "application/xml", "image/svg+xml", "application/wasm"}

func isCompressible(ctype string) bool {
	for _, p := range compressible {
		if strings.HasPrefix(ctype, p) {
			return true
		}
	}
	return false
}

// AcceptsGzip reports whether an Accept-Encoding value admits gzip
// (q-values honoured; "*" counts).
func AcceptsGzip(ae string) bool { return acceptsGzip(ae) }

// acceptsGzip is AcceptsGzip for a value in a string or in a request's
// buffer; it allocates nothing unless a q-value is not plain decimal.
func acceptsGzip[S ~string | ~[]byte](ae S) bool {
	star := false
	for len(ae) > 0 {
		part := ae
		if i := indexByte(ae, ','); i >= 0 {
			part, ae = ae[:i], ae[i+1:]
		} else {
			ae = ae[:0]
		}
		name, params := part, part[:0]
		if i := indexByte(part, ';'); i >= 0 {
			name, params = part[:i], part[i+1:]
		}
		q := 1.0
		for len(params) > 0 {
			p := params
			if i := indexByte(params, ';'); i >= 0 {
				p, params = params[:i], params[i+1:]
			} else {
				params = params[:0]
			}
			if i := indexByte(p, '='); i >= 0 && asciiEqualFold(trimASCII(p[:i]), "q") {
				if f, ok := parseQ(trimASCII(p[i+1:])); ok {
					q = f
				}
			}
		}
		switch name = trimASCII(name); {
		case asciiEqualFold(name, "gzip"), asciiEqualFold(name, "x-gzip"):
			return q > 0
		case len(name) == 1 && name[0] == '*':
			star = q > 0
		}
	}
	return star
}

func indexByte[S ~string | ~[]byte](s S, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func trimASCII[S ~string | ~[]byte](s S) S {
	space := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r' }
	for len(s) > 0 && space(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && space(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func asciiEqualFold[S ~string | ~[]byte](s S, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// parseQ parses a q-value as strconv.ParseFloat does, without allocating
// for plain decimals ("1", "0.5", ".5").
func parseQ[S ~string | ~[]byte](v S) (float64, bool) {
	plain, dot := len(v) > 0 && len(v) <= 8, false
	for i := 0; plain && i < len(v); i++ {
		switch c := v[i]; {
		case c == '.' && !dot:
			dot = true
		case c < '0' || c > '9':
			plain = false
		}
	}
	if !plain || (dot && len(v) == 1) {
		f, err := strconv.ParseFloat(string(v), 64)
		return f, err == nil
	}
	var n, div float64 = 0, 1
	dot = false
	for i := 0; i < len(v); i++ {
		if v[i] == '.' {
			dot = true
			continue
		}
		n = n*10 + float64(v[i]-'0')
		if dot {
			div *= 10
		}
	}
	return n / div, true
}

func (s *fileSite) file(w http.ResponseWriter, r *http.Request, name string, f *os.File, fi fs.FileInfo) {
	if s.cache != nil && fi.Size() <= cacheMaxFile {
		if e := s.cacheFile(r.URL.Path, name, f, fi); e != nil {
			s.serveEntry(w, r, e)
			return
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			http.Error(w, "500 seek", http.StatusInternalServerError)
			return
		}
	}
	h := w.Header()
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		var buf [512]byte
		n, _ := io.ReadFull(f, buf[:])
		ctype = http.DetectContentType(buf[:n])
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			http.Error(w, "500 seek", http.StatusInternalServerError)
			return
		}
	}
	h.Set("Content-Type", ctype)
	h.Set("Accept-Ranges", "bytes")
	etag := ETag(fi)
	var content io.ReadSeeker = f
	if !s.cfg.NoGzip && isCompressible(ctype) && fi.Size() >= gzipMin && fi.Size() <= gzipMaxFile {
		h.Add("Vary", "Accept-Encoding")
		if AcceptsGzip(r.Header.Get("Accept-Encoding")) {
			if body, err := s.gzipped(etag, f); err == nil {
				etag = etag[:len(etag)-1] + `-gz"`
				h.Set("Content-Encoding", "gzip")
				content = bytes.NewReader(body)
			}
		}
	}
	h.Set("ETag", etag)
	if s.cfg.Push != nil && !hasCondFields(r) && r.Header.Get("If-None-Match") == "" && r.Header.Get("If-Modified-Since") == "" {
		s.pushFor(w, r, nil, ctype)
	}
	ServeContent(w, r, name, fi.ModTime(), content)
}

// cacheFile reads the small file f (name relative to the root) into a
// cache entry and publishes it under the URL path key; nil when reading
// fails.
func (s *fileSite) cacheFile(key, name string, f *os.File, fi fs.FileInfo) *cacheEntry {
	body := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, body); err != nil {
		return nil
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = http.DetectContentType(body)
	}
	zip := !s.cfg.NoGzip && isCompressible(ctype) && fi.Size() >= gzipMin
	e := newCacheEntry(name, fi, body, ctype, zip)
	s.cache.put(key, e)
	return e
}

// load puts the file a GET for the URL path p would serve (a regular
// file, or a directory's index file for a path ending in "/") into the
// small-file cache, for the fast path's misses; nil when p is anything
// else (redirect, listing, error: net/http answers those). A file above
// cacheMaxFile is cached without its body (a large entry, sent with
// sendfile) when large is set, else it is not cached either.
func (s *fileSite) load(p string, large bool) *cacheEntry {
	rel, ok := CleanPath(p)
	if !ok {
		return nil
	}
	if _, ok := s.cfg.Redirects[p]; ok {
		return nil
	}
	open := func(name string) (*os.File, fs.FileInfo) {
		f, err := s.open(name)
		if err != nil {
			return nil, nil
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, nil
		}
		return f, fi
	}
	f, fi := open(rel)
	if f == nil {
		return nil
	}
	if fi.IsDir() {
		f.Close()
		if !strings.HasSuffix(p, "/") {
			return nil
		}
		dir := rel
		f = nil
		for _, idx := range s.cfg.Index {
			name := path.Join(dir, idx)
			g, gi := open(name)
			if g == nil {
				continue
			}
			if gi.IsDir() {
				g.Close()
				continue
			}
			f, fi, rel = g, gi, name
			break
		}
		if f == nil {
			return nil
		}
	}
	switch {
	case !fi.Mode().IsRegular() || fi.Size() > cacheMaxFile && !large:
		f.Close()
		return nil
	case fi.Size() > cacheMaxFile:
		return s.cacheLarge(p, rel, f, fi)
	}
	defer f.Close()
	return s.cacheFile(p, rel, f, fi)
}

// cacheLarge publishes a large entry for the file f (name relative to the
// root, above cacheMaxFile) under the URL path key, keeping f open for
// sendfile (f is the entry's from then on); nil when reading its type
// fails.
func (s *fileSite) cacheLarge(key, name string, f *os.File, fi fs.FileInfo) *cacheEntry {
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		var buf [512]byte
		n, err := f.ReadAt(buf[:], 0)
		if err != nil && err != io.EOF {
			f.Close()
			return nil
		}
		ctype = http.DetectContentType(buf[:n])
	}
	// Vary as file's general path answers: net/http compresses the
	// compressible ones up to gzipMaxFile for clients that accept gzip.
	zip := !s.cfg.NoGzip && isCompressible(ctype) && fi.Size() <= gzipMaxFile
	e := newCacheEntry(name, fi, nil, ctype, zip)
	e.large = true
	if s.cache.open.Load() < maxOpenFiles {
		e.file.Store(s.cache.newSendFile(f))
	} else {
		f.Close()
	}
	s.cache.put(key, e)
	return e
}

func (s *fileSite) gzipped(etag string, f io.Reader) ([]byte, error) {
	s.mu.Lock()
	b, ok := s.gz[etag]
	s.mu.Unlock()
	if ok {
		return b, nil
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if _, err := io.Copy(zw, f); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	b = buf.Bytes()
	s.mu.Lock()
	if s.gzLen+len(b) > gzipCacheMax {
		s.gz, s.gzLen = map[string][]byte{}, 0
	}
	s.gz[etag] = b
	s.gzLen += len(b)
	s.mu.Unlock()
	return b, nil
}

func (s *fileSite) listing(w http.ResponseWriter, r *http.Request, dir *os.File) {
	ents, err := dir.ReadDir(-1)
	if err != nil {
		http.Error(w, "500 cannot read directory", http.StatusInternalServerError)
		return
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	var b strings.Builder
	title := html.EscapeString(r.URL.Path)
	fmt.Fprintf(&b, "<!doctype html>\n<html><head><title>Index of %s</title></head><body>\n<h1>Index of %s</h1>\n<ul>\n", title, title)
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() {
			n += "/"
		}
		u := url.URL{Path: n}
		fmt.Fprintf(&b, "<li><a href=\"%s\">%s</a></li>\n", u.EscapedPath(), html.EscapeString(n))
	}
	b.WriteString("</ul></body></html>\n")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	if r.Method != http.MethodHead {
		io.WriteString(w, b.String())
	}
}

func tooLarge(w http.ResponseWriter, limit int64) {
	http.Error(w, fmt.Sprintf("413 request body larger than %d bytes", limit), http.StatusRequestEntityTooLarge)
}

func (s *fileSite) put(w http.ResponseWriter, r *http.Request, rel string) {
	if rel == "." || strings.HasSuffix(r.URL.Path, "/") {
		http.Error(w, "400 PUT needs a file name", http.StatusBadRequest)
		return
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		tooLarge(w, s.cfg.MaxBodyBytes)
		return
	}
	if d := path.Dir(rel); d != "." {
		if err := s.root.MkdirAll(d, 0o755); err != nil {
			http.Error(w, "409 cannot create directory", http.StatusConflict)
			return
		}
	}
	_, statErr := s.root.Stat(rel)
	tmp := fmt.Sprintf("%s.upload-%d", rel, time.Now().UnixNano())
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		openError(w, err)
		return
	}
	_, err = io.Copy(f, http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.root.Remove(tmp)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			tooLarge(w, s.cfg.MaxBodyBytes)
			return
		}
		http.Error(w, "400 reading body", http.StatusBadRequest)
		return
	}
	if err := s.root.Rename(tmp, rel); err != nil {
		s.root.Remove(tmp)
		http.Error(w, "500 cannot store file", http.StatusInternalServerError)
		return
	}
	if s.cache != nil {
		s.cache.forget(rel)
	}
	w.Header().Set("Content-Location", r.URL.Path)
	if statErr == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Location", r.URL.Path)
	w.WriteHeader(http.StatusCreated)
}

// post answers a submitted form (application/x-www-form-urlencoded or
// multipart) with a page listing the fields received.
func (s *fileSite) post(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > s.cfg.MaxBodyBytes {
		tooLarge(w, s.cfg.MaxBodyBytes)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	var err error
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/") {
		err = r.ParseMultipartForm(s.cfg.MaxBodyBytes)
	} else {
		err = r.ParseForm()
	}
	if err == nil {
		// Read what ParseForm left (other content types) before answering,
		// so a body that breaks its framing (an HTTP/2 content-length
		// mismatch) is refused as such rather than raced by the answer.
		_, err = io.Copy(io.Discard, r.Body)
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			tooLarge(w, s.cfg.MaxBodyBytes)
			return
		}
		http.Error(w, "400 bad form: "+err.Error(), http.StatusBadRequest)
		return
	}
	keys := make([]string, 0, len(r.PostForm))
	for k := range r.PostForm {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("<!doctype html>\n<html><body><h1>Form received</h1>\n<dl>\n")
	for _, k := range keys {
		for _, v := range r.PostForm[k] {
			fmt.Fprintf(&b, "<dt>%s</dt><dd>%s</dd>\n", html.EscapeString(k), html.EscapeString(v))
		}
	}
	b.WriteString("</dl></body></html>\n")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	io.WriteString(w, b.String())
}

// MaxRanges is how many ranges one request may ask for: a Range header
// with more is ignored and the whole representation is sent (200), as
// Apache does past its MaxRanges (also 200). Thousands of one-byte
// ranges cost a multipart part each: a 12 KB request for 280 KB of part
// headers.
const MaxRanges = 200

// ServeContent is http.ServeContent with a Range header of more than
// MaxRanges ranges dropped first (RFC 9110 section 14.2: a server may
// ignore Range).
func ServeContent(w http.ResponseWriter, r *http.Request, name string, modtime time.Time, content io.ReadSeeker) {
	if v := r.Header.Get("Range"); strings.Count(v, ",") >= MaxRanges {
		r2 := *r // a handler does not change the request it was given
		r2.Header = r.Header.Clone()
		r2.Header.Del("Range")
		r = &r2
	}
	http.ServeContent(w, r, name, modtime, content)
}
