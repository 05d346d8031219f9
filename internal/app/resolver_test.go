package app

import (
	"reflect"
	"testing"

	"github.com/applayer/applayer/dns/resolver"
)

// TestMergeResolverFlags: a flag given on the command line overrides the
// config file's field; one not given leaves the file's value, except that
// an empty listen address in the file takes --listen's value.
func TestMergeResolverFlags(t *testing.T) {
	file := resolver.Config{RootHintsFile: "file-hints", UpstreamPort: 5353, CacheSize: 7, Allow: []string{"10.0.0.0/8"}, NoPrefetch: true}
	flags := resolver.Config{Listen: "127.0.0.2:5300", RootHints: []string{"192.0.2.1"}, RootHintsFile: "flag-hints", UpstreamPort: 53,
		Forwarders: []string{"192.0.2.9"}, TrustAnchorFile: "ta", Allow: []string{"192.0.2.0/24"}, CacheSize: 9,
		NoQNAMEMinimisation: true, GCPercent: 50}
	fileWithListen := file
	fileWithListen.Listen = "127.0.0.3:53"
	tests := []struct {
		name string
		file resolver.Config
		args []string
		want resolver.Config
	}{
		{"no flags", file, nil, resolver.Config{Listen: "127.0.0.2:5300", RootHintsFile: "file-hints", UpstreamPort: 5353, CacheSize: 7, Allow: []string{"10.0.0.0/8"}, NoPrefetch: true}},
		{"no flags, file listen", fileWithListen, nil, fileWithListen},
		{"every flag", fileWithListen, []string{"--listen=x", "--root-hint=x", "--root-hints-file=x", "--upstream-port=1", "--forward=x",
			"--trust-anchor=x", "--allow=x", "--cache-size=1", "--no-qname-minimisation", "--no-prefetch=false", "--gc-percent=1"}, flags},
		{"some flags", file, []string{"--cache-size=1", "--forward=x"}, resolver.Config{Listen: "127.0.0.2:5300", RootHintsFile: "file-hints", UpstreamPort: 5353,
			CacheSize: 9, Forwarders: []string{"192.0.2.9"}, Allow: []string{"10.0.0.0/8"}, NoPrefetch: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := dnsResolverCommand(&globals{})
			if err := cmd.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			got := tc.file
			mergeResolverFlags(cmd, &got, flags)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("merged\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}
