package labzone

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/applayer/applayer/dns/zone"
	"github.com/applayer/applayer/lab"
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

// TestPlaced: records with fully qualified owners go into the deepest zone
// containing the owner; a delegation's NS goes to the parent side of the
// cut even when the child is a lab zone; a CNAME owner gets no generated
// address; an owner no zone contains, or a relative owner, is an error.
func TestPlaced(t *testing.T) {
	hosts := []Host{
		{Name: "a.root-servers.net", Addr: netip.MustParseAddr("127.1.0.1"), Zones: []string{"."}},
		{Name: "dns.nyu.edu", Addr: netip.MustParseAddr("127.1.0.2"), Zones: []string{"nyu.edu"}},
		{Name: "mail.nyu.edu", Addr: netip.MustParseAddr("127.1.0.3")},
		{Name: "ns.cdn.lab", Addr: netip.MustParseAddr("127.1.0.4"), Zones: []string{"cdn.lab"}},
	}
	zs, err := Zones(hosts, Options{Placed: []string{
		"nyu.edu. 300 IN MX 10 mail.nyu.edu.",
		"webmail.nyu.edu. CNAME mail.nyu.edu.",
		"mail.nyu.edu. CNAME smtp.nyu.edu.",
		"edge.cdn.lab. A 127.1.0.9",
		"video.cdn.lab. NS ns2.cdn.lab.",
		"lab. TXT \"root side\"",
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ origin, line string }{
		{"nyu.edu.", "nyu.edu. 300 IN MX 10 mail.nyu.edu."},
		{"nyu.edu.", "webmail.nyu.edu. CNAME mail.nyu.edu."},
		{"cdn.lab.", "edge.cdn.lab. A 127.1.0.9"},
		{"cdn.lab.", "video.cdn.lab. NS ns2.cdn.lab."},
		{".", "lab. TXT \"root side\""},
	} {
		if !strings.Contains(zs[c.origin], c.line) {
			t.Errorf("zone %s lacks %q:\n%s", c.origin, c.line, zs[c.origin])
		}
	}
	if strings.Contains(zs["nyu.edu."], "mail.nyu.edu. 3600 IN A") {
		t.Errorf("the CNAME owner mail.nyu.edu also got an address:\n%s", zs["nyu.edu."])
	}
	if _, err := zone.Parse(strings.NewReader(zs["nyu.edu."]), "nyu.edu.", "nyu.edu", false); err != nil {
		t.Errorf("nyu.edu does not parse: %v", err)
	}
	for _, bad := range []string{"example.org. MX 10 mail.example.org.", "www CNAME web.nyu.edu.", "nyu.edu. MX ten mail"} {
		if _, err := Zones(hosts[1:2], Options{Placed: []string{bad}}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	// A delegation of a lab zone is placed on the parent's side.
	zs, err = Zones(hosts, Options{Placed: []string{"cdn.lab. NS ns9.example.net."}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(zs["."], "cdn.lab. NS ns9.example.net.") {
		t.Errorf("the root lacks the delegation:\n%s", zs["."])
	}
}

// TestRootSignedOrNot: a resolver waits for the trust anchor only when a
// named root server signs the root; it knows there will be none when every
// named root server is a lab authority with an unsigned root, and cannot
// tell for a name that is not a lab authority.
func TestRootSignedOrNot(t *testing.T) {
	root := func(name string, sign bool) lab.PlannedHost {
		cfg := fmt.Sprintf(`{"zones":[{"origin":".","sign":%t}]}`, sign)
		return lab.PlannedHost{Name: name, Addr: netip.MustParseAddr("127.1.0.1"),
			Services: []lab.ServiceSpec{{Kind: AuthorityKind, Config: json.RawMessage(cfg)}}}
	}
	plan := &lab.Plan{Hosts: []lab.PlannedHost{
		root("a.root-servers.net", false),
		root("b.root-servers.net", true),
		{Name: "client.nyu.edu", Addr: netip.MustParseAddr("127.1.0.9")},
	}}
	for _, c := range []struct {
		names            []string
		signed, unsigned bool
	}{
		{[]string{"a.root-servers.net"}, false, true},
		{[]string{"A.root-servers.net."}, false, true},
		{[]string{"b.root-servers.net"}, true, false},
		{[]string{"a.root-servers.net", "b.root-servers.net"}, true, false},
		{[]string{"client.nyu.edu"}, false, false},
		{[]string{"nowhere.example"}, false, false},
		{nil, false, false},
	} {
		if got := RootSigned(plan, c.names); got != c.signed {
			t.Errorf("RootSigned(%v) = %v, want %v", c.names, got, c.signed)
		}
		if got := RootUnsigned(plan, c.names); got != c.unsigned {
			t.Errorf("RootUnsigned(%v) = %v, want %v", c.names, got, c.unsigned)
		}
	}
}
