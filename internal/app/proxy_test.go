package app

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
	"github.com/applayer/applayer/web/proxy"
)

func TestHTTPProxyStats(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, strings.Repeat("x", 125000)) // 1 Mbit
	}))
	defer origin.Close()
	p, err := proxy.New(proxy.Config{Addr: "127.0.0.1:0", Admin: "127.0.0.1:0", AllowDestinations: []string{"127.0.0.0/8"}}, service.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testkit.Context(t, 10*time.Second)
	testkit.Start(t, p)
	u, _ := url.Parse("http://" + p.Addrs()[0].String())
	tr := &http.Transport{Proxy: http.ProxyURL(u)}
	defer tr.CloseIdleConnections()
	for i := range 5 {
		res, err := (&http.Client{Transport: tr}).Get(fmt.Sprintf("%s/obj%d", origin.URL, i%2))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	var out bytes.Buffer
	root := NewRoot(strings.NewReader(""), &out, &out)
	root.SetArgs([]string{"http", "proxy", "--stats", "--admin", p.Addrs()[1].String()})
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	for _, want := range []string{"requests            5", "hit ratio 0.600", "bytes from origin   250000", "access link         15.4 Mbit/s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("stats output lacks %q:\n%s", want, out.String())
		}
	}
}
