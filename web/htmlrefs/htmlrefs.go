// Package htmlrefs finds the objects an HTML page references (images,
// scripts, style sheets, video and audio sources, ...): the page loader of
// web/client fetches them and web/server pushes them over HTTP/2.
package htmlrefs

import (
	"bytes"
	"net/url"
	"strings"

	"golang.org/x/net/html"
)

// refAttrs are the attributes that name an object a page needs, by tag.
var refAttrs = map[string][]string{
	"img":    {"src"},
	"script": {"src"},
	"link":   {"href"},
	"video":  {"src", "poster"},
	"audio":  {"src"},
	"source": {"src"},
	"track":  {"src"},
	"embed":  {"src"},
	"object": {"data"},
	"input":  {"src"},
}

// linkRels are the <link rel> values that load an object.
var linkRels = map[string]bool{"stylesheet": true, "icon": true, "preload": true, "modulepreload": true, "shortcut": true, "apple-touch-icon": true}

// Extract returns the absolute http(s) URLs of the objects an HTML page
// references (images, scripts, style sheets, video and audio sources, ...),
// resolved against base (or a <base href>), without duplicates, in
// document order. Fragments are dropped.
func Extract(base *url.URL, page []byte) []*url.URL {
	z := html.NewTokenizer(bytes.NewReader(page))
	seen := map[string]bool{}
	var out []*url.URL
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			return out
		}
		if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
			continue
		}
		name, hasAttr := z.TagName()
		if !hasAttr {
			continue
		}
		tag := string(name)
		attrs := map[string]string{}
		for {
			k, v, more := z.TagAttr()
			attrs[strings.ToLower(string(k))] = string(v)
			if !more {
				break
			}
		}
		if tag == "base" {
			if h, ok := attrs["href"]; ok {
				if b, err := base.Parse(strings.TrimSpace(h)); err == nil {
					base = b
				}
			}
			continue
		}
		names, ok := refAttrs[tag]
		if !ok {
			continue
		}
		if tag == "link" && !relLoads(attrs["rel"]) {
			continue
		}
		if tag == "input" && !strings.EqualFold(attrs["type"], "image") {
			continue
		}
		for _, a := range names {
			v := strings.TrimSpace(attrs[a])
			if v == "" {
				continue
			}
			u, err := base.Parse(v)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				continue
			}
			u.Fragment, u.RawFragment = "", ""
			if s := u.String(); !seen[s] {
				seen[s] = true
				out = append(out, u)
			}
		}
	}
}

func relLoads(rel string) bool {
	for _, r := range strings.Fields(strings.ToLower(rel)) {
		if linkRels[r] {
			return true
		}
	}
	return false
}
