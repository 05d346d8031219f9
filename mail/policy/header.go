package policy

import (
	"bytes"
	"errors"
	"fmt"
	"net/mail"
	"strings"
)

// Limits of the header parser: a remote controls the message.
const (
	maxHeaderBytes  = 1 << 20
	maxHeaderFields = 1000
)

// field is one header field of a message as it is on the wire.
type field struct {
	name  string // as written
	value string // unfolded, trimmed
	start int    // offset of the field in the message
	end   int    // offset after its final CRLF
}

var errNoHeaderEnd = errors.New("header: no empty line ends the header")

// parseHeader splits the header of a CRLF message into its fields and
// returns them with the offset where the body starts (after the empty
// line; len(msg) when the message is all header). A line that is neither
// a field nor a continuation is an error, as are more than
// maxHeaderFields fields or maxHeaderBytes of header.
func parseHeader(msg []byte) ([]field, int, error) {
	var fields []field
	i := 0
	for i < len(msg) {
		if i > maxHeaderBytes {
			return nil, 0, fmt.Errorf("header: longer than %d bytes", maxHeaderBytes)
		}
		eol := bytes.Index(msg[i:], []byte("\r\n"))
		if eol < 0 {
			// A last line without CRLF: the message is all header.
			eol = len(msg) - i
		}
		line := msg[i : i+eol]
		next := min(i+eol+2, len(msg))
		switch {
		case len(line) == 0:
			return fields, next, nil
		case line[0] == ' ' || line[0] == '\t':
			if len(fields) == 0 {
				return nil, 0, errors.New("header: continuation line before any field")
			}
			f := &fields[len(fields)-1]
			f.value = strings.TrimSpace(f.value + " " + strings.TrimSpace(string(line)))
			f.end = next
		default:
			colon := bytes.IndexByte(line, ':')
			if colon <= 0 {
				return nil, 0, fmt.Errorf("header: line %q is not a field", trunc(line))
			}
			name := string(line[:colon])
			for _, c := range []byte(name) {
				if c <= ' ' || c >= 0x7f {
					return nil, 0, fmt.Errorf("header: bad field name %q", trunc(line[:colon]))
				}
			}
			if len(fields) >= maxHeaderFields {
				return nil, 0, fmt.Errorf("header: more than %d fields", maxHeaderFields)
			}
			fields = append(fields, field{name: name, value: strings.TrimSpace(string(line[colon+1:])), start: i, end: next})
		}
		i = next
	}
	return fields, len(msg), nil
}

func trunc(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

// fromDomain returns the one domain of the message's From (RFC 7489
// 6.6.1): exactly one From field whose addresses all share a domain.
func fromDomain(h []field) (string, error) {
	var from []string
	for _, f := range h {
		if strings.EqualFold(f.name, "From") {
			from = append(from, f.value)
		}
	}
	if len(from) != 1 {
		return "", fmt.Errorf("%d From fields", len(from))
	}
	addrs, err := mail.ParseAddressList(from[0])
	if err != nil {
		return "", fmt.Errorf("From: %w", err)
	}
	domain := ""
	for _, a := range addrs {
		at := strings.LastIndexByte(a.Address, '@')
		if at < 0 {
			return "", fmt.Errorf("From: %q has no domain", a.Address)
		}
		d := canonDomain(a.Address[at+1:])
		if domain != "" && d != domain {
			return "", errors.New("From: addresses of several domains")
		}
		domain = d
	}
	if domain == "" {
		return "", errors.New("From: no address")
	}
	return domain, nil
}

func countFields(h []field, name string) int {
	n := 0
	for _, f := range h {
		if strings.EqualFold(f.name, name) {
			n++
		}
	}
	return n
}
