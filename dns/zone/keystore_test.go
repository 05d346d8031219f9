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

// TestKSKRolloverWaitsForDS walks the KeyStore through a KSK rollover:
// an early or stale confirmation is not taken, the DS file appears at
// SyncPublish, and the confirmation's time survives a reopen.
func TestKSKRolloverWaitsForDS(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	p := KeyPolicy{KSKLifetime: 24 * time.Hour, PublishWait: time.Hour, RetireWait: time.Hour, DSWait: 3 * time.Hour}
	ks, err := OpenKeyStore(dir, "example.com", "ed25519")
	if err != nil {
		t.Fatal(err)
	}
	k0, next, err := ks.Step(t0, p)
	if err != nil || !next.Equal(t0.Add(24*time.Hour)) {
		t.Fatalf("fresh store: next %s, err %v", next, err)
	}
	seen := filepath.Join(dir, "Kexample.com.ds-seen")
	if seen != ks.DSSeenFile() {
		t.Fatalf("DSSeenFile %s", ks.DSSeenFile())
	}
	// A confirmation left from before the rollover is discarded.
	if err := os.WriteFile(seen, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tStart := t0.Add(24 * time.Hour)
	k1, next, err := ks.Step(tStart, p)
	if err != nil || len(k1.KSKs) != 1 || k1.KSK.DNSKEY.KeyTag() != k0.KSK.DNSKEY.KeyTag() || !next.Equal(tStart.Add(time.Hour)) {
		t.Fatalf("rollover start: %d extra KSKs, next %s, err %v", len(k1.KSKs), next, err)
	}
	if _, err := os.Stat(seen); !os.IsNotExist(err) {
		t.Fatal("stale confirmation kept")
	}
	newTag := k1.KSKs[0].DNSKEY.KeyTag()
	dsFiles := func() []string { f, _ := filepath.Glob(filepath.Join(dir, "*.ds")); return f }
	if ks.DSConfirmed(tStart) || len(dsFiles()) != 0 {
		t.Fatal("DS written before the new DNSKEY set reached caches")
	}
	// At SyncPublish the DS file appears; hours later, without the
	// confirmation, both KSKs still sign and nothing is scheduled.
	for _, at := range []time.Duration{time.Hour, 10 * time.Hour} {
		k, next, err := ks.Step(tStart.Add(at), p)
		if err != nil || len(k.KSKs) != 1 || !next.IsZero() || len(dsFiles()) != 1 {
			t.Fatalf("+%s: %d extra KSKs, next %s, DS files %v, err %v", at, len(k.KSKs), next, dsFiles(), err)
		}
	}
	if err := os.WriteFile(seen, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tSeen := tStart.Add(11 * time.Hour) // before the new KSK is due in turn
	if !ks.DSConfirmed(tSeen) {
		t.Fatal("confirmation not noticed")
	}
	if _, next, err = ks.Step(tSeen, p); err != nil || !next.Equal(tSeen.Add(3*time.Hour)) {
		t.Fatalf("confirmed: next %s, err %v", next, err)
	}
	re, err := OpenKeyStore(dir, "example.com", "ed25519")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at        time.Duration
		extra     int
		published int
	}{{3*time.Hour - time.Second, 1, 0}, {3 * time.Hour, 0, 1}, {4 * time.Hour, 0, 0}} {
		k, _, err := re.Step(tSeen.Add(tc.at), p)
		if err != nil || len(k.KSKs) != tc.extra || len(k.Published) != tc.published {
			t.Fatalf("+%s: %d extra KSKs, %d published, err %v", tc.at, len(k.KSKs), len(k.Published), err)
		}
		if tc.extra == 0 && k.KSK.DNSKEY.KeyTag() != newTag {
			t.Fatalf("+%s: KSK %d, want %d", tc.at, k.KSK.DNSKEY.KeyTag(), newTag)
		}
	}
}
