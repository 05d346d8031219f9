package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type sample struct {
	Name    string   `json:"name"`
	Timeout Duration `json:"timeout"`
	Inner   struct {
		Port int `json:"port"`
	} `json:"inner"`
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name, format, in string
		want             sample
		wantErr          string
	}{
		{name: "yaml", format: "yaml", in: "name: a\ntimeout: 5s\ninner:\n  port: 53\n", want: sample{Name: "a", Timeout: Duration(5 * time.Second)}},
		{name: "json", format: "json", in: `{"name":"b","timeout":2.5}`, want: sample{Name: "b", Timeout: Duration(2500 * time.Millisecond)}},
		{name: "unknown field yaml", format: "yaml", in: "nmae: a\n", wantErr: `unknown field "nmae"`},
		{name: "unknown nested field", format: "json", in: `{"inner":{"prot":1}}`, wantErr: `unknown field "prot"`},
		{name: "bad duration", format: "yaml", in: "timeout: soon\n", wantErr: `invalid duration "soon"`},
		{name: "wrong type names the field", format: "yaml", in: "inner:\n  port: high\n", wantErr: "inner.port"},
		{name: "broken yaml", format: "yaml", in: "name: [\n", wantErr: "yaml"},
		{name: "trailing json", format: "json", in: `{} {}`, wantErr: "trailing data"},
		{name: "unknown format", format: "toml", in: ``, wantErr: "unknown format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got sample
			err := Decode([]byte(tt.in), tt.format, &got)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want.Inner.Port == 0 {
				got.Inner.Port = 0
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.json")
	os.WriteFile(p, []byte(`{"bogus":1}`), 0o600)
	var s sample
	err := Load(p, &s)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("err = %v, want the path and the field", err)
	}
	if err := Load(filepath.Join(dir, "missing.yaml"), &s); err == nil {
		t.Fatal("missing file: no error")
	}
}

func TestPrefix(t *testing.T) {
	err := errors.Join(Errorf("port", "too big"), Errorf("[0].name", "missing"), errors.New("plain"))
	got := Prefix("hosts[1]", err).Error()
	for _, want := range []string{"hosts[1].port: too big", "hosts[1][0].name: missing", "hosts[1]: plain"} {
		if !strings.Contains(got, want) {
			t.Errorf("Prefix result %q lacks %q", got, want)
		}
	}
	if Prefix("x", nil) != nil {
		t.Error("Prefix(nil) != nil")
	}
}

func TestDurationRoundTrip(t *testing.T) {
	d := Duration(90 * time.Second)
	b, _ := d.MarshalJSON()
	var back Duration
	if err := back.UnmarshalJSON(b); err != nil || back != d {
		t.Fatalf("round trip %s -> %v (%v)", b, back, err)
	}
}
