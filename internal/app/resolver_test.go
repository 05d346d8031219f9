package app

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/applayer/applayer/dns/resolver"
	"github.com/applayer/applayer/internal/config"
)

// TestResolverConfigFileAndFlags: every setting of `dns resolver` takes
// the flag given on the command line, else the config file's value, else
// the flag's default.
func TestResolverConfigFileAndFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "resolver.yaml")
	os.WriteFile(file, []byte("root_hints_file: file-hints\nupstream_port: 5353\ncache_size: 7\nallow: [10.0.0.0/8]\nno_prefetch: true\ntimeout: 1s\ngc_percent: 10\n"), 0o644)
	withListen := filepath.Join(dir, "listen.json")
	os.WriteFile(withListen, []byte(`{"listen": "127.0.0.3:53", "root_hints_file": "file-hints"}`), 0o644)
	defaults := resolverFile{Config: resolver.Config{Listen: "127.0.0.1:53", UpstreamPort: 53, CacheSize: 100000,
		Timeout: config.Duration(400 * time.Millisecond), ServeStale: config.Duration(24 * time.Hour), CacheBytes: 64 << 20}, GCPercent: 100}
	fromFile := resolverFile{Config: resolver.Config{Listen: "127.0.0.1:53", RootHintsFile: "file-hints", UpstreamPort: 5353, CacheSize: 7,
		Allow: []string{"10.0.0.0/8"}, NoPrefetch: true, Timeout: config.Duration(time.Second), ServeStale: config.Duration(24 * time.Hour), CacheBytes: 64 << 20}, GCPercent: 10}
	everyFlag := resolverFile{Config: resolver.Config{Listen: "x", RootHints: []string{"x"}, RootHintsFile: "x", UpstreamPort: 1, Forwarders: []string{"x", "y"},
		TrustAnchorFile: "x", Allow: []string{"x"}, CacheSize: 1, NoQNAMEMinimisation: true, NoPrefetch: false,
		Timeout: config.Duration(2 * time.Second), ServeStale: config.Duration(time.Minute), CacheBytes: 64 << 20}, GCPercent: 1}
	some := fromFile
	some.CacheSize, some.Forwarders = 1, []string{"x"}
	listen := defaults
	listen.Listen, listen.RootHintsFile = "127.0.0.3:53", "file-hints"
	tests := []struct {
		name, file string
		args       []string
		want       resolverFile
	}{
		{"no file, no flags", "", nil, defaults},
		{"no flags: the file, flag defaults for the rest", file, nil, fromFile},
		{"file listen", withListen, nil, listen},
		{"every flag", file, []string{"--listen=x", "--root-hint=x", "--root-hints-file=x", "--upstream-port=1", "--forward=x", "--forward=y",
			"--trust-anchor=x", "--allow=x", "--cache-size=1", "--no-qname-minimisation", "--no-prefetch=false", "--timeout=2s", "--serve-stale=1m", "--gc-percent=1"}, everyFlag},
		{"some flags", file, []string{"--cache-size=1", "--forward=x"}, some},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := &cobra.Command{}
			var got resolverFile
			var cfgFile string
			resolverFlags(cmd.Flags(), &got, &cfgFile)
			args := tc.args
			if tc.file != "" {
				args = append(args, "--config", tc.file)
			}
			if err := cmd.ParseFlags(args); err != nil {
				t.Fatal(err)
			}
			if err := loadConfigFile(cmd, cfgFile, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
	// The file is as strict as ever: an unknown field is an error.
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listen: 127.0.0.1:53\ncache_sise: 3\n"), 0o644)
	cmd := &cobra.Command{}
	var fc resolverFile
	var cfgFile string
	resolverFlags(cmd.Flags(), &fc, &cfgFile)
	if err := loadConfigFile(cmd, bad, &fc); err == nil {
		t.Error("unknown field cache_sise accepted")
	}
}
