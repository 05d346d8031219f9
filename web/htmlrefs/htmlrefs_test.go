package htmlrefs

import (
	"net/url"
	"testing"
)

func TestExtract(t *testing.T) {
	base, _ := url.Parse("http://gaia.cs.umass.edu/dir/page.html")
	cases := []struct{ name, page, want string }{
		{"relative image", `<img src="a.png">`, "http://gaia.cs.umass.edu/dir/a.png"},
		{"rooted script", `<script src="/s.js"></script>`, "http://gaia.cs.umass.edu/s.js"},
		{"stylesheet only", `<link rel="next" href="n.html"><link rel="Stylesheet" href="c.css">`, "http://gaia.cs.umass.edu/dir/c.css"},
		{"base href", `<base href="https://cdn.example/x/"><img src="i.png">`, "https://cdn.example/x/i.png"},
		{"no anchors or data", `<a href="x.html">x</a><img src="data:image/png;base64,AA">`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			for _, u := range Extract(base, []byte(tc.page)) {
				got += u.String()
			}
			if got != tc.want {
				t.Errorf("Extract(%q) = %q, want %q", tc.page, got, tc.want)
			}
		})
	}
}

func FuzzExtract(f *testing.F) {
	for _, s := range []string{"<img src=a.png>", `<base href="//x/"><script src=s.js>`, "<link rel=stylesheet href=\x00>", "<<img src=>"} {
		f.Add([]byte(s))
	}
	base, _ := url.Parse("http://example.com/dir/")
	f.Fuzz(func(t *testing.T, page []byte) {
		seen := map[string]bool{}
		for _, u := range Extract(base, page) {
			if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" || seen[u.String()] {
				t.Fatalf("bad or duplicate ref %q", u)
			}
			seen[u.String()] = true
		}
	})
}
