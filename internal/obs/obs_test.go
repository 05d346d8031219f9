package obs

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/applayer/applayer/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

func TestNewLogger(t *testing.T) {
	tests := []struct {
		format, level string
		wantErr       bool
		check         func(string) bool
	}{
		{format: "text", level: "info", check: func(s string) bool { return strings.Contains(s, "msg=hello") }},
		{format: "json", level: "debug", check: func(s string) bool { return strings.Contains(s, `"msg":"hello"`) }},
		{format: "xml", level: "info", wantErr: true},
		{format: "text", level: "loud", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.format+"/"+tt.level, func(t *testing.T) {
			var buf bytes.Buffer
			l, err := NewLogger(&buf, tt.format, tt.level)
			if tt.wantErr {
				if err == nil {
					t.Fatal("want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			l.Info("hello")
			l.Debug("quiet")
			if !tt.check(buf.String()) {
				t.Fatalf("log output %q", buf.String())
			}
			if tt.level == "info" && strings.Contains(buf.String(), "quiet") {
				t.Fatal("debug line logged at info level")
			}
		})
	}
}

func TestAdminConfigLoopbackOnly(t *testing.T) {
	tests := []struct {
		cfg     AdminConfig
		wantErr bool
	}{
		{AdminConfig{Addr: "127.0.0.1:0"}, false},
		{AdminConfig{Addr: "[::1]:9900"}, false},
		{AdminConfig{Addr: "localhost:9900"}, false},
		{AdminConfig{Addr: "0.0.0.0:9900"}, true},
		{AdminConfig{Addr: ":9900"}, true},
		{AdminConfig{Addr: "0.0.0.0:9900", AllowRemote: true}, false},
		{AdminConfig{Addr: "nonsense"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.cfg.Addr, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err != nil) != tt.wantErr {
				t.Fatalf("Validate = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

func TestAdminEndpoints(t *testing.T) {
	reg := NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "applayer_test_things_total", Help: "Things."})
	reg.MustRegister(c)
	c.Add(3)
	a, err := NewAdmin(AdminConfig{Addr: "127.0.0.1:0"}, reg, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	a.Handle("POST /flush", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "flushed") }))
	base := "http://" + testkit.Start(t, a).Addrs()[0].String()
	client := &http.Client{}
	get := func(method, path string) (int, string) {
		req, _ := http.NewRequest(method, base+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("GET", "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before SetReady = %d, want 503", code)
	}
	a.SetReady(true)
	if code, body := get("GET", "/readyz"); code != 200 || !strings.Contains(body, "ready") {
		t.Errorf("/readyz = %d %q", code, body)
	}
	if code, body := get("GET", "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get("GET", "/metrics"); code != 200 || !strings.Contains(body, "applayer_test_things_total 3") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics = %d, body lacks the counter or runtime metrics", code)
	}
	if code, body := get("POST", "/flush"); code != 200 || body != "flushed" {
		t.Errorf("POST /flush = %d %q", code, body)
	}
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	client.CloseIdleConnections()
}

func TestAdminRefusesRemoteAddr(t *testing.T) {
	if _, err := NewAdmin(AdminConfig{Addr: "0.0.0.0:0"}, NewRegistry(), nil); err == nil {
		t.Fatal("NewAdmin accepted a non-loopback address")
	}
}
