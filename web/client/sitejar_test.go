package client

import (
	"net/http"
	"net/url"
	"testing"
)

// TestSiteJarPolicies: a tracker cookie set while on one site is sent on
// another site's page only under allow; block never stores it, partition
// keeps it to the site it was set under. First-party cookies work under
// every policy.
func TestSiteJarPolicies(t *testing.T) {
	u := func(s string) *url.URL { p, _ := url.Parse(s); return p }
	gaia, shop, tracker := u("http://gaia.cs.umass.edu/"), u("http://shop.amazon.com/"), u("http://tracker.com/pixel.gif")
	for _, tc := range []struct {
		policy              string
		sameSite, otherSite int // tracker cookies sent back under gaia, under shop
		firstParty          int
	}{
		{ThirdPartyAllow, 1, 1, 1},
		{"", 1, 1, 1},
		{ThirdPartyBlock, 0, 0, 1},
		{ThirdPartyPartition, 1, 0, 1},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			j, err := NewSiteJar(tc.policy)
			if err != nil {
				t.Fatal(err)
			}
			j.For(gaia).SetCookies(tracker, []*http.Cookie{{Name: "tid", Value: "1"}})
			j.For(shop).SetCookies(shop, []*http.Cookie{{Name: "session", Value: "s"}})
			if n := len(j.For(gaia).Cookies(tracker)); n != tc.sameSite {
				t.Errorf("tracker cookies under gaia: %d, want %d", n, tc.sameSite)
			}
			if n := len(j.For(shop).Cookies(tracker)); n != tc.otherSite {
				t.Errorf("tracker cookies under shop: %d, want %d", n, tc.otherSite)
			}
			if n := len(j.For(shop).Cookies(shop)); n != tc.firstParty {
				t.Errorf("first-party cookies: %d, want %d", n, tc.firstParty)
			}
		})
	}
	if _, err := NewSiteJar("sometimes"); err == nil {
		t.Error("NewSiteJar accepted an unknown policy")
	}
	for host, want := range map[string]string{"gaia.cs.umass.edu": "umass.edu", "shop.amazon.com": "amazon.com", "tracker.com": "tracker.com", "127.0.0.1": "127.0.0.1", "LOCALHOST.": "localhost"} {
		if got := Site(host); got != want {
			t.Errorf("Site(%q) = %q, want %q", host, got, want)
		}
	}
}
