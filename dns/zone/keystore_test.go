package zone

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestKeyStoreTimingPersists(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	p := KeyPolicy{ZSKLifetime: 24 * time.Hour, PublishWait: time.Hour, RetireWait: 2 * time.Hour}
	ks, err := OpenKeyStore(dir, "example.com", "ed25519")
	if err != nil {
		t.Fatal(err)
	}
	k0, next, err := ks.Step(t0, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(k0.Published) != 0 || !next.Equal(t0.Add(23*time.Hour)) {
		t.Fatalf("fresh store: published %d, next %s", len(k0.Published), next)
	}
	// The rollover starts 23h in; a reopened store sees the same plan.
	k1, next, err := ks.Step(t0.Add(23*time.Hour+time.Second), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(k1.Published) != 1 || k1.ZSK.DNSKEY.KeyTag() != k0.ZSK.DNSKEY.KeyTag() || !next.Equal(t0.Add(24*time.Hour+time.Second)) {
		t.Fatalf("pre-publish: published %d, zsk %d (was %d), next %s", len(k1.Published), k1.ZSK.DNSKEY.KeyTag(), k0.ZSK.DNSKEY.KeyTag(), next)
	}
	newZSK := k1.Published[0].DNSKEY.KeyTag()
	re, err := OpenKeyStore(dir, "example.com", "ed25519")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		at        time.Duration
		zsk       uint16
		published int
	}{
		{23*time.Hour + 30*time.Minute, k0.ZSK.DNSKEY.KeyTag(), 1},
		{24*time.Hour + 2*time.Second, newZSK, 1},
		{26*time.Hour + 3*time.Second, newZSK, 0},
	}
	for _, tc := range tests {
		k, _, err := re.Step(t0.Add(tc.at), p)
		if err != nil {
			t.Fatal(err)
		}
		if k.ZSK.DNSKEY.KeyTag() != tc.zsk || len(k.Published) != tc.published || k.KSK.DNSKEY.KeyTag() != k0.KSK.DNSKEY.KeyTag() {
			t.Errorf("at +%s: zsk %d published %d, want zsk %d published %d", tc.at, k.ZSK.DNSKEY.KeyTag(), len(k.Published), tc.zsk, tc.published)
		}
	}
	if n := len(re.All()); n != 3 {
		t.Errorf("%d keys in the store, want 3", n)
	}
}

// Keys without .state files (dnssec-keygen's, or from before rollovers)
// are published and active; LoadOrCreateKeys returns the same keys again.
func TestKeysWithoutState(t *testing.T) {
	dir := t.TempDir()
	k1, err := LoadOrCreateKeys(dir, "example.org.", "")
	if err != nil {
		t.Fatal(err)
	}
	states, _ := filepath.Glob(filepath.Join(dir, "*.state"))
	if len(states) != 2 {
		t.Fatalf("%d state files, want 2", len(states))
	}
	for _, f := range states {
		os.Remove(f)
	}
	k2, err := LoadOrCreateKeys(dir, "example.org.", "")
	if err != nil {
		t.Fatal(err)
	}
	if k1.KSK.DNSKEY.KeyTag() != k2.KSK.DNSKEY.KeyTag() || k1.ZSK.DNSKEY.KeyTag() != k2.ZSK.DNSKEY.KeyTag() {
		t.Errorf("keys changed: %d/%d then %d/%d", k1.KSK.DNSKEY.KeyTag(), k1.ZSK.DNSKEY.KeyTag(), k2.KSK.DNSKEY.KeyTag(), k2.ZSK.DNSKEY.KeyTag())
	}
	os.WriteFile(filepath.Join(dir, "Kexample.org.+013+00001.key"), []byte("garbage\n"), 0o644)
	if _, err := OpenKeyStore(dir, "example.org.", ""); err == nil {
		t.Error("a broken key file was accepted")
	}
}
