package client

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/web/labca"
	"github.com/applayer/applayer/web/server"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

type lab struct {
	plain, tls string // http://127.0.0.1:p and https://localhost:p
	caFile     string
}

func startServer(t *testing.T, mod func(*server.Config)) *lab {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "site")
	if err := server.WriteDemoSite(root, 10); err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{
		Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", HTTP3: true, TLS: server.TLSConfig{CADir: filepath.Join(dir, "ca")},
		Sites: []server.Site{{Root: root}, {Hosts: []string{"shop.example"}, Shop: filepath.Join(dir, "shop")}},
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := server.New(cfg, service.Deps{Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	a := testkit.Start(t, s).Addrs()
	_, p, _ := net.SplitHostPort(a[1].String())
	return &lab{plain: "http://" + a[0].String(), tls: "https://localhost:" + p, caFile: filepath.Join(dir, "ca", labca.CertFileName)}
}

func TestLoadPageModes(t *testing.T) {
	l := startServer(t, nil)
	wantConns := map[string]int{ModeNonPersistent: 13, ModeNonPersistentParallel: 13, ModePersistent: 1, ModePipelined: 1, ModeH2: 1, ModeH3: 1}
	for _, base := range []string{l.tls + "/", l.plain + "/"} {
		for _, m := range Modes() {
			if m == ModeH3 && strings.HasPrefix(base, "http:") {
				continue
			}
			t.Run(m+" "+base[:5], func(t *testing.T) {
				pr, err := LoadPage(testkit.Context(t, 20*time.Second), base, PageOptions{Mode: m, Parallel: 4, Options: Options{CAFile: l.caFile}})
				if err != nil {
					t.Fatal(err)
				}
				if len(pr.Objects) != 13 {
					t.Fatalf("%d objects, want 13 (base, css, js, 10 images)", len(pr.Objects))
				}
				for _, o := range pr.Objects {
					if o.Status != 200 || o.Bytes == 0 || o.End < o.Start {
						t.Errorf("object %+v", o)
					}
				}
				if m == ModePersistentParallel {
					// Up to Parallel persistent connections, more than one.
					if pr.Conns < 2 || pr.Conns > 4 {
						t.Errorf("connections = %d, want 2 to 4", pr.Conns)
					}
				} else if pr.Conns != wantConns[m] {
					t.Errorf("connections = %d, want %d", pr.Conns, wantConns[m])
				}
				var buf bytes.Buffer
				pr.Summary(&buf)
				if !strings.Contains(buf.String(), "img10.png") {
					t.Errorf("summary = %s", buf.String())
				}
			})
		}
	}
	// A non-persistent server forces the pipelining client to reconnect.
	np := startServer(t, func(c *server.Config) { c.NonPersistent = true })
	pr, err := LoadPage(testkit.Context(t, 20*time.Second), np.plain+"/", PageOptions{Mode: ModePipelined})
	if err != nil {
		t.Fatal(err)
	}
	if len(pr.Objects) != 13 || pr.Conns != 13 {
		t.Errorf("pipelined against non-persistent server: %d objects on %d connections", len(pr.Objects), pr.Conns)
	}
}

func TestProtocolsAndTiming(t *testing.T) {
	l := startServer(t, nil)
	for _, tc := range []struct {
		proto, base string
		major       int
	}{
		{ProtoH1, l.tls, 1}, {ProtoH2, l.tls, 2}, {ProtoH3, l.tls, 3}, {ProtoH2, l.plain, 2}, {ProtoAuto, l.tls, 2}, {ProtoAuto, l.plain, 1},
	} {
		t.Run(tc.proto+" "+tc.base[:5], func(t *testing.T) {
			c, err := New(Options{Proto: tc.proto, CAFile: l.caFile})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx := testkit.Context(t, 10*time.Second)
			r, err := c.Get(ctx, tc.base+"/style.css")
			if err != nil {
				t.Fatal(err)
			}
			if r.Response.ProtoMajor != tc.major || r.Response.StatusCode != 200 {
				t.Fatalf("got %s %d", r.Response.Proto, r.Response.StatusCode)
			}
			if r.Timing.Connect <= 0 || r.Timing.Total <= 0 || r.Timing.Reused {
				t.Errorf("first request timing %+v", r.Timing)
			}
			if strings.HasPrefix(tc.base, "https") && tc.proto != ProtoH3 && r.Timing.TLS <= 0 {
				t.Errorf("no TLS time: %+v", r.Timing)
			}
			r2, err := c.Get(ctx, tc.base+"/app.js")
			if err != nil {
				t.Fatal(err)
			}
			if r2.Timing.Connect != 0 || c.Dials() != 1 {
				t.Errorf("second request opened a connection: %+v, dials %d", r2.Timing, c.Dials())
			}
		})
	}
}

func TestCacheRevalidation(t *testing.T) {
	l := startServer(t, nil)
	cache, err := OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{ProtoH1, ProtoH2, ProtoH3} {
		c, err := New(Options{Proto: p, CAFile: l.caFile, Cache: cache})
		if err != nil {
			t.Fatal(err)
		}
		ctx := testkit.Context(t, 10*time.Second)
		u := l.tls + "/images/img03.png?" + p
		first, err := c.Get(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		second, err := c.Get(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if first.FromCache || first.Response.StatusCode != 200 {
			t.Errorf("%s first: %d from cache %v", p, first.Response.StatusCode, first.FromCache)
		}
		if !second.FromCache || second.Response.StatusCode != 304 || !bytes.Equal(first.Body, second.Body) {
			t.Errorf("%s second: %d from cache %v, %d bytes", p, second.Response.StatusCode, second.FromCache, len(second.Body))
		}
		if second.Request.Header.Get("If-None-Match") == "" || second.Request.Header.Get("If-Modified-Since") == "" {
			t.Errorf("%s: conditional headers not sent: %v", p, second.Request.Header)
		}
	}
}

func TestShopWithJar(t *testing.T) {
	l := startServer(t, nil)
	jarFile := filepath.Join(t.TempDir(), "cookies.txt")
	host := func(u string) string { return strings.Replace(u, "127.0.0.1", "shop.example", 1) }
	_ = host
	jar := NewJar()
	c, err := New(Options{Jar: jar})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testkit.Context(t, 10*time.Second)
	shopReq := func(method, path, body string) *Result {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, l.plain+path, strings.NewReader(body))
		req.Host = "shop.example"
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r, err := c.Do(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	shopReq("GET", "/", "")
	if r := shopReq("POST", "/cart/add", "item=router"); r.Response.StatusCode != 303 {
		t.Fatalf("add: %d", r.Response.StatusCode)
	}
	if err := jar.Save(jarFile); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(jarFile)
	if !strings.Contains(string(b), "#HttpOnly_shop.example\tFALSE\t/\tFALSE\t") || !strings.Contains(string(b), "\tsid\t") {
		t.Errorf("cookies.txt = %s", b)
	}
	// A second client loads the file and sees the same cart.
	jar2, err := LoadJar(jarFile)
	if err != nil {
		t.Fatal(err)
	}
	c.opts.Jar = jar2
	if r := shopReq("GET", "/api/cart", ""); !strings.Contains(string(r.Body), `"router"`) {
		t.Errorf("cart with loaded jar = %s", r.Body)
	}
}

func TestJarRules(t *testing.T) {
	j := NewJar()
	j.now = func() time.Time { return time.Unix(1_800_000_000, 0) }
	u, _ := url.Parse("https://www.example.com/shop/cart")
	j.SetCookies(u, []*http.Cookie{
		{Name: "host", Value: "1"},
		{Name: "dom", Value: "2", Domain: ".example.com", Path: "/", Secure: true, HttpOnly: true, MaxAge: 60},
		{Name: "evil", Value: "3", Domain: "other.com"},
		{Name: "gone", Value: "4", Expires: time.Unix(1, 0)},
	})
	names := func(raw string) string {
		u, _ := url.Parse(raw)
		var s []string
		for _, c := range j.Cookies(u) {
			s = append(s, c.Name)
		}
		return strings.Join(s, ",")
	}
	for raw, exp := range map[string]string{
		"https://www.example.com/shop/x": "host,dom",
		"https://www.example.com/":       "dom",
		"http://www.example.com/shop/x":  "host",
		"https://api.example.com/":       "dom",
		"https://other.com/":             "",
	} {
		if got := names(raw); got != exp {
			t.Errorf("cookies for %s = %q, want %q", raw, got, exp)
		}
	}
	var buf bytes.Buffer
	j.Write(&buf)
	j2 := NewJar()
	j2.now = j.now
	if err := j2.Read(&buf); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(j2.entries) != fmt.Sprint(j.entries) {
		t.Errorf("round trip:\n%v\n%v", j2.entries, j.entries)
	}
	j.SetCookies(u, []*http.Cookie{{Name: "dom", Domain: "example.com", Path: "/", MaxAge: -1}})
	if got := names("https://www.example.com/"); got != "" {
		t.Errorf("after delete: %q", got)
	}
}

func TestExtractRefs(t *testing.T) {
	base, _ := url.Parse("http://gaia.cs.umass.edu/kurose/page.html")
	page := `<html><head><link rel="stylesheet" href="style.css"><link rel="canonical" href="/x">
<script src="/js/app.js"></script><script>var a = "<img src=no.png>";</script></head>
<body><img src="a.png"><img SRC='a.png#frag'><img src="data:image/png;base64,xx">
<video poster="p.jpg"><source src="v.mp4"><source src="//cdn.example/v.webm"></video>
<a href="link.html">not an object</a><img src="ftp://x/y.png"><input type="image" src="btn.png">
</body></html>`
	var got []string
	for _, u := range ExtractRefs(base, []byte(page)) {
		got = append(got, u.String())
	}
	exp := []string{
		"http://gaia.cs.umass.edu/kurose/style.css", "http://gaia.cs.umass.edu/js/app.js", "http://gaia.cs.umass.edu/kurose/a.png",
		"http://gaia.cs.umass.edu/kurose/p.jpg", "http://gaia.cs.umass.edu/kurose/v.mp4", "http://cdn.example/v.webm", "http://gaia.cs.umass.edu/kurose/btn.png",
	}
	if fmt.Sprint(got) != fmt.Sprint(exp) {
		t.Errorf("refs =\n%v\nwant\n%v", got, exp)
	}
	based := ExtractRefs(base, []byte(`<base href="https://static.example/x/"><img src="i.png">`))
	if len(based) != 1 || based[0].String() != "https://static.example/x/i.png" {
		t.Errorf("with <base>: %v", based)
	}
}

func FuzzExtractRefs(f *testing.F) {
	for _, s := range []string{"<img src=a.png>", `<base href="//x/"><script src=s.js>`, "<link rel=stylesheet href=\x00>", "<video><source src=v>", "<<img src=>"} {
		f.Add([]byte(s))
	}
	base, _ := url.Parse("http://example.com/dir/")
	f.Fuzz(func(t *testing.T, page []byte) {
		seen := map[string]bool{}
		for _, u := range ExtractRefs(base, page) {
			if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" {
				t.Fatalf("bad ref %q", u)
			}
			if seen[u.String()] {
				t.Fatalf("duplicate %q", u)
			}
			seen[u.String()] = true
		}
	})
}

// fakeDNS answers every A query with 127.0.0.1 and counts queries.
func fakeDNS(t *testing.T) (string, *atomic.Int64) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := new(atomic.Int64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 512)
		for {
			m, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := buf[:m]
			if m < 12 {
				continue
			}
			n.Add(1)
			// Question ends after the name (zero label) + type + class.
			i := 12
			for i < m && q[i] != 0 {
				i += int(q[i]) + 1
			}
			i += 5
			if i > m {
				continue
			}
			qtype := binary.BigEndian.Uint16(q[i-4:])
			resp := append([]byte(nil), q[:i]...)
			resp[2] |= 0x84 // QR, AA
			resp[3] = 0
			binary.BigEndian.PutUint16(resp[6:], 0)
			binary.BigEndian.PutUint16(resp[8:], 0)
			binary.BigEndian.PutUint16(resp[10:], 0)
			if qtype == 1 {
				binary.BigEndian.PutUint16(resp[6:], 1)
				resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1)
			}
			pc.WriteTo(resp, from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().String(), n
}

func TestResolver(t *testing.T) {
	l := startServer(t, nil)
	dns, n := fakeDNS(t)
	c, err := New(Options{Resolver: dns})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	u := strings.Replace(l.plain, "127.0.0.1", "gaia.cs.umass.edu", 1) + "/app.js"
	r, err := c.Get(testkit.Context(t, 10*time.Second), u)
	if err != nil {
		t.Fatal(err)
	}
	if r.Response.StatusCode != 200 || r.Timing.DNS <= 0 || n.Load() == 0 {
		t.Errorf("status %d, dns time %s, queries %d", r.Response.StatusCode, r.Timing.DNS, n.Load())
	}
}

func TestProxy(t *testing.T) {
	l := startServer(t, nil)
	var seen []string
	proxy := server.NewTestForwardProxy(&seen)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: proxy}
	go hs.Serve(ln)
	defer hs.Close()
	c, err := New(Options{Proxy: "http://" + ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Get(testkit.Context(t, 10*time.Second), l.plain+"/app.js")
	if err != nil {
		t.Fatal(err)
	}
	if r.Response.StatusCode != 200 || len(seen) != 1 || seen[0] != l.plain+"/app.js" {
		t.Errorf("status %d, proxy saw %v", r.Response.StatusCode, seen)
	}
}

func needPeer(t *testing.T, name string) string { return testkit.Peer(t, name) }

// TestCurlCookies exchanges a cookies.txt file with curl both ways.
func TestCurlCookies(t *testing.T) {
	curl := needPeer(t, "curl")
	l := startServer(t, nil)
	dir := t.TempDir()
	curlJar := filepath.Join(dir, "curl.txt")
	run := func(args ...string) string {
		out, err := exec.Command(curl, append([]string{"-sS", "-H", "Host: shop.example"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("-c", curlJar, "-o", "/dev/null", l.plain+"/")
	run("-b", curlJar, "-d", "item=cable", "-o", "/dev/null", l.plain+"/cart/add")
	// curl's jar -> our client.
	jar, err := LoadJar(curlJar)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{Jar: jar})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := testkit.Context(t, 10*time.Second)
	req, _ := http.NewRequestWithContext(ctx, "GET", l.plain+"/api/cart", nil)
	req.Host = "shop.example"
	r, err := c.Do(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(r.Body), `"cable"`) {
		b, _ := os.ReadFile(curlJar)
		t.Fatalf("curl jar:\n%s\nour client with curl's jar sees cart %s", b, r.Body)
	}
	// Our jar -> curl.
	req, _ = http.NewRequestWithContext(ctx, "POST", l.plain+"/cart/add", strings.NewReader("item=mug"))
	req.Host = "shop.example"
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if _, err := c.Do(ctx, req); err != nil {
		t.Fatal(err)
	}
	ours := filepath.Join(dir, "ours.txt")
	if err := jar.Save(ours); err != nil {
		t.Fatal(err)
	}
	if out := run("-b", ours, l.plain+"/api/cart"); !strings.Contains(out, `"mug"`) || !strings.Contains(out, `"cable"`) {
		t.Errorf("curl with our jar sees cart %s", out)
	}
}

var _ = io.Discard
