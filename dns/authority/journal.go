package authority

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/miekg/dns"

	"github.com/applayer/applayer/dns/zone"
	"github.com/applayer/applayer/internal/atomicfile"
)

// The IXFR journal: with a state directory, each primary zone keeps two
// files under <state_dir>/journal/:
//
//	<zone>.zone   the version last served (a master file), and
//	<zone>.ixfr   the differences that led to it, oldest first, as the
//	              SOA-delimited sequence an IXFR carries (RFC 1995):
//	              old SOA, removed records, new SOA, added records, ...
//
// At start the snapshot is the "previous version": the zone loaded from its
// file is compared with it, so a change made while the server was down
// becomes one more difference, and secondaries still get IXFR. A signed
// zone re-signed at start takes the snapshot's serial plus one.

// stateName is a zone's file name stem in the state directory: the zone's
// name without the final dot ("root" for the root), path separators
// replaced.
func stateName(key string) string {
	name := strings.TrimSuffix(key, ".")
	if name == "" {
		name = "root"
	}
	return strings.NewReplacer("/", "_", "\\", "_").Replace(name)
}

// journalPaths returns the snapshot and journal paths of a zone.
func (s *Server) journalPaths(key string) (snap, journal string) {
	name := stateName(key)
	dir := filepath.Join(s.cfg.StateDir, "journal")
	return filepath.Join(dir, name+".zone"), filepath.Join(dir, name+".ixfr")
}

// restoreJournal reads a zone's snapshot and journal, when present and
// consistent (the journal ends at the snapshot's serial). It returns the
// snapshot (nil without one) and sets src.deltas.
func (s *Server) restoreJournal(src *source) *zone.Zone {
	if s.cfg.StateDir == "" {
		return nil
	}
	snapPath, jPath := s.journalPaths(src.key)
	f, err := os.Open(snapPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	prev, err := zone.Parse(bufio.NewReader(f), src.cfg.Origin, snapPath, false)
	if err != nil {
		s.log.Warn("ixfr journal: unreadable snapshot ignored", "zone", src.key, "err", err)
		return nil
	}
	deltas, err := readJournal(jPath)
	if err != nil {
		s.log.Warn("ixfr journal: unreadable journal ignored", "zone", src.key, "err", err)
		deltas = nil
	}
	if n := len(deltas); n > 0 && deltas[n-1].to.Serial != prev.SOA.Serial {
		s.log.Warn("ixfr journal: does not end at the snapshot's serial; ignored", "zone", src.key)
		deltas = nil
	}
	src.mu.Lock()
	src.deltas = deltas
	src.mu.Unlock()
	return prev
}

// readJournal parses a journal file (missing: no deltas).
func readJournal(path string) ([]delta, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	zp := dns.NewZoneParser(bytes.NewReader(data), ".", path)
	var out []delta
	var cur *delta
	adding := false
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		soa, isSOA := rr.(*dns.SOA)
		switch {
		case isSOA && (cur == nil || adding):
			out = append(out, delta{from: soa})
			cur, adding = &out[len(out)-1], false
		case isSOA:
			cur.to, adding = soa, true
		case cur == nil:
			return nil, fmt.Errorf("authority: journal %s: record before the first SOA", path)
		case adding:
			cur.add = append(cur.add, rr)
		default:
			cur.del = append(cur.del, rr)
		}
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("authority: journal: %w", err)
	}
	if cur != nil && !adding {
		return nil, fmt.Errorf("authority: journal %s: last difference has no new SOA", path)
	}
	for i := 1; i < len(out); i++ {
		if out[i].from.Serial != out[i-1].to.Serial {
			return nil, fmt.Errorf("authority: journal %s: serials do not follow (%d, %d)", path, out[i-1].to.Serial, out[i].from.Serial)
		}
	}
	return out, nil
}

// saveJournal writes z as the snapshot and the zone's deltas as its
// journal (each file replaced atomically). Zones too big for differences
// keep no journal.
func (s *Server) saveJournal(src *source, z *zone.Zone) {
	if s.cfg.StateDir == "" || z == nil {
		return
	}
	snapPath, jPath := s.journalPaths(src.key)
	if z.Len() > maxDiffRecords {
		os.Remove(snapPath)
		os.Remove(jPath)
		return
	}
	var snap bytes.Buffer
	for _, rr := range z.Records() {
		snap.WriteString(rr.String())
		snap.WriteByte('\n')
	}
	var j bytes.Buffer
	src.mu.Lock()
	for _, d := range src.deltas {
		for _, rr := range append(append(append([]dns.RR{d.from}, d.del...), d.to), d.add...) {
			j.WriteString(rr.String())
			j.WriteByte('\n')
		}
	}
	src.mu.Unlock()
	// The journal first: a crash between the two leaves a journal that
	// does not end at the snapshot's serial, which is then ignored.
	for _, f := range []struct {
		path string
		data []byte
	}{{jPath, j.Bytes()}, {snapPath, snap.Bytes()}} {
		if err := writeAtomic(f.path, f.data); err != nil {
			s.log.Warn("ixfr journal: write failed", "zone", src.key, "err", err)
			return
		}
	}
}

// writeAtomic replaces path with data: written to a temporary file,
// synced, renamed (a crash or a full disk leaves the old file whole).
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o644)
}

// cleanState removes what a crash or a full disk left half-written in the
// state dir's journal and zones directories: temporary files of atomic
// writes, and the "<file>.tmp" of earlier versions. Called once, in New.
func (s *Server) cleanState() {
	if s.cfg.StateDir == "" {
		return
	}
	for _, sub := range []string{"journal", "secondary"} {
		dir := filepath.Join(s.cfg.StateDir, sub)
		removed, err := atomicfile.Clean(dir, "")
		if err != nil {
			s.log.Warn("state dir: cleaning leftovers", "dir", dir, "err", err)
		}
		old, _ := filepath.Glob(filepath.Join(dir, "*.tmp"))
		for _, f := range old {
			if os.Remove(f) == nil {
				removed = append(removed, filepath.Base(f))
			}
		}
		if len(removed) > 0 {
			s.log.Info("state dir: removed leftovers of an interrupted write", "dir", dir, "files", removed)
		}
	}
}

// record remembers the step from old to z for IXFR and persists it.
func (s *Server) record(src *source, old, z *zone.Zone) {
	src.recordDelta(old, z)
	s.saveJournal(src, z)
}
