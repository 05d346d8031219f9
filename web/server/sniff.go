package server

import (
	"bytes"
	"log/slog"
	"net"
	"time"

	"github.com/applayer/applayer/internal/transport"
)

// The cleartext port speaks HTTP/1.1 and HTTP/2 with prior knowledge (h2c).
// Instead of letting net/http guess (it waits for 14 bytes, and reads an
// invalid HTTP/2 preface as an HTTP/1 request), a sniffer reads only as
// many bytes as it needs to decide and hands the connection, bytes
// replayed, to an HTTP/1-only or an h2c-only http.Server:
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

// sniffBufSize caps the bytes read before deciding.
const sniffBufSize = 4 << 10

// sniffer serves the cleartext listener with internal/transport's
// first-bytes hand-off: a StreamServer (accept loop with backoff) whose
// handler reads the first bytes and hands each connection, bytes replayed
// and still a *net.TCPConn underneath (sendfile), to the HTTP/1 or the h2c
// listener.
type sniffer struct {
	srv    *transport.StreamServer
	h1, h2 *transport.Handoff
}

// Consumers of the sniffer, by transport.Sniffer index.
const (
	toHTTP1 = iota
	toH2C
)

func newSniffer(ln net.Listener, timeout time.Duration, log *slog.Logger) *sniffer {
	s := &sniffer{h1: transport.NewHandoff(ln.Addr()), h2: transport.NewHandoff(ln.Addr())}
	sn := transport.NewSniffer(transport.SniffConfig{
		Classify: func(b []byte, full bool) int {
			switch classify(b, full) {
			case isHTTP1:
				return toHTTP1
			case isH2C:
				return toH2C
			case needMore:
				return transport.SniffMore
			}
			return transport.SniffReject // neither HTTP/1 nor an HTTP/2 preface
		},
		Timeout:  timeout,
		MaxBytes: sniffBufSize,
		Logger:   log,
	}, s.h1, s.h2)
	s.srv = transport.NewStreamServer(transport.StreamConfig{Logger: log}, sn)
	s.srv.Start(ln)
	return s
}

// close stops accepting, closes connections still being sniffed and waits
// for the sniffing goroutines. Connections already handed over belong to
// the http.Servers.
func (s *sniffer) close() {
	s.srv.Close()
}
