package resolver

import (
	"encoding/json"
	"html/template"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/lab/dashboard"
)

// CacheEntry is one cached RRset or negative answer, as the lab's
// dashboard shows it.
type CacheEntry struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// TTL is the seconds left before the entry expires.
	TTL int `json:"ttl"`
	// Negative is "NXDOMAIN" or "NODATA" for a cached negative answer.
	Negative string `json:"negative,omitempty"`
	// Records are the entry's records in presentation form, TTLs counted
	// down.
	Records []string `json:"records,omitempty"`
	// Security is the DNSSEC state: secure, insecure, bogus or "".
	Security string `json:"security,omitempty"`
}

// CacheEntries returns up to limit fresh cached RRsets (name and type
// order), with their remaining TTLs at now. It holds each cache shard's
// read lock only while decoding its entries.
func (e *Engine) CacheEntries(limit int, now time.Time) []CacheEntry {
	type item struct {
		key string
		v   *rrEntry
	}
	var items []item
	e.rr.each(func(k string, v *rrEntry) {
		if v.expires.After(now) {
			items = append(items, item{k, v})
		}
	})
	out := make([]CacheEntry, 0, min(len(items), limit))
	for _, it := range items {
		if len(it.key) < 2 {
			continue
		}
		name := it.key[:len(it.key)-2]
		qtype := uint16(it.key[len(it.key)-2])<<8 | uint16(it.key[len(it.key)-1])
		ce := CacheEntry{Name: name, Type: dns.TypeToString[qtype], TTL: int(it.v.expires.Sub(now).Seconds())}
		switch {
		case qtype == typeDSRef:
			ce.Type = "DS-ref"
		case ce.Type == "":
			ce.Type = dns.Type(qtype).String()
		}
		switch it.v.neg {
		case dns.RcodeNameError:
			ce.Negative = "NXDOMAIN"
		case negNoData:
			ce.Negative = "NODATA"
		}
		switch it.v.sec {
		case secSecure:
			ce.Security = "secure"
		case secInsecure:
			ce.Security = "insecure"
		case secBogus:
			ce.Security = "bogus"
		}
		for _, rr := range withTTL(it.v.rrs, it.v.stored, now) {
			ce.Records = append(ce.Records, strings.ReplaceAll(rr.String(), "\t", " "))
		}
		out = append(out, ce)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Type < out[j].Type
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

var cacheViewPage = template.Must(template.New("cache").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="1">
<title>DNS cache of {{.Host}}</title><link rel="stylesheet" href="/ui/style.css"></head>
<body><main><p><a href="/#views">Dashboard</a></p>
<h2>DNS cache of {{.Host}}</h2>
<p class="note">{{len .Entries}} fresh RRsets{{if .Capped}} (the first {{len .Entries}}){{end}}; TTLs count down each second (the page reloads). Flush it with <code>POST /hosts/{{.Host}}/dns/resolver/flush</code>.</p>
<table><tr><th>name</th><th>type</th><th>TTL left</th><th>records</th><th>DNSSEC</th></tr>
{{range .Entries}}<tr><td>{{.Name}}</td><td>{{.Type}}</td><td>{{.TTL}} s</td><td>{{if .Negative}}<em>{{.Negative}}</em>{{else}}{{range .Records}}{{.}}<br>{{end}}{{end}}</td><td>{{.Security}}</td></tr>
{{end}}</table></main></body></html>
`))

// cacheViewLimit caps the rows of the dashboard's cache page.
const cacheViewLimit = 500

// DashboardViews implements dashboard.Viewer: the lab's dashboard shows
// the resolver's cache (names, types, TTLs counting down, records).
func (s *Server) DashboardViews(host string) []dashboard.View {
	return []dashboard.View{{
		Name:  "dns-cache",
		Title: "DNS cache",
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			entries := s.CacheEntries(cacheViewLimit+1, s.deps.Now())
			capped := len(entries) > cacheViewLimit
			if capped {
				entries = entries[:cacheViewLimit]
			}
			if r.URL.Query().Get("format") == "json" {
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(entries)
				return
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			cacheViewPage.Execute(w, struct {
				Host    string
				Entries []CacheEntry
				Capped  bool
			}{host, entries, capped})
		}),
	}}
}
