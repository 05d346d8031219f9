package shop

import (
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/applayer/applayer/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

func cart(t *testing.T, c *http.Client, base string) []Line {
	t.Helper()
	r, err := c.Get(base + "/api/cart")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var lines []Line
	if err := json.NewDecoder(r.Body).Decode(&lines); err != nil {
		t.Fatal(err)
	}
	return lines
}

func TestCartSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	for _, tlsOn := range []bool{false, true} {
		s, err := Open(dir, testkit.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		var ts *httptest.Server
		if tlsOn {
			ts = httptest.NewTLSServer(s)
		} else {
			ts = httptest.NewServer(s)
		}
		c := ts.Client()
		jar, _ := cookiejar.New(nil)
		c.Jar = jar
		r, err := c.Get(ts.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		sc := r.Header.Get("Set-Cookie")
		for _, attr := range []string{"sid=", "Path=/", "HttpOnly", "SameSite=Lax", "Max-Age="} {
			if !strings.Contains(sc, attr) {
				t.Errorf("Set-Cookie %q lacks %s", sc, attr)
			}
		}
		if strings.Contains(sc, "Secure") != tlsOn {
			t.Errorf("Set-Cookie %q: Secure should be %v", sc, tlsOn)
		}
		for _, item := range []string{"book", "mug", "book"} {
			r, err := c.PostForm(ts.URL+"/cart/add", url.Values{"item": {item}})
			if err != nil {
				t.Fatal(err)
			}
			r.Body.Close()
			if r.StatusCode != 200 || r.Request.URL.Path != "/cart" {
				t.Fatalf("add %s: %d at %s", item, r.StatusCode, r.Request.URL)
			}
		}
		u, _ := url.Parse(ts.URL)
		sid := jar.Cookies(u)[0].Value
		ts.Close()
		s.Close()

		// Restart on the same database; the same cookie finds the cart.
		s2, err := Open(dir, testkit.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		ts2 := httptest.NewServer(s2)
		c2 := ts2.Client()
		jar2, _ := cookiejar.New(nil)
		u2, _ := url.Parse(ts2.URL)
		jar2.SetCookies(u2, []*http.Cookie{{Name: CookieName, Value: sid}})
		c2.Jar = jar2
		lines := cart(t, c2, ts2.URL)
		if len(lines) != 2 || lines[0].ID != "book" || lines[0].Qty != 2 || lines[1].ID != "mug" || lines[1].Qty != 1 {
			t.Errorf("cart after restart = %+v", lines)
		}
		// A stranger without the cookie gets a new, empty cart.
		if l := cart(t, &http.Client{}, ts2.URL); len(l) != 0 {
			t.Errorf("cart without cookie = %+v", l)
		}
		r, _ = c2.PostForm(ts2.URL+"/cart/remove", url.Values{"item": {"mug"}})
		r.Body.Close()
		if l := cart(t, c2, ts2.URL); len(l) != 1 {
			t.Errorf("cart after remove = %+v", l)
		}
		r, _ = c2.PostForm(ts2.URL+"/cart/remove", url.Values{"item": {"book"}})
		r.Body.Close()
		ts2.Close()
		s2.Close()
	}
}

func TestShopErrors(t *testing.T) {
	s, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ts := httptest.NewServer(s)
	defer ts.Close()
	for _, tc := range []struct {
		method, path, body string
		code               int
	}{
		{"GET", "/nope", "", 404},
		{"POST", "/", "", 405},
		{"GET", "/cart/add", "", 405},
		{"POST", "/cart/add", "item=unicorn", 400},
		{"POST", "/cart/add", "item=" + strings.Repeat("x", 10000), 400},
	} {
		req, _ := http.NewRequest(tc.method, ts.URL+tc.path, strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != tc.code {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, r.StatusCode, tc.code)
		}
	}
	// A forged session id is not trusted: a new session is issued.
	req, _ := http.NewRequest("GET", ts.URL+"/", nil)
	req.AddCookie(&http.Cookie{Name: CookieName, Value: strings.Repeat("ab", 16)})
	r, _ := ts.Client().Do(req)
	r.Body.Close()
	if !strings.Contains(r.Header.Get("Set-Cookie"), "sid=") {
		t.Error("unknown session id accepted without a new cookie")
	}
}

// TestCatalogueNotMutable: changing the slice Products returns does not
// change what the shop sells.
func TestCatalogueNotMutable(t *testing.T) {
	p := Products()
	p[0].Cents = 1
	p[0].ID = "stolen"
	q := Products()
	if q[0].Cents != 12999 || q[0].ID != "book" {
		t.Fatalf("catalogue changed through a returned slice: %+v", q[0])
	}
	if got, ok := product("book"); !ok || got.Cents != 12999 {
		t.Fatalf("product(book) = %+v, %v", got, ok)
	}
	if _, ok := product("stolen"); ok {
		t.Fatal("an id set on a returned slice is for sale")
	}
}
