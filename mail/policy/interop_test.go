package policy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/dns/dnstest"
	"github.com/applayer/applayer/internal/testkit"
)

// TestOpenDKIMVerifies has OpenDKIM (Debian's opendkim, the milter run in
// its test mode, -t) verify the signatures our Signer makes, with the
// key records served by our own authority server: libopendkim resolves
// through libunbound, configured with a stub zone pointing at it. Each
// key is checked alone (the other selector's record is left out), and a
// tampered body must fail.
func TestOpenDKIMVerifies(t *testing.T) {
	opendkim := testkit.Peer(t, "opendkim")
	s := testSigner(t)
	for _, sel := range []string{SelectorRSA, SelectorEd25519} {
		t.Run(sel, func(t *testing.T) {
			var keys []string
			for _, k := range s.Keys("crepes.fr") {
				if k.Selector == sel {
					owner, txt := k.Record()
					keys = append(keys, fmt.Sprintf("%s 3600 IN TXT %s", owner, quoteTXT(txt)))
				}
			}
			addr := dnstest.RandomBlock().Next()
			zone := fmt.Sprintf("crepes.fr. 3600 IN SOA ns.crepes.fr. hostmaster.crepes.fr. 1 3600 600 86400 60\ncrepes.fr. 3600 IN NS ns.crepes.fr.\nns.crepes.fr. 3600 IN A %s\n%s\n", addr, strings.Join(keys, "\n"))
			sv, err := dnstest.StartZones(t, 0, []dnstest.Zone{{Origin: "crepes.fr.", Addr: addr, Text: zone}})
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			unbound := filepath.Join(dir, "unbound.conf")
			writeFile(t, unbound, fmt.Sprintf(`server:
	module-config: "iterator"
	do-not-query-localhost: no
	qname-minimisation: no
	verbosity: 0
stub-zone:
	name: "crepes.fr"
	stub-addr: %s@%d
`, addr, sv.Port))
			conf := filepath.Join(dir, "opendkim.conf")
			writeFile(t, conf, fmt.Sprintf("Mode v\nSyslog no\nResolverConfiguration %s\nAlwaysAddARHeader no\n", unbound))
			signed, ok, err := s.Sign(msg("Alice <alice@crepes.fr>", "interop"))
			if err != nil || !ok {
				t.Fatalf("sign: %v %v", ok, err)
			}
			// Keep only this selector's signature.
			h, _, err := parseHeader(signed)
			if err != nil {
				t.Fatal(err)
			}
			var one []byte
			last := 0
			for _, f := range h {
				if strings.EqualFold(f.name, "DKIM-Signature") && !strings.Contains(f.value, "s="+sel+";") {
					one = append(one, signed[last:f.start]...)
					last = f.end
				}
			}
			one = append(one, signed[last:]...)
			run := func(m []byte) (string, error) {
				p := filepath.Join(dir, "msg.eml")
				writeFile(t, p, string(m))
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				out, err := exec.CommandContext(ctx, opendkim, "-x", conf, "-v", "-t", p).CombinedOutput()
				return string(out), err
			}
			out, err := run(one)
			t.Logf("opendkim: %s", out)
			if err != nil || !strings.Contains(out, "verification (s="+sel+", d=crepes.fr") || !strings.Contains(out, "succeeded") {
				t.Fatalf("opendkim did not verify the %s signature: %v\n%s", sel, err, out)
			}
			bad := bytes.Replace(one, []byte("crepes are ready"), []byte("crepes are burnt"), 1)
			out, err = run(bad)
			t.Logf("opendkim (tampered): %s", out)
			if strings.Contains(out, "succeeded") || !strings.Contains(out, ") failed") {
				t.Fatalf("opendkim verified a tampered message: %v\n%s", err, out)
			}
		})
	}
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
