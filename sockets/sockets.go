// Package sockets holds the textbook socket-programming examples as real
// services: a UDP server that upper-cases each datagram and answers it to the
// sender's address, a TCP server that serves many clients at once (one
// goroutine per connection) and upper-cases each line, and their clients.
//
// Both servers follow the shared lifecycle of internal/service, publish every
// message on the trace bus, and bound what a client can make them do: a
// datagram size limit, and for TCP a line-length limit, read and idle
// timeouts and a connection cap.
package sockets

import (
	"bytes"
	"unicode/utf8"
)

// DefaultPort is the port the textbook's examples use.
const DefaultPort = 12000

// Upper returns line upper-cased. Valid UTF-8 is upper-cased as Unicode;
// anything else only in its ASCII letters, so arbitrary bytes come back
// unchanged apart from a-z.
func Upper(line []byte) []byte {
	if utf8.Valid(line) {
		return bytes.ToUpper(line)
	}
	out := make([]byte, len(line))
	for i, c := range line {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

// summary shortens a payload for a trace event.
func summary(prefix string, b []byte) string {
	const max = 60
	b = bytes.TrimRight(b, "\r\n")
	s := string(b)
	if len(s) > max {
		s = s[:max] + "…"
	}
	return prefix + " " + strconvQuote(s)
}

func strconvQuote(s string) string {
	var buf bytes.Buffer
	buf.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			buf.WriteByte('\\')
			buf.WriteRune(r)
		case r < 0x20 || r == utf8.RuneError:
			buf.WriteString("?")
		default:
			buf.WriteRune(r)
		}
	}
	buf.WriteByte('"')
	return buf.String()
}
