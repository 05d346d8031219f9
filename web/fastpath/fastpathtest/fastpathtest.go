// Package fastpathtest is the reference the HTTP/1.1 fast paths are tested
// against: net/http's server's reading of a request.
package fastpathtest

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"net/textproto"

	"golang.org/x/net/http/httpguts"
)

// ReadAsNetHTTP parses the first request in raw as net/http's server does
// (http.ReadRequest and the checks its conn.readRequest adds), returning
// the request and the bytes it consumed.
func ReadAsNetHTTP(raw []byte) (*http.Request, int, error) {
	rd := bytes.NewReader(raw)
	br := bufio.NewReader(rd)
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, 0, err
	}
	end := len(raw) - rd.Len() - br.Buffered()
	return req, end, ServerChecks(req, raw[:end])
}

// ServerChecks are the checks net/http's server makes of a request after
// parsing it (net/http's conn.readRequest): a Host field for HTTP/1.1,
// exactly one and valid, and valid field names and values. raw is the
// request's bytes (http.ReadRequest drops the Host fields from the header).
func ServerChecks(req *http.Request, raw []byte) error {
	tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(raw)))
	if _, err := tr.ReadLine(); err != nil {
		return err
	}
	h, err := tr.ReadMIMEHeader()
	if err != nil {
		return err
	}
	hosts, haveHost := h["Host"]
	if req.ProtoAtLeast(1, 1) && (!haveHost || len(hosts) == 0) && req.Method != http.MethodConnect {
		return errors.New("missing required Host header")
	}
	if len(hosts) > 1 {
		return errors.New("too many Host headers")
	}
	if len(hosts) == 1 && !httpguts.ValidHostHeader(hosts[0]) {
		return errors.New("malformed Host header")
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return errors.New("invalid header name")
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return errors.New("invalid header value")
			}
		}
	}
	return nil
}
