package cache

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/service"
)

// TestSetCookieNotReplayed: a shared cache must never hand one client's
// cookie to another. Responses with Set-Cookie are not stored (Varnish's
// builtin VCL and nginx's proxy_cache do the same), whatever their
// freshness, unless the response names Set-Cookie in no-cache="..." or
// private="...": then it is stored without it.
func TestSetCookieNotReplayed(t *testing.T) {
	lm := time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC).Format(http.TimeFormat)
	cases := []struct {
		name   string
		fields []string
		stored bool
	}{
		{"heuristic freshness", []string{"Last-Modified", lm}, false},
		{"explicit max-age", []string{"Cache-Control", "max-age=600"}, false},
		{"public s-maxage", []string{"Cache-Control", "public, s-maxage=600"}, false},
		{`no-cache="Set-Cookie"`, []string{"Cache-Control", `max-age=600, no-cache="Set-Cookie"`}, true},
		{`private="set-cookie" among others`, []string{"Cache-Control", `max-age=600, private="X-A, set-cookie"`}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
				for i := 0; i+1 < len(tc.fields); i += 2 {
					w.Header().Set(tc.fields[i], tc.fields[i+1])
				}
				w.Header().Add("Set-Cookie", fmt.Sprintf("session=client%d", n))
				fmt.Fprintf(w, "v%d", n)
			})
			first := e.do("GET", "/a")
			e.wantBody(first, "v1")
			if got := first.header.Get("Set-Cookie"); got != "session=client1" {
				t.Fatalf("the fetching client's own Set-Cookie %q, want session=client1", got)
			}
			second := e.do("GET", "/a")
			if got := second.header.Values("Set-Cookie"); len(got) > 0 && strings.Contains(strings.Join(got, ";"), "client1") {
				t.Fatalf("client 2 got client 1's cookie %q (Cache-Status %q)", got, second.header.Get("Cache-Status"))
			}
			if tc.stored {
				e.wantBody(second, "v1")
				if len(second.header.Values("Set-Cookie")) != 0 {
					t.Fatalf("stored response kept Set-Cookie: %q", second.header.Values("Set-Cookie"))
				}
			} else {
				e.wantBody(second, "v2")
				if got := second.header.Get("Set-Cookie"); got != "session=client2" {
					t.Fatalf("client 2 Set-Cookie %q, want its own", got)
				}
			}
		})
	}
}

// TestSetCookieFrom304NotStored: a 304 that carries Set-Cookie must not
// merge it into the stored header for later clients.
func TestSetCookieFrom304NotStored(t *testing.T) {
	e := newEnv(t, Config{}, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=10")
		w.Header().Set("ETag", `"x"`)
		if r.Header.Get("If-None-Match") == `"x"` {
			w.Header().Add("Set-Cookie", fmt.Sprintf("session=client%d", n))
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, "v%d", n)
	})
	e.wantBody(e.do("GET", "/a"), "v1")
	e.clk.Advance(20 * time.Second)
	v := e.do("GET", "/a") // validated: 304 with Set-Cookie
	e.wantBody(v, "v1")
	if got := v.header.Get("Set-Cookie"); got != "session=client2" {
		t.Fatalf("validating client's Set-Cookie %q, want its own session=client2", got)
	}
	r := e.do("GET", "/a") // a hit for another client
	e.wantBody(r, "v1")
	if !strings.Contains(r.header.Get("Cache-Status"), "hit") {
		t.Fatalf("Cache-Status %q, want a hit", r.header.Get("Cache-Status"))
	}
	if got := r.header.Values("Set-Cookie"); len(got) != 0 {
		t.Fatalf("a hit replayed the 304's Set-Cookie %q", got)
	}
}

// TestDiskTierCleansLeftovers: temporary files left by a write cut short
// (kill -9, ENOSPC) are removed at start, as are torn object files; they
// would otherwise sit outside the byte budget for ever.
func TestDiskTierCleansLeftovers(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, Config{Dir: dir}, counting("Cache-Control", "max-age=100"))
	e.wantBody(e.do("GET", "/a", "Accept-Language", "en"), "v1")
	objs, _ := filepath.Glob(filepath.Join(dir, "*.obj"))
	if len(objs) != 1 {
		t.Fatalf("object files %v", objs)
	}
	// a write cut short, and an object file torn mid-metadata
	if err := os.WriteFile(filepath.Join(dir, "tmp-123456"), []byte("half a response"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "0123456789abcdef0123456789abcdef.obj"), []byte{0, 0, 1, 0, '{'}, 0o600); err != nil {
		t.Fatal(err)
	}
	c2, err := New(Config{Dir: dir}, e.tr, service.Deps{Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	names, _ := os.ReadDir(dir)
	var left []string
	for _, n := range names {
		left = append(left, n.Name())
	}
	if len(left) != 1 || left[0] != filepath.Base(objs[0]) {
		t.Fatalf("after a restart the disk tier holds %v, want only %s", left, filepath.Base(objs[0]))
	}
	e.c = c2
	e.wantBody(e.do("GET", "/a"), "v1")
}

// TestDiskTierChecksum: a stored body that changed on disk (bit rot, a
// torn write that kept its length) is detected by its checksum: it is
// never served, its file is removed, and the object is fetched again.
func TestDiskTierChecksum(t *testing.T) {
	dir := t.TempDir()
	body := strings.Repeat("payload.", 64)
	e := newEnv(t, Config{Dir: dir}, func(w http.ResponseWriter, r *http.Request, n int64) {
		w.Header().Set("Cache-Control", "max-age=100")
		fmt.Fprintf(w, "%s%d", body, n)
	})
	e.wantBody(e.do("GET", "/a"), body+"1")
	objs, _ := filepath.Glob(filepath.Join(dir, "*.obj"))
	if len(objs) != 1 {
		t.Fatalf("object files %v", objs)
	}
	b, err := os.ReadFile(objs[0])
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.LastIndex(b, []byte("payload"))
	b[i] = 'P' // same length, one byte changed
	if err := os.WriteFile(objs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	c2, err := New(Config{Dir: dir}, e.tr, service.Deps{Now: e.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	e.c = c2
	r := e.do("GET", "/a")
	if strings.Contains(r.body, "Payload") {
		t.Fatalf("served a corrupted stored body (Cache-Status %q)", r.header.Get("Cache-Status"))
	}
	e.wantBody(r, body+"2")
}
