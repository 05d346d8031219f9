package zone

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// KeyTiming is when a key enters and leaves the DNSKEY set and the
// signing role (RFC 7583's Publish, Active, Retire and Remove events).
// A zero Published or Active means "since always" (a key with no state
// file); a zero Retired or Removed means "never".
type KeyTiming struct {
	Generated, Published, Active, Retired, Removed time.Time
}

// PublishedAt reports whether the key is in the DNSKEY set at t.
func (kt KeyTiming) PublishedAt(t time.Time) bool {
	return !kt.Published.After(t) && (kt.Removed.IsZero() || t.Before(kt.Removed))
}

// ActiveAt reports whether the key signs at t.
func (kt KeyTiming) ActiveAt(t time.Time) bool {
	return !kt.Active.After(t) && (kt.Retired.IsZero() || t.Before(kt.Retired))
}

// ManagedKey is a key of a KeyStore with its timing.
type ManagedKey struct {
	KeyPair
	Timing KeyTiming
	base   string // path without .key/.private/.state
}

// KSK reports whether the key is a key-signing key (SEP flag).
func (k *ManagedKey) KSK() bool { return k.DNSKEY.Flags&dns.SEP != 0 }

// KeyPolicy drives automatic key management.
type KeyPolicy struct {
	// ZSKLifetime is how long a ZSK signs before a pre-publish rollover
	// (RFC 6781 4.1.1.1) replaces it; 0 disables rollovers.
	ZSKLifetime time.Duration
	// PublishWait is how long a new ZSK is published before it signs:
	// the DNSKEY TTL plus the propagation delay to the secondaries.
	PublishWait time.Duration
	// RetireWait is how long a retired ZSK stays published: the largest
	// TTL of the zone's signatures plus the propagation delay.
	RetireWait time.Duration
}

// KeyStore is a zone's keys in a directory: dnssec-keygen's
// K<zone>+<alg>+<tag>.key/.private files, with each key's timing in a
// .state file beside them (BIND's field names), so that a restarted
// server continues a rollover where it was.
type KeyStore struct {
	dir, origin, prefix string
	alg                 uint8
	keys                []*ManagedKey
	signer              *ManagedKey // the ZSK Step last returned
}

// OpenKeyStore reads the keys of algorithm alg for origin from dir
// (creating dir when missing).
func OpenKeyStore(dir, origin, alg string) (*KeyStore, error) {
	a, ok := algorithms[strings.ToLower(alg)]
	if !ok {
		return nil, fmt.Errorf("zone: unknown algorithm %q", alg)
	}
	origin = Key(origin)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("zone: key dir: %w", err)
	}
	ks := &KeyStore{dir: dir, origin: origin, prefix: "K" + origin, alg: a}
	if origin == "." {
		ks.prefix = "K."
	}
	files, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("%s+%03d+*.key", globEscape(ks.prefix), a)))
	sort.Strings(files)
	for _, f := range files {
		kp, err := readKey(f)
		if err != nil {
			return nil, err
		}
		mk := &ManagedKey{KeyPair: kp, base: strings.TrimSuffix(f, ".key")}
		if err := mk.readState(); err != nil {
			return nil, err
		}
		ks.keys = append(ks.keys, mk)
	}
	return ks, nil
}

// All returns every key of the store, removed ones included.
func (ks *KeyStore) All() []*ManagedKey { return append([]*ManagedKey(nil), ks.keys...) }

// Step brings the store to time now under policy p: it generates a KSK
// and a ZSK when none is usable, starts a ZSK rollover when the active
// ZSK's lifetime is about to end, and returns the keys to sign with at
// now (the active KSK and ZSK, plus the other published keys) and the
// next time the key set changes (zero when nothing is scheduled).
func (ks *KeyStore) Step(now time.Time, p KeyPolicy) (*Keys, time.Time, error) {
	var ksk, zsk *ManagedKey
	for _, k := range ks.keys {
		if !k.Timing.ActiveAt(now) || !k.Timing.PublishedAt(now) {
			continue
		}
		if k.KSK() {
			if ksk == nil {
				ksk = k
			}
		} else if zsk == nil || k.Timing.Active.After(zsk.Timing.Active) {
			zsk = k
		}
	}
	var err error
	if ksk == nil {
		if ksk, err = ks.generate(257, now, now); err != nil {
			return nil, time.Time{}, err
		}
	}
	if zsk == nil {
		if zsk, err = ks.generate(256, now, now); err != nil {
			return nil, time.Time{}, err
		}
	}
	if p.ZSKLifetime > 0 {
		if err := ks.rollZSK(zsk, now, p); err != nil {
			return nil, time.Time{}, err
		}
	}
	if err := ks.holdRetired(zsk, now, p); err != nil {
		return nil, time.Time{}, err
	}
	ks.signer = zsk
	keys := &Keys{KSK: ksk.KeyPair, ZSK: zsk.KeyPair}
	var next time.Time
	soon := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, k := range ks.keys {
		if k != ksk && k != zsk && k.Timing.PublishedAt(now) {
			keys.Published = append(keys.Published, k.KeyPair)
		}
		t := k.Timing
		soon(t.Published)
		soon(t.Active)
		soon(t.Retired)
		soon(t.Removed)
	}
	if p.ZSKLifetime > 0 && zsk.Timing.Retired.IsZero() {
		soon(ks.rollStart(zsk, p))
	}
	return keys, next, nil
}

// rollStart is when the rollover replacing zsk begins: early enough for
// its successor to be published PublishWait before zsk's lifetime ends.
func (ks *KeyStore) rollStart(zsk *ManagedKey, p KeyPolicy) time.Time {
	start := zsk.Timing.Active
	if start.IsZero() {
		start = zsk.Timing.Generated
	}
	return start.Add(p.ZSKLifetime - p.PublishWait)
}

// rollZSK starts the pre-publish rollover of zsk when it is due, and keeps
// a retiring key's removal at least RetireWait after its retirement.
func (ks *KeyStore) rollZSK(zsk *ManagedKey, now time.Time, p KeyPolicy) error {
	if !zsk.Timing.Retired.IsZero() {
		return nil // successor already scheduled
	}
	if now.Before(ks.rollStart(zsk, p)) {
		return nil
	}
	activate := ceilSecond(now.Add(p.PublishWait))
	if _, err := ks.generate(256, now, activate); err != nil {
		return err
	}
	zsk.Timing.Retired = activate
	zsk.Timing.Removed = ceilSecond(activate.Add(p.RetireWait))
	return zsk.writeState()
}

// holdRetired keeps a retired ZSK published for RetireWait after the
// zone last carried its signatures: the switch happens when the zone is
// next signed, which may be after the key's scheduled retirement. After
// a restart it is not known when the last signatures were served, so
// every retired key still published is held RetireWait from now.
func (ks *KeyStore) holdRetired(zsk *ManagedKey, now time.Time, p KeyPolicy) error {
	for _, k := range ks.keys {
		if k == zsk || k.KSK() || k.Timing.Retired.IsZero() || !k.Timing.PublishedAt(now) {
			continue
		}
		if ks.signer != nil && ks.signer != k {
			continue // not the key the zone was last signed with
		}
		if hold := ceilSecond(now.Add(p.RetireWait)); k.Timing.Removed.Before(hold) {
			k.Timing.Removed = hold
			if err := k.writeState(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (ks *KeyStore) generate(flags uint16, publish, active time.Time) (*ManagedKey, error) {
	for {
		kp, err := generateKey(ks.origin, ks.alg, flags)
		if err != nil {
			return nil, err
		}
		clash := false
		for _, k := range ks.keys {
			clash = clash || k.DNSKEY.KeyTag() == kp.DNSKEY.KeyTag()
		}
		if clash {
			continue // a key tag must name one key of the zone
		}
		base := filepath.Join(ks.dir, fmt.Sprintf("%s+%03d+%05d", ks.prefix, ks.alg, kp.DNSKEY.KeyTag()))
		if err := writeKeyFiles(base, kp); err != nil {
			return nil, err
		}
		// The state file's precision is a second: publish rounds down,
		// a later activation up.
		if active.After(publish) {
			active = ceilSecond(active)
		} else {
			active = publish.UTC().Truncate(time.Second)
		}
		publish = publish.UTC().Truncate(time.Second)
		mk := &ManagedKey{KeyPair: kp, base: base, Timing: KeyTiming{Generated: publish, Published: publish, Active: active}}
		if err := mk.writeState(); err != nil {
			return nil, err
		}
		ks.keys = append(ks.keys, mk)
		return mk, nil
	}
}

// ceilSecond rounds t up to a whole second (the state file's precision).
func ceilSecond(t time.Time) time.Time {
	t = t.UTC()
	if r := t.Truncate(time.Second); !r.Equal(t) {
		return r.Add(time.Second)
	}
	return t
}

func writeKeyFiles(base string, kp KeyPair) error {
	if err := os.WriteFile(base+".private", []byte(kp.DNSKEY.PrivateKeyString(kp.Private)), 0o600); err != nil {
		return fmt.Errorf("zone: %w", err)
	}
	if err := os.WriteFile(base+".key", []byte(kp.DNSKEY.String()+"\n"), 0o644); err != nil {
		return fmt.Errorf("zone: %w", err)
	}
	return nil
}

const stateTime = "20060102150405"

var stateFields = []string{"Generated", "Published", "Active", "Retired", "Removed"}

func (k *ManagedKey) field(name string) *time.Time {
	switch name {
	case "Generated":
		return &k.Timing.Generated
	case "Published":
		return &k.Timing.Published
	case "Active":
		return &k.Timing.Active
	case "Retired":
		return &k.Timing.Retired
	case "Removed":
		return &k.Timing.Removed
	}
	return nil
}

// readState reads the key's .state file; a key without one is published
// and active since always.
func (k *ManagedKey) readState() error {
	f, err := os.Open(k.base + ".state")
	if os.IsNotExist(err) {
		if st, err := os.Stat(k.base + ".key"); err == nil {
			k.Timing.Generated = st.ModTime().UTC().Truncate(time.Second)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("zone: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, ";") {
			continue
		}
		name, val, ok := strings.Cut(l, ":")
		if !ok {
			return fmt.Errorf("zone: %s.state:%d: want \"Field: value\"", k.base, line)
		}
		p := k.field(strings.TrimSpace(name))
		if p == nil {
			continue // fields of other tools (BIND's DNSKEYState, ...)
		}
		t, err := time.Parse(stateTime, strings.Fields(val + " x")[0])
		if err != nil {
			return fmt.Errorf("zone: %s.state:%d: %s: %w", k.base, line, name, err)
		}
		*p = t
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("zone: %w", err)
	}
	return nil
}

// writeState replaces the key's .state file atomically.
func (k *ManagedKey) writeState() error {
	var b strings.Builder
	fmt.Fprintf(&b, "; This is the state of key %d, for %s\n", k.DNSKEY.KeyTag(), k.DNSKEY.Hdr.Name)
	fmt.Fprintf(&b, "Algorithm: %d\n", k.DNSKEY.Algorithm)
	for _, name := range stateFields {
		if t := *k.field(name); !t.IsZero() {
			fmt.Fprintf(&b, "%s: %s\n", name, t.UTC().Format(stateTime))
		}
	}
	tmp := k.base + ".state.tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("zone: %w", err)
	}
	if err := os.Rename(tmp, k.base+".state"); err != nil {
		return fmt.Errorf("zone: %w", err)
	}
	return nil
}
