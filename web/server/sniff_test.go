package server

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		in   string
		full bool
		want verdict
	}{
		{"", false, needMore},
		{"G", false, needMore},
		{"GET", false, needMore},
		{"GET ", false, isHTTP1},
		{"HEAD /x HTTP/1.0\r\n", false, isHTTP1},
		{"\r\nGET / HTTP/1.1\r\n", false, isHTTP1},
		{"P", false, needMore},
		{"PRI * HTTP/2.0\r\n", false, needMore},
		{h2Preface, false, isH2C},
		{h2Preface + "\x00\x00\x00\x04", false, isH2C},
		{"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", false, reject},
		{"PRI / HTTP/1.1\r\n", false, isHTTP1},
		{"PRI * HTTP/2.0\r\n", true, reject},
		{"INVALID CONNECTION PREFACE\r\n\r\n", false, reject},
		{"INVALID CONNECTION", false, needMore},
		{"BREW /pot HTTP/1.1\r\n", false, isHTTP1},
		{"BREW /pot HTTP/1.1\n", false, isHTTP1},
		{"BREW /pot HTTP/x.y\r\n", false, reject},
		{"BREW /pot", true, isHTTP1},
		{"\x16\x03\x01\x02\x00", false, reject}, // a TLS ClientHello on the cleartext port
		{"hello\r\n", false, reject},
		{" GET / HTTP/1.1\r\n", false, reject},
		{"\r\n", false, needMore},
	} {
		if got := classify([]byte(tc.in), tc.full); got != tc.want {
			t.Errorf("classify(%q, %v) = %v, want %v", tc.in, tc.full, got, tc.want)
		}
	}
}

// FuzzClassify: the sniffer never panics, and its verdict does not change
// once made (more bytes never turn HTTP/1 into h2c or back).
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"GET / HTTP/1.1\r\n", h2Preface, "INVALID CONNECTION PREFACE\r\n\r\n", "BREW / HTTP/1.1\r\n", "\r\n\r\nPUT ", "PRI * HTTP/2.0\r\n\r\nSM"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		first := needMore
		for i := 0; i <= len(b); i++ {
			v := classify(b[:i], false)
			if first == needMore {
				first = v
			} else if v != first {
				t.Fatalf("classify(%q) = %v after %v for a shorter prefix", b[:i], v, first)
			}
		}
		classify(b, true)
	})
}

// TestSniffing: the cleartext port answers a short request at once,
// closes on an invalid HTTP/2 preface without an HTTP/1 answer, and with
// h2c off answers garbage with 400.
func TestSniffing(t *testing.T) {
	e := start(t, nil)
	quick := func(addr, req string) (string, time.Duration) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		t0 := time.Now()
		io.WriteString(c, req)
		b, _ := io.ReadAll(c)
		return string(b), time.Since(t0)
	}
	got, d := quick(e.plain, "GET /\r\n\r\n") // 9 bytes: fewer than the 14 net/http would wait for
	if !strings.HasPrefix(got, "HTTP/1.1 400 ") || d > 2*time.Second {
		t.Errorf("short request: %q after %v, want a prompt 400", got, d)
	}
	for _, bad := range []string{"INVALID CONNECTION PREFACE\r\n\r\n", "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", "\x16\x03\x01\x00\x05hello"} {
		if got, d := quick(e.plain, bad); got != "" || d > 2*time.Second {
			t.Errorf("invalid preface %q: answer %q after %v, want the connection closed", bad, got, d)
		}
	}
	off := start(t, func(c *Config) { c.NoH2C = true; c.TLSAddr = ""; c.HTTP3 = false })
	if got, _ := quick(off.plain, "THIS IS NOT AN HTTP REQUEST LINE\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 400 ") {
		t.Errorf("garbage with h2c off: %q, want 400", got)
	}
}
