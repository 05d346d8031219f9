package zone

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/internal/atomicfile"
)

// KeyTiming is when a key enters and leaves the DNSKEY set and the
// signing role (RFC 7583's Publish, Active, Retire and Remove events).
// A zero Published or Active means "since always" (a key with no state
// file); a zero Retired or Removed means "never".
type KeyTiming struct {
	Generated, Published, Active, Retired, Removed time.Time
	// SyncPublish (a new KSK) is when its DS may go to the parent: the
	// new DNSKEY set has reached every cache. DSPublish is when the
	// operator confirmed the parent publishes it (BIND's field names).
	SyncPublish, DSPublish time.Time
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
	// KSKLifetime is how long a KSK signs before a double-signature
	// rollover (RFC 6781 4.1.2) replaces it; 0 disables KSK rollovers.
	// The rollover waits for the operator's confirmation that the parent
	// publishes the new DS (DSSeenFile).
	KSKLifetime time.Duration
	// DSWait is how long after that confirmation the old KSK keeps
	// signing the DNSKEY set: the parent's DS TTL plus its propagation
	// delay, after which no validator holds the old DS.
	DSWait time.Duration
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
	log                 *slog.Logger
}

// SetLogger sets where the store reports a KSK rollover's steps (the new
// DS to hand to the parent, the confirmation seen, ...).
func (ks *KeyStore) SetLogger(l *slog.Logger) { ks.log = l }

func (ks *KeyStore) logger() *slog.Logger {
	if ks.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return ks.log
}

// DSSeenFile is the file the operator creates (any content) to confirm
// that the parent publishes the new KSK's DS: K<zone>.ds-seen in the key
// directory. The store removes it once the confirmation is recorded.
func (ks *KeyStore) DSSeenFile() string {
	return filepath.Join(ks.dir, strings.TrimSuffix(ks.prefix, ".")+".ds-seen")
}

// DSFile is where the store writes the DS of key (one line, master file
// format) for the operator to hand to the parent.
func (ks *KeyStore) DSFile(k *ManagedKey) string { return k.base + ".ds" }

// kskRolling returns the KSK a rollover introduces, when one is waiting
// for its DS to be confirmed, or nil.
func (ks *KeyStore) kskRolling(now time.Time) *ManagedKey {
	kskl := ks.activeKSKs(now)
	if len(kskl) < 2 {
		return nil
	}
	if n := kskl[len(kskl)-1]; n.Timing.DSPublish.IsZero() && !n.Timing.SyncPublish.IsZero() {
		return n
	}
	return nil
}

// DSConfirmed reports whether a KSK rollover waits at now for the
// parent's DS and the operator has confirmed it (DSSeenFile exists): the
// next Step records the confirmation.
func (ks *KeyStore) DSConfirmed(now time.Time) bool {
	n := ks.kskRolling(now)
	if n == nil || now.Before(n.Timing.SyncPublish) {
		return false
	}
	_, err := os.Stat(ks.DSSeenFile())
	return err == nil
}

// activeKSKs returns the KSKs published and signing at now, the oldest
// (by activation) first.
func (ks *KeyStore) activeKSKs(now time.Time) []*ManagedKey {
	var out []*ManagedKey
	for _, k := range ks.keys {
		if k.KSK() && k.Timing.ActiveAt(now) && k.Timing.PublishedAt(now) {
			out = append(out, k)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Timing.Active.Before(out[j].Timing.Active) })
	return out
}

// rollKSK drives the double-signature KSK rollover: when the only KSK's
// lifetime is up, a new KSK is published and signs the DNSKEY set beside
// it; once the new DNSKEY set has reached the caches (PublishWait) its DS
// is written to DSFile for the parent; when the operator confirms the
// parent publishes it (DSSeenFile), the old KSK stops signing DSWait
// later and leaves the DNSKEY set PublishWait (the DNSKEY TTL and the
// propagation delay) after that.
func (ks *KeyStore) rollKSK(now time.Time, p KeyPolicy) error {
	act := ks.activeKSKs(now)
	switch {
	case len(act) == 1 && p.KSKLifetime > 0 && act[0].Timing.Retired.IsZero():
		old := act[0]
		start := old.Timing.Active
		if start.IsZero() {
			start = old.Timing.Generated
		}
		if now.Before(start.Add(p.KSKLifetime)) {
			return nil
		}
		os.Remove(ks.DSSeenFile()) // a confirmation from an earlier rollover
		n, err := ks.generate(257, now, now)
		if err != nil {
			return err
		}
		n.Timing.SyncPublish = ceilSecond(now.Add(p.PublishWait))
		if err := n.writeState(); err != nil {
			return err
		}
		ks.logger().Info("KSK rollover started: new KSK published, DNSKEY set signed by both",
			"zone", ks.origin, "old", old.DNSKEY.KeyTag(), "new", n.DNSKEY.KeyTag(), "ds_ready", n.Timing.SyncPublish)
	case len(act) >= 2:
		n := act[len(act)-1]
		if n.Timing.SyncPublish.IsZero() || now.Before(n.Timing.SyncPublish) || !n.Timing.DSPublish.IsZero() {
			return nil
		}
		ds := n.DNSKEY.ToDS(dns.SHA256)
		if _, err := os.Stat(ks.DSFile(n)); err != nil {
			if err := atomicfile.Write(ks.DSFile(n), []byte(ds.String()+"\n"), 0o644); err != nil {
				return fmt.Errorf("zone: %w", err)
			}
			ks.logger().Warn("KSK rollover: hand the new DS to the parent, then create the confirmation file once the parent publishes it",
				"zone", ks.origin, "ds", ds.String(), "ds_file", ks.DSFile(n), "confirm", ks.DSSeenFile())
		}
		if _, err := os.Stat(ks.DSSeenFile()); err != nil {
			return nil // waiting for the operator
		}
		seen := now.UTC().Truncate(time.Second)
		n.Timing.DSPublish = seen
		if err := n.writeState(); err != nil {
			return err
		}
		retire := ceilSecond(seen.Add(p.DSWait))
		for _, old := range act[:len(act)-1] {
			old.Timing.Retired = retire
			old.Timing.Removed = ceilSecond(retire.Add(p.PublishWait))
			if err := old.writeState(); err != nil {
				return err
			}
		}
		os.Remove(ks.DSSeenFile())
		ks.logger().Info("KSK rollover: parent DS confirmed; the old KSK stops signing after the DS wait",
			"zone", ks.origin, "new", n.DNSKEY.KeyTag(), "retire_old", retire)
	}
	return nil
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
	// What a crash or a full disk left half-written: the temporary files
	// of atomic writes, and the .state.tmp files of earlier versions.
	if _, err := atomicfile.Clean(dir, ks.prefix+"+"); err != nil {
		return nil, fmt.Errorf("zone: key dir: %w", err)
	}
	old, _ := filepath.Glob(filepath.Join(dir, globEscape(ks.prefix)+"+*.state.tmp"))
	for _, f := range old {
		os.Remove(f)
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
	if err := ks.rollKSK(now, p); err != nil {
		return nil, time.Time{}, err
	}
	kskl := ks.activeKSKs(now)
	if len(kskl) > 0 {
		ksk = kskl[0]
	}
	for _, k := range ks.keys {
		if !k.Timing.ActiveAt(now) || !k.Timing.PublishedAt(now) || k.KSK() {
			continue
		}
		if zsk == nil || k.Timing.Active.After(zsk.Timing.Active) {
			zsk = k
		}
	}
	var err error
	if ksk == nil {
		if ksk, err = ks.generate(257, now, now); err != nil {
			return nil, time.Time{}, err
		}
		kskl = []*ManagedKey{ksk}
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
	for _, k := range kskl[1:] {
		keys.KSKs = append(keys.KSKs, k.KeyPair)
	}
	var next time.Time
	soon := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, k := range ks.keys {
		if k != zsk && !slices.Contains(kskl, k) && k.Timing.PublishedAt(now) {
			keys.Published = append(keys.Published, k.KeyPair)
		}
		t := k.Timing
		soon(t.Published)
		soon(t.Active)
		soon(t.Retired)
		soon(t.Removed)
		soon(t.SyncPublish)
	}
	if p.KSKLifetime > 0 && len(kskl) == 1 && ksk.Timing.Retired.IsZero() {
		start := ksk.Timing.Active
		if start.IsZero() {
			start = ksk.Timing.Generated
		}
		soon(start.Add(p.KSKLifetime))
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

// writeKeyFiles writes the key pair, each file atomically, the .private
// first: a key is only found (by its .key) once both are whole.
func writeKeyFiles(base string, kp KeyPair) error {
	if err := atomicfile.Write(base+".private", []byte(kp.DNSKEY.PrivateKeyString(kp.Private)), 0o600); err != nil {
		return fmt.Errorf("zone: %w", err)
	}
	if err := atomicfile.Write(base+".key", []byte(kp.DNSKEY.String()+"\n"), 0o644); err != nil {
		return fmt.Errorf("zone: %w", err)
	}
	return nil
}

const stateTime = "20060102150405"

var stateFields = []string{"Generated", "Published", "Active", "Retired", "Removed", "SyncPublish", "DSPublish"}

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
	case "SyncPublish":
		return &k.Timing.SyncPublish
	case "DSPublish":
		return &k.Timing.DSPublish
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
	if err := atomicfile.Write(k.base+".state", []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("zone: %w", err)
	}
	return nil
}
