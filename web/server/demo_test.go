package server

import (
	"os"
	"path/filepath"
	"testing"
)

// The demo site's files keep one fixed, old modification time, so caches in
// the lab get heuristic freshness and ETags survive lab restarts.
func TestDemoSiteStableModTime(t *testing.T) {
	dir := t.TempDir()
	for range 2 {
		if err := WriteDemoSite(dir, 3); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"index.html", "style.css", filepath.Join("images", "img01.png")} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(demoModTime) {
			t.Errorf("%s modified %v, want %v", name, fi.ModTime(), demoModTime)
		}
	}
}
