package policy

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"
)

// zoneResolver answers from a fixed table, for the fuzz targets, which
// run too many inputs for a DNS server per input. TXT answers for every
// name under the fuzzed domain come from txt.
type zoneResolver struct {
	txt map[string][]string
	ips map[string][]net.IPAddr
}

func notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (z zoneResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	if v, ok := z.txt[strings.TrimSuffix(name, ".")]; ok {
		return v, nil
	}
	return nil, notFound(name)
}

func (z zoneResolver) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	if strings.TrimSuffix(name, ".") == "f.test" {
		return []*net.MX{{Host: "mx.f.test.", Pref: 10}}, nil
	}
	return nil, notFound(name)
}

func (z zoneResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	if v, ok := z.ips[strings.TrimSuffix(host, ".")]; ok {
		return v, nil
	}
	return nil, notFound(host)
}

func (z zoneResolver) LookupAddr(_ context.Context, addr string) ([]string, error) {
	return nil, notFound(addr)
}

var validSPF = map[authres.ResultValue]bool{"pass": true, "fail": true, "softfail": true, "neutral": true, "none": true, "temperror": true, "permerror": true}

// FuzzSPFRecord feeds SPF records (the part of SPF a remote writes) to
// the evaluator: it must end with one of RFC 7208's results, quickly.
func FuzzSPFRecord(f *testing.F) {
	for _, s := range []string{
		"v=spf1 -all", "v=spf1 +all", "v=spf1 a mx -all", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ~all",
		"v=spf1 include:f.test -all", "v=spf1 redirect=f.test", "v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all",
		"v=spf1 a/24//64 mx:f.test/30 ?all", "v=spf1 exp=%{d}.exp -all", "v=spf1 ptr -all", "v=spf1 %{", "v=spf1 ip4:300.0.0.1",
		"v=spf1 a:%{h}.%{s}.%{o}.%{v}.%{c}.%{r}.%{t} -all", "v=spf1 unknown=x -all", "v=spf1 include",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rec string) {
		z := zoneResolver{
			txt: map[string][]string{"f.test": {rec}, "inc.f.test": {rec}},
			ips: map[string][]net.IPAddr{"f.test": {{IP: net.IPv4(192, 0, 2, 1)}}, "mx.f.test": {{IP: net.IPv4(192, 0, 2, 2)}}},
		}
		v := &Verifier{Resolver: z, AuthServID: "mx.test"}
		start := time.Now()
		r := v.Check(context.Background(), Message{IP: netip.MustParseAddr("192.0.2.9"), Helo: "h.f.test", MailFrom: "a@f.test", Body: []byte("From: a@f.test\r\n\r\n")})
		if !validSPF[r.SPF] {
			t.Fatalf("SPF result %q for %q", r.SPF, rec)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("%q took %v", rec, d)
		}
	})
}

// FuzzProcess runs the whole inbound check on arbitrary messages: the
// header parser, DKIM signature parsing, DMARC record parsing, the
// removal of forged Authentication-Results. The output must start with
// exactly one well-formed Authentication-Results of ours, carry no other
// field claiming our name, and keep the body as it came.
func FuzzProcess(f *testing.F) {
	f.Add([]byte("From: a@f.test\r\nSubject: x\r\n\r\nbody\r\n"), "v=DMARC1; p=reject")
	f.Add([]byte("Authentication-Results: mx.test; dmarc=pass\r\nFrom: a@f.test\r\n\r\n"), "v=DMARC1; p=quarantine; pct=10; sp=none")
	f.Add([]byte("DKIM-Signature: v=1; a=rsa-sha256; d=f.test; s=s; h=from; bh=x; b=y\r\nFrom: a@f.test\r\n\r\nx\r\n"), "v=DMARC1; p=none; adkim=s")
	f.Add([]byte("From: a@f.test\r\nFrom: b@g.test\r\n\r\n"), "v=DMARC2")
	f.Add([]byte("no colon\r\n\r\n"), "")
	f.Add([]byte(" cont\r\n"), "v=DMARC1; p=x")
	f.Fuzz(func(t *testing.T, body []byte, dmarcRec string) {
		z := zoneResolver{
			txt: map[string][]string{"f.test": {"v=spf1 ip4:192.0.2.9 -all"}, "_dmarc.f.test": {dmarcRec}, "s._domainkey.f.test": {dmarcRec}},
		}
		v := &Verifier{Resolver: z, AuthServID: "mx.test", Mode: ModeMark}
		out, r := v.Process(context.Background(), Message{IP: netip.MustParseAddr("192.0.2.9"), Helo: "h", MailFrom: "a@f.test", Body: body})
		if r.Verdict == Reject {
			t.Fatal("ModeMark rejected")
		}
		if _, _, err := parseHeader(body); err != nil {
			// The sender's header is broken: it is passed on as it came,
			// after our fields, which must be well formed themselves.
			if !bytes.HasSuffix(out, body) {
				t.Fatalf("broken input changed: %q", out)
			}
			out = append(out[:len(out)-len(body):len(out)-len(body)], "\r\n"...)
		}
		h, off, err := parseHeader(out)
		if err != nil {
			t.Fatalf("output header broken: %v\n%q", err, out)
		}
		if len(h) == 0 || !strings.EqualFold(h[0].name, "Authentication-Results") {
			t.Fatalf("output does not start with Authentication-Results: %q", out)
		}
		ours := 0
		for _, fl := range h {
			if strings.EqualFold(fl.name, "Authentication-Results") && strings.HasPrefix(strings.ToLower(fl.value), "mx.test;") {
				ours++
			}
		}
		if ours != 1 {
			t.Fatalf("%d fields claim mx.test in %q", ours, out)
		}
		if _, boff, err := parseHeader(body); err == nil && !bytes.Equal(out[off:], body[boff:]) {
			t.Fatalf("body changed")
		}
		if !lineEndingsOK(out[:h[0].end]) {
			t.Fatalf("bare CR/LF in our field: %q", out)
		}
	})
}

// lineEndingsOK reports whether every CR and LF in b is part of CRLF.
func lineEndingsOK(b []byte) bool {
	return bytes.Count(b, []byte("\r")) == bytes.Count(b, []byte("\r\n")) && bytes.Count(b, []byte("\n")) == bytes.Count(b, []byte("\r\n"))
}
