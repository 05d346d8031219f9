package server

import (
	"bytes"

	"github.com/applayer/applayer/web/fastpath"
)

// The cleartext port speaks HTTP/1.1 and HTTP/2 with prior knowledge (h2c).
// Instead of letting net/http guess (it waits for 14 bytes, and reads an
// invalid HTTP/2 preface as an HTTP/1 request), the fast path's Preface
// hook reads only as many bytes as it needs to decide: HTTP/1 stays on
// the fast path (web/fastpath, which hands what it does not take to an
// HTTP/1-only http.Server), h2c goes, bytes replayed, to an h2c-only
// http.Server:
//
//   - a prefix of the 24-byte preface "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n": wait
//     for the rest; the whole preface is h2c, anything else after it is an
//     invalid connection preface and the connection is closed (RFC 9113
//     section 3.4);
//   - a known method followed by a space ("GET ", 4 bytes): HTTP/1;
//   - another token and a space: HTTP/1 when the first line ends in
//     HTTP/d.d (net/http then answers 405, 505, ...), else closed;
//   - anything else (binary, no method): closed without an answer, as an
//     invalid HTTP/2 preface.

const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

type verdict int

const (
	needMore verdict = iota
	isHTTP1
	isH2C
	reject
)

var knownMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
	"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK"}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c < 0x80 && bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0
}

// classify decides what the first bytes of a cleartext connection are;
// full says no more bytes will fit in the sniff buffer.
func classify(b []byte, full bool) verdict {
	n := min(len(b), len(h2Preface))
	if string(b[:n]) == h2Preface[:n] {
		if n == len(h2Preface) {
			return isH2C
		}
		if full {
			return reject
		}
		return needMore
	}
	if len(b) >= 16 && string(b[:16]) == h2Preface[:16] {
		return reject // the preface's request line with a bad remainder
	}
	b = bytes.TrimLeft(b, "\r\n") // RFC 9112 2.2: empty lines before a request
	i := 0
	for i < len(b) && isTokenChar(b[i]) {
		i++
	}
	switch {
	case i == len(b) && !full:
		return needMore
	case i == 0 || i == len(b) || b[i] != ' ':
		return reject
	}
	for _, m := range knownMethods {
		if string(b[:i]) == m {
			return isHTTP1
		}
	}
	eol := bytes.IndexByte(b, '\n')
	if eol < 0 {
		if full {
			return isHTTP1 // a long line from an unknown method: net/http limits it
		}
		return needMore
	}
	line := bytes.TrimRight(b[:eol], "\r")
	v := line[bytes.LastIndexByte(line, ' ')+1:]
	if len(v) == 8 && string(v[:5]) == "HTTP/" && isDigit(v[5]) && v[6] == '.' && isDigit(v[7]) {
		return isHTTP1
	}
	return reject
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// preface is the fast path's Config.Preface: classify's verdict on a
// cleartext connection's first bytes.
func preface(b []byte, full bool) fastpath.Verdict {
	switch classify(b, full) {
	case isHTTP1:
		return fastpath.HTTP1
	case isH2C:
		return fastpath.Divert
	case needMore:
		return fastpath.More
	}
	return fastpath.Reject // neither HTTP/1 nor an HTTP/2 preface
}
