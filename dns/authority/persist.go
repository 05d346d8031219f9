package authority

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/applayer/applayer/dns/zone"
)

// Secondary zones on disk: with a state directory, each transferred zone
// is kept under <state_dir>/secondary/ as
//
//	<zone>.zone      the last transferred copy (a master file), and
//	<zone>.refreshed the time of the last successful refresh (RFC 3339),
//
// each replaced atomically. After a restart the copy is served at once,
// before the primary is reached, until the SOA's expire runs out counted
// from that time, as NSD (xfrd.state) and Knot (its zone database) do; a
// copy already expired is not served.

// secondaryPaths returns the copy's and the timer's paths of a zone.
func (s *Server) secondaryPaths(key string) (copyPath, timerPath string) {
	name := stateName(key)
	dir := filepath.Join(s.cfg.StateDir, "secondary")
	return filepath.Join(dir, name+".zone"), filepath.Join(dir, name+".refreshed")
}

// saveSecondary persists a secondary zone's copy (when z is not nil: it
// was just transferred) and the time of the successful refresh.
func (s *Server) saveSecondary(src *source, z *zone.Zone, refreshed time.Time) {
	if s.cfg.StateDir == "" {
		return
	}
	copyPath, timerPath := s.secondaryPaths(src.key)
	if z != nil {
		var b bytes.Buffer
		for _, rr := range z.Records() {
			b.WriteString(rr.String())
			b.WriteByte('\n')
		}
		if err := writeAtomic(copyPath, b.Bytes()); err != nil {
			s.log.Warn("secondary zone: cannot keep the copy on disk", "zone", src.key, "err", err)
			return
		}
	}
	if err := writeAtomic(timerPath, []byte(refreshed.UTC().Format(time.RFC3339Nano)+"\n")); err != nil {
		s.log.Warn("secondary zone: cannot keep the refresh time on disk", "zone", src.key, "err", err)
	}
}

// restoreSecondary reads a secondary zone's copy and its refresh time. It
// returns nil when there is none, it is unreadable, or it has expired.
func (s *Server) restoreSecondary(src *source) (*zone.Zone, time.Time, error) {
	if s.cfg.StateDir == "" {
		return nil, time.Time{}, nil
	}
	copyPath, timerPath := s.secondaryPaths(src.key)
	tb, err := os.ReadFile(timerPath)
	if os.IsNotExist(err) {
		return nil, time.Time{}, nil
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("authority: secondary zone %s: %w", src.key, err)
	}
	refreshed, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(tb)))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("authority: secondary zone %s: %s: %w", src.key, timerPath, err)
	}
	f, err := os.Open(copyPath)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("authority: secondary zone %s: %w", src.key, err)
	}
	defer f.Close()
	z, err := zone.Parse(f, src.cfg.Origin, copyPath, false)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("authority: secondary zone %s: %w", src.key, err)
	}
	if age := s.deps.Now().Sub(refreshed); age > time.Duration(z.SOA.Expire)*time.Second {
		return nil, refreshed, fmt.Errorf("authority: secondary zone %s: copy on disk expired (last refreshed %s ago, SOA expire %ds)", src.key, age.Round(time.Second), z.SOA.Expire)
	}
	return z, refreshed, nil
}
