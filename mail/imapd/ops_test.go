package imapd

import (
	"bytes"
	"strings"
	"testing"
)

func TestContainsFold(t *testing.T) {
	for _, tc := range []struct {
		b, s string
		want bool
	}{
		{"The Secret Word", "secret", true},
		{"The Secret Word", "WORD", true},
		{"The Secret Word", "words", false},
		{"xylophone", "xylophone", true},
		{"abc", "", true},
		{"", "a", false},
		{"aaab", "aab", true},
		{"Ünïcode text", "ÜNÏ", true},
		{"short", "shorter", false},
		{"AbAbAc", "abac", true},
	} {
		if got := containsFold([]byte(tc.b), tc.s); got != tc.want {
			t.Errorf("containsFold(%q, %q) = %v", tc.b, tc.s, got)
		}
		if tc.s != "" && !strings.ContainsRune(tc.s, 'Ü') {
			if want := bytes.Contains(bytes.ToLower([]byte(tc.b)), []byte(strings.ToLower(tc.s))); want != tc.want {
				t.Fatalf("table wrong for %q %q", tc.b, tc.s)
			}
		}
	}
}
