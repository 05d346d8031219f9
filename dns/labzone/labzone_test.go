package labzone

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/applayer/applayer/dns/zone"
)

func TestZones(t *testing.T) {
	hosts := []Host{
		{Name: "a.root-servers.net", Addr: netip.MustParseAddr("127.1.0.1"), Zones: []string{"."}},
		{Name: "a.edu-servers.net", Addr: netip.MustParseAddr("127.1.0.2"), Zones: []string{"edu"}},
		{Name: "a.gtld-servers.net", Addr: netip.MustParseAddr("127.1.0.3"), Zones: []string{"com", "net"}},
		{Name: "dns.umass.edu", Addr: netip.MustParseAddr("127.1.0.4"), Zones: []string{"umass.edu"}},
		{Name: "gaia.cs.umass.edu", Addr: netip.MustParseAddr("127.1.0.5"), Zones: []string{"cs.umass.edu"}},
		{Name: "www.umass.edu", Addr: netip.MustParseAddr("127.1.0.6")},
		{Name: "alias.umass.edu", Addr: netip.MustParseAddr("127.1.0.8")},
	}
	zs, err := Zones(hosts, Options{Records: map[string][]string{"umass.edu.": {"mail 60 MX 10 dns", "alias CNAME www"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(zs) != 6 {
		t.Fatalf("%d zones", len(zs))
	}
	has := func(origin, line string) {
		t.Helper()
		if !strings.Contains(zs[origin], line) {
			t.Errorf("zone %s lacks %q:\n%s", origin, line, zs[origin])
		}
	}
	has(".", "edu. 3600 IN NS a.edu-servers.net.")
	has(".", "a.edu-servers.net. 3600 IN A 127.1.0.2") // glue
	has(".", "a.root-servers.net. 3600 IN A 127.1.0.1")
	has("net.", "a.edu-servers.net. 3600 IN A 127.1.0.2")
	has("edu.", "umass.edu. 3600 IN NS dns.umass.edu.")
	has("edu.", "dns.umass.edu. 3600 IN A 127.1.0.4")
	has("umass.edu.", "cs.umass.edu. 3600 IN NS gaia.cs.umass.edu.")
	has("umass.edu.", "gaia.cs.umass.edu. 3600 IN A 127.1.0.5")
	has("umass.edu.", "www.umass.edu. 3600 IN A 127.1.0.6")
	has("umass.edu.", "mail 60 MX 10 dns")
	has("cs.umass.edu.", "gaia.cs.umass.edu. 3600 IN A 127.1.0.5")
	if strings.Contains(zs["umass.edu."], "127.1.0.8") {
		t.Error("a CNAME owner got a generated address")
	}
	if strings.Contains(zs["edu."], "cs.umass.edu. 3600 IN NS") {
		t.Error("edu delegates a grandchild")
	}
	for o, text := range zs {
		if _, err := zone.Parse(strings.NewReader(text), o, o, false); err != nil {
			t.Errorf("zone %s does not load: %v\n%s", o, err, text)
		}
	}
}
