package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// diskStore is the optional disk tier: one file per stored response
// (metadata as JSON, then the body, then a CRC-32C of both), named by a
// hash of its keys, so the cache's contents survive a restart. Files are
// written to a temporary file, fsynced and renamed into place; temporary
// files left by a crash are removed at start, and a file whose checksum
// doesn't match is never served (it is removed when read). An in-memory index (rebuilt from the
// files' metadata at start) maps primary keys to files; bodies are read
// only on a memory-tier miss.
type diskStore struct {
	dir    string
	budget int64

	mu    sync.Mutex
	byKey map[string][]*diskItem
	bytes int64
	seq   atomic.Uint64 // access clock
}

// diskItem is one file of the disk tier. seq is the access clock's value
// at its last use: the write, a read from disk, or a memory-tier hit on
// the entry loaded from or written to it (entry.disk points here).
type diskItem struct {
	file string
	key  string
	vkey string
	size int64
	seq  atomic.Uint64
}

// touch marks it as just used.
func (d *diskStore) touch(it *diskItem) { it.seq.Store(d.seq.Add(1)) }

// diskFormat is the version of the files' layout; files of another are
// removed at start.
const diskFormat = 2

// diskTmpPrefix starts the names of files being written.
const diskTmpPrefix = "tmp-"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// diskMeta is the stored form of an entry's metadata.
type diskMeta struct {
	Version     int         `json:"v"`
	Key         string      `json:"key"`
	VKey        string      `json:"vkey"`
	VaryNames   []string    `json:"vary,omitempty"`
	Status      int         `json:"status"`
	Header      http.Header `json:"header"`
	ReqTime     time.Time   `json:"req_time"`
	RespTime    time.Time   `json:"resp_time"`
	CorrInitAge int64       `json:"corr_init_age_ns"`
}

func openDisk(dir string, budget int64) (*diskStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cache: disk tier: %w", err)
	}
	d := &diskStore{dir: dir, budget: budget, byKey: map[string][]*diskItem{}}
	// Writes cut short (kill -9, a full disk) leave temporary files that
	// nothing else would ever remove.
	tmps, err := filepath.Glob(filepath.Join(dir, diskTmpPrefix+"*"))
	if err != nil {
		return nil, fmt.Errorf("cache: disk tier: %w", err)
	}
	for _, name := range tmps {
		os.Remove(name)
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.obj"))
	if err != nil {
		return nil, fmt.Errorf("cache: disk tier: %w", err)
	}
	type found struct {
		it  *diskItem
		mod time.Time
	}
	var items []found
	for _, name := range names {
		meta, size, mod, err := readMeta(name)
		if err == nil && meta.Version != diskFormat {
			err = errors.New("cache: disk entry of another format")
		}
		if err != nil {
			os.Remove(name) // a torn or foreign file
			continue
		}
		items = append(items, found{&diskItem{file: name, key: meta.Key, vkey: meta.VKey, size: size}, mod})
	}
	// The files' modification times carry the recency across restarts:
	// reads from disk set them.
	sort.Slice(items, func(i, j int) bool { return items[i].mod.Before(items[j].mod) })
	for _, f := range items {
		d.touch(f.it)
		d.byKey[f.it.key] = append(d.byKey[f.it.key], f.it)
		d.bytes += f.it.size
	}
	return d, nil
}

func readMeta(name string) (diskMeta, int64, time.Time, error) {
	var m diskMeta
	f, err := os.Open(name)
	if err != nil {
		return m, 0, time.Time{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return m, 0, time.Time{}, err
	}
	m, n, err := decodeMeta(f)
	if err == nil && st.Size() < int64(n)+4 {
		err = errors.New("cache: disk entry truncated")
	}
	return m, st.Size(), st.ModTime(), err
}

func decodeMeta(r io.Reader) (diskMeta, int, error) {
	var m diskMeta
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return m, 0, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > 16<<20 {
		return m, 0, errors.New("cache: disk entry metadata too large")
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return m, 0, err
	}
	if err := json.Unmarshal(buf, &m); err != nil {
		return m, 0, err
	}
	return m, 4 + int(n), nil
}

func (d *diskStore) fileFor(key, vkey string) string {
	h := sha256.Sum256([]byte(key + "\x00" + vkey))
	return filepath.Join(d.dir, hex.EncodeToString(h[:16])+".obj")
}

// put writes e to disk (atomically: a temporary file renamed into place)
// and links e to its file for access tracking.
func (d *diskStore) put(e *entry) error {
	meta, err := json.Marshal(diskMeta{Version: diskFormat, Key: e.key, VKey: e.vkey, VaryNames: e.varyNames, Status: e.status,
		Header: e.header, ReqTime: e.reqTime, RespTime: e.respTime, CorrInitAge: int64(e.corrInitAge)})
	if err != nil {
		return err
	}
	name := d.fileFor(e.key, e.vkey)
	tmp, err := os.CreateTemp(d.dir, diskTmpPrefix+"*")
	if err != nil {
		return fmt.Errorf("cache: disk tier: %w", err)
	}
	var hdr, sum [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(meta)))
	crc := crc32.Update(crc32.Update(crc32.Checksum(hdr[:], castagnoli), castagnoli, meta), castagnoli, e.body)
	binary.BigEndian.PutUint32(sum[:], crc)
	_, err = (&net.Buffers{hdr[:], meta, e.body, sum[:]}).WriteTo(tmp)
	if err == nil {
		// the data reaches the disk before the name does: a crash leaves
		// the old file or the new one, never a torn one under the name
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), name)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("cache: disk tier: %w", err)
	}
	size := int64(4 + len(meta) + len(e.body) + 4)
	it := &diskItem{file: name, key: e.key, vkey: e.vkey, size: size}
	d.touch(it)
	e.disk.Store(it)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.removeFileLocked(e.key, name)
	d.byKey[e.key] = append(d.byKey[e.key], it)
	d.bytes += size
	if d.bytes > d.budget {
		d.evictLocked(name)
	}
	return nil
}

func (d *diskStore) removeFileLocked(key, name string) {
	items := d.byKey[key]
	for i, it := range items {
		if it.file == name {
			d.bytes -= it.size
			items = append(items[:i:i], items[i+1:]...)
			break
		}
	}
	if len(items) == 0 {
		delete(d.byKey, key)
	} else {
		d.byKey[key] = items
	}
}

// evictLocked removes the least recently used files (never keep) until
// the tier is within 90% of its budget, so that evictions, which sort the
// index, are amortised over many writes.
func (d *diskStore) evictLocked(keep string) {
	type aged struct {
		it  *diskItem
		seq uint64 // a snapshot: hits move it concurrently
	}
	var all []aged
	for _, items := range d.byKey {
		for _, it := range items {
			if it.file != keep {
				all = append(all, aged{it, it.seq.Load()})
			}
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].seq < all[j].seq })
	low := d.budget - d.budget/10
	for _, a := range all {
		it := a.it
		if d.bytes <= low {
			break
		}
		os.Remove(it.file)
		d.removeFileLocked(it.key, it.file)
	}
}

// get loads the variant of key matching the request header h.
func (d *diskStore) get(key string, h http.Header) *entry {
	d.mu.Lock()
	items := append([]*diskItem(nil), d.byKey[key]...)
	d.mu.Unlock()
	var best *entry
	var bestIt *diskItem
	for _, it := range items {
		e, err := d.load(it.file)
		if err != nil || e.key != key || e.vkey != it.vkey {
			// torn, corrupted or foreign: never served, and removed
			d.mu.Lock()
			os.Remove(it.file)
			d.removeFileLocked(it.key, it.file)
			d.mu.Unlock()
			continue
		}
		if len(e.varyNames) > 0 && VaryKey(e.varyNames, h) != e.vkey {
			continue
		}
		if best == nil || e.moreRecent(best) {
			best, bestIt = e, it
		}
	}
	if best != nil {
		d.touch(bestIt)
		best.disk.Store(bestIt)
		now := time.Now()
		os.Chtimes(bestIt.file, now, now) // recency survives a restart
	}
	return best
}

func (d *diskStore) load(name string) (*entry, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return decodeEntry(b)
}

// decodeEntry decodes a disk tier file: its checksum, metadata and body.
func decodeEntry(b []byte) (*entry, error) {
	if len(b) < 8 {
		return nil, errors.New("cache: disk entry truncated")
	}
	data, sum := b[:len(b)-4], b[len(b)-4:]
	if crc32.Checksum(data, castagnoli) != binary.BigEndian.Uint32(sum) {
		return nil, errors.New("cache: disk entry checksum mismatch")
	}
	m, n, err := decodeMeta(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if m.Version != diskFormat {
		return nil, errors.New("cache: disk entry of another format")
	}
	if m.Status < 100 || m.Status > 999 {
		return nil, fmt.Errorf("cache: disk entry status %d", m.Status)
	}
	e := &entry{key: m.Key, vkey: m.VKey, varyNames: m.VaryNames, status: m.Status, header: m.Header,
		body: data[n:], reqTime: m.ReqTime, respTime: m.RespTime, corrInitAge: time.Duration(m.CorrInitAge)}
	if e.header == nil {
		e.header = http.Header{}
	}
	e.date = dateOf(e.header, e.respTime)
	return e, nil
}

// remove deletes every file of key.
func (d *diskStore) remove(key string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	items := d.byKey[key]
	for _, it := range items {
		os.Remove(it.file)
		d.bytes -= it.size
	}
	delete(d.byKey, key)
	return len(items)
}

// removeVariant deletes the file of one stored variant.
func (d *diskStore) removeVariant(key, vkey string) {
	name := d.fileFor(key, vkey)
	d.mu.Lock()
	defer d.mu.Unlock()
	os.Remove(name)
	d.removeFileLocked(key, name)
}

// removePrefix deletes every file whose primary key starts with prefix.
func (d *diskStore) removePrefix(prefix string) int {
	d.mu.Lock()
	var keys []string
	for k := range d.byKey {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	d.mu.Unlock()
	n := 0
	for _, k := range keys {
		n += d.remove(k)
	}
	return n
}
