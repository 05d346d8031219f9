package client

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"golang.org/x/net/publicsuffix"
)

// Third-party cookie policies of a SiteJar.
const (
	// ThirdPartyAllow stores and sends every cookie whatever page the
	// request is for: the old default that lets a tracker embedded in
	// many sites follow one browser across them.
	ThirdPartyAllow = "allow"
	// ThirdPartyBlock neither stores nor sends cookies on requests to a
	// site other than the page's (the top-level site).
	ThirdPartyBlock = "block"
	// ThirdPartyPartition keeps a separate jar per top-level site, so a
	// tracker's cookie set under one site is not sent under another.
	ThirdPartyPartition = "partition"
)

// SiteJar is a cookie jar that knows which page (top-level site) each
// request is made for, and applies a third-party cookie policy. A site is
// a registrable domain (eTLD+1: gaia.cs.umass.edu's is umass.edu).
type SiteJar struct {
	policy string
	mu     sync.Mutex
	jars   map[string]*Jar // by top-level site; "" when not partitioned
}

// NewSiteJar returns a jar with policy (ThirdPartyAllow, ThirdPartyBlock
// or ThirdPartyPartition; "" is allow).
func NewSiteJar(policy string) (*SiteJar, error) {
	switch policy {
	case "":
		policy = ThirdPartyAllow
	case ThirdPartyAllow, ThirdPartyBlock, ThirdPartyPartition:
	default:
		return nil, fmt.Errorf("client: cookie policy %q: want allow, block or partition", policy)
	}
	return &SiteJar{policy: policy, jars: map[string]*Jar{}}, nil
}

// Site returns host's registrable domain (host itself when it has none,
// such as an IP address or localhost).
func Site(host string) string {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if s, err := publicsuffix.EffectiveTLDPlusOne(host); err == nil {
		return s
	}
	return host
}

// For returns the jar to use for requests made by a page of top (the URL
// in the address bar).
func (j *SiteJar) For(top *url.URL) http.CookieJar {
	return siteView{j: j, top: Site(top.Hostname())}
}

// Jar returns the underlying jar for top-level site top ("" unless
// partitioned), for inspection.
func (j *SiteJar) Jar(top string) *Jar {
	j.mu.Lock()
	defer j.mu.Unlock()
	key := ""
	if j.policy == ThirdPartyPartition {
		key = top
	}
	jr := j.jars[key]
	if jr == nil {
		jr = NewJar()
		j.jars[key] = jr
	}
	return jr
}

// siteView is a SiteJar seen from one top-level site.
type siteView struct {
	j   *SiteJar
	top string
}

func (v siteView) thirdParty(u *url.URL) bool { return Site(u.Hostname()) != v.top }

func (v siteView) SetCookies(u *url.URL, cookies []*http.Cookie) {
	if v.j.policy == ThirdPartyBlock && v.thirdParty(u) {
		return
	}
	v.j.Jar(v.top).SetCookies(u, cookies)
}

func (v siteView) Cookies(u *url.URL) []*http.Cookie {
	if v.j.policy == ThirdPartyBlock && v.thirdParty(u) {
		return nil
	}
	return v.j.Jar(v.top).Cookies(u)
}
