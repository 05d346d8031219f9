// Package fastpath is applayer's HTTP/1.1 fast path, shared by the web
// server (web/server) and the web cache (web/proxy): a connection loop
// that parses request headers in place, without allocating, into a
// reusable Request view, lets a Handler answer the plain GET and HEAD
// requests it fully understands from memory (precomputed header blocks,
// cached bodies), answers every batch of pipelined requests with one
// writev, and hands the connection, with the bytes it buffered, to
// net/http for the first request it does not take (bodies, chunked,
// obs-fold, other methods or versions, Expect, Upgrade, ...). net/http
// stays the application interface (http.Handler) for everything else.
//
// Strictness: the parser accepts only what net/http's server parses to
// the same method, target, version and fields (FuzzParse proves it); the
// smuggling forms (Content-Length with Transfer-Encoding, duplicate
// Content-Length, bare CR or LF, invalid field names) are never taken:
// they go to net/http, which refuses them.
package fastpath

import "bytes"

// MaxFields is the most header fields a request taken by the fast path
// may have; one with more is handed over.
const MaxFields = 48

// Field is one header field of a Request, as sent (name case kept, value
// without surrounding whitespace).
type Field struct {
	Name, Value []byte
}

// Request is a view of one request header in the connection's buffer. It
// is valid only during Handler.ServeFast; its slices must not be kept.
type Request struct {
	// Method is GET or HEAD (Head says which).
	Method []byte
	Head   bool
	// Target is the request-target as sent: origin-form ("/p?q") or
	// absolute-form ("http://h/p").
	Target []byte
	// Path and Query split an origin-form target at the first '?' (Path
	// is then what net/http's URL.Path is: the fast path takes no
	// percent-encoding). Both are empty for an absolute-form target.
	Path, Query []byte
	// Host is the Host field's value (exactly one is required).
	Host []byte
	// Close says the client sent "Connection: close".
	Close bool
	// Fields are all the header fields, Host included, in order.
	Fields []Field
	// Raw is the whole header, request line through the blank line.
	Raw []byte

	fields [MaxFields]Field
}

// Get returns the value of the only field named name (lower case), ok
// false when there is none. dup is true when the field occurs more than
// once (value is then the first).
func (r *Request) Get(name string) (value []byte, ok, dup bool) {
	for i := range r.Fields {
		if EqualFold(r.Fields[i].Name, name) {
			if ok {
				return value, true, true
			}
			value, ok = r.Fields[i].Value, true
		}
	}
	return value, ok, false
}

// ScanHead finds the end of the request header at the start of b: end is
// its length (through the blank line) when b holds all of it. It takes
// only strict framing: every line ends in CRLF, with no bare CR or LF and
// no other control character but HTAB anywhere, so that the fast path
// can never see the header end, or a field, where net/http sees another.
// done with end 0 means b can't be a header the fast path takes (hand it
// over); neither means more bytes are needed.
func ScanHead(b []byte) (end int, done bool) {
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case c == '\r':
			if i+1 == len(b) {
				return 0, false
			}
			if b[i+1] != '\n' {
				return 0, true // bare CR
			}
			if i >= 2 && b[i-1] == '\n' && b[i-2] == '\r' {
				return i + 2, true // CRLF CRLF
			}
			i++ // the LF
		case c == '\n':
			return 0, true // bare LF
		case c < ' ' && c != '\t', c == 0x7f:
			return 0, true // NUL and other controls
		}
	}
	return 0, false
}

// Parse parses head (a complete header as ScanHead framed it) into r. It
// reports false, leaving r unusable, for anything the fast path does not
// take: a method other than GET and HEAD, a version other than HTTP/1.1,
// a target that is not a plain origin-form or http absolute-form one (no
// percent-encoding, fragment or unusual byte), a missing, duplicate or
// invalid Host, an invalid field name (obs-fold included), a request body
// (Content-Length, Transfer-Encoding), Expect, Upgrade, a Connection
// field other than one "close" or "keep-alive", or more than MaxFields
// fields.
func Parse(head []byte, r *Request) bool {
	r.Raw = head
	line, rest, _ := bytes.Cut(head, crlf)
	method, line, ok1 := bytes.Cut(line, sp)
	target, proto, ok2 := bytes.Cut(line, sp)
	if !ok1 || !ok2 || string(proto) != "HTTP/1.1" {
		return false
	}
	switch string(method) {
	case "GET":
		r.Head = false
	case "HEAD":
		r.Head = true
	default:
		return false
	}
	r.Method, r.Target = method, target
	if !splitTarget(r) {
		return false
	}
	r.Host, r.Close = nil, false
	haveHost, haveConn := false, false
	n := 0
	for len(rest) > 2 {
		var l []byte
		l, rest, _ = bytes.Cut(rest, crlf)
		name, value, ok := bytes.Cut(l, colon)
		if !ok || !IsToken(name) || n == MaxFields {
			return false // obs-fold, a malformed field, too many: net/http decides
		}
		value = trimOWS(value)
		r.fields[n] = Field{name, value}
		n++
		switch len(name) {
		case 4:
			if EqualFold(name, "host") {
				if haveHost || !ValidHost(value) {
					return false
				}
				r.Host, haveHost = value, true
			}
		case 6:
			if EqualFold(name, "expect") {
				return false
			}
		case 7:
			if EqualFold(name, "upgrade") {
				return false
			}
		case 10:
			if EqualFold(name, "connection") {
				switch {
				case haveConn:
					return false
				case EqualFold(value, "close"):
					r.Close = true
				case EqualFold(value, "keep-alive"):
				default:
					return false // upgrade or named fields: the general path
				}
				haveConn = true
			}
		case 14:
			if EqualFold(name, "content-length") {
				return false
			}
		case 17:
			if EqualFold(name, "transfer-encoding") {
				return false
			}
		}
	}
	if !haveHost {
		return false // HTTP/1.1 requires Host: net/http answers 400
	}
	r.Fields = r.fields[:n]
	return true
}

// splitTarget checks r.Target and sets Path and Query.
func splitTarget(r *Request) bool {
	t := r.Target
	r.Path, r.Query = nil, nil
	if len(t) == 0 {
		return false
	}
	for _, c := range t {
		if c >= 0x80 || !targetByte[c] {
			return false
		}
	}
	switch {
	case t[0] == '/':
		if len(t) > 1 && t[1] == '/' {
			return false // "//h/p": net/http reads a path, others an authority
		}
		r.Path, r.Query, _ = bytes.Cut(t, question)
		return true
	case HasPrefixFold(t, "http://"):
		return true
	}
	return false
}

var (
	crlf     = []byte("\r\n")
	sp       = []byte(" ")
	colon    = []byte(":")
	question = []byte("?")
)

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// IsToken reports whether b is a non-empty token (RFC 9110 section
// 5.6.2), the only field names net/http accepts.
func IsToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c >= 0x80 || !tokenByte[c] {
			return false
		}
	}
	return true
}

// ValidHost reports whether b is a Host value net/http accepts (the bytes
// of golang.org/x/net/http/httpguts.ValidHostHeader).
func ValidHost(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 || !hostByte[c] {
			return false
		}
	}
	return true
}

// tokenByte, hostByte and targetByte are read-only tables. targetByte is
// the bytes of a target the fast path takes: unreserved, sub-delims, ":",
// "@", "/" and "?" (no "%", "#" or anything net/http would escape).
var tokenByte, hostByte, targetByte = func() (tok, host, target [128]bool) {
	for c := '0'; c <= '9'; c++ {
		tok[c], host[c], target[c] = true, true, true
	}
	for c := 'a'; c <= 'z'; c++ {
		tok[c], host[c], target[c] = true, true, true
		tok[c-'a'+'A'], host[c-'a'+'A'], target[c-'a'+'A'] = true, true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		tok[c] = true
	}
	for _, c := range "!$%&'()*+,-.:;=[]_~" {
		host[c] = true
	}
	for _, c := range "-._~!$&'()*+,;=:@/?" {
		target[c] = true
	}
	return
}()

// EqualFold reports whether b equals lower (which is lower case) ignoring
// ASCII case.
func EqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// HasPrefixFold reports whether b starts with lower ignoring ASCII case.
func HasPrefixFold(b []byte, lower string) bool {
	return len(b) >= len(lower) && EqualFold(b[:len(lower)], lower)
}
