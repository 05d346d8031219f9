package zone

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzKeyFilesAtStart feeds arbitrary .key, .private and .state files to
// what a signing server reads at start (OpenKeyStore, then the key step
// that picks and generates keys): a bad file is an error naming it, never
// a panic, and keys that load can sign.
func FuzzKeyFilesAtStart(f *testing.F) {
	dir := f.TempDir()
	if _, err := LoadOrCreateKeys(dir, "example.", ""); err != nil {
		f.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.key"))
	for _, k := range files {
		base := k[:len(k)-len(".key")]
		pub, _ := os.ReadFile(base + ".key")
		priv, _ := os.ReadFile(base + ".private")
		state, _ := os.ReadFile(base + ".state")
		f.Add(pub, priv, state)
	}
	f.Add([]byte("example. 3600 IN DNSKEY 257 3 13 AAAA"), []byte("Private-key-format: v1.3\nAlgorithm: 13 (ECDSAP256SHA256)\nPrivateKey: \n"), []byte("Generated: 20261203\nActive: x\n"))
	f.Fuzz(func(t *testing.T, pub, priv, state []byte) {
		d := t.TempDir()
		base := filepath.Join(d, "Kexample.+013+12345")
		for ext, data := range map[string][]byte{".key": pub, ".private": priv, ".state": state} {
			if err := os.WriteFile(base+ext, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		ks, err := OpenKeyStore(d, "example.", "")
		if err != nil {
			return
		}
		keys, _, err := ks.Step(time.Now(), KeyPolicy{})
		if err != nil {
			return
		}
		if keys.KSK.Private == nil || keys.ZSK.Private == nil {
			t.Fatal("key step returned keys that cannot sign")
		}
	})
}
