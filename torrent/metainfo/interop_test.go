package metainfo

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/applayer/applayer/internal/testkit"
)

// TestInteropMktorrent reads torrents made by mktorrent (single file and
// directory) and checks our info-hash against the one transmission-show
// computes for the same file, and our fields against mktorrent's flags.
func TestInteropMktorrent(t *testing.T) {
	mk := testkit.Peer(t, "mktorrent")
	show := testkit.Peer(t, "transmission-show")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "one.bin"), pattern(300000, 7))
	writeFile(t, filepath.Join(dir, "tree", "x", "a.bin"), pattern(70000, 8))
	writeFile(t, filepath.Join(dir, "tree", "b.bin"), pattern(5, 9))
	for _, src := range []string{"one.bin", "tree"} {
		t.Run(src, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "m.torrent")
			cmd := exec.Command(mk, "-a", "http://127.0.0.1:6969/announce,udp://127.0.0.1:6969", "-a", "http://127.0.0.2:6969/announce",
				"-p", "-l", "15", "-w", "http://127.0.0.1:8080/"+src, "-o", out, filepath.Join(dir, src))
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("mktorrent: %v\n%s", err, b)
			}
			m, err := ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if got := showHash(t, show, out); got != m.InfoHash.String() {
				t.Errorf("info-hash: ours %s, transmission-show %s", m.InfoHash, got)
			}
			if m.Info.PieceLength != 1<<15 || !m.Info.Private || len(m.AnnounceList) != 2 || len(m.AnnounceList[0]) != 2 ||
				len(m.URLList) != 1 || m.Info.Name != src {
				t.Errorf("fields: %+v", m)
			}
			if src == "tree" && (len(m.Info.Files) != 2 || strings.Join(m.Info.Files[1].Path, "/") != "x/a.bin") {
				t.Errorf("files: %+v", m.Info.Files)
			}
		})
	}
}

// TestInteropOursAccepted writes our torrents and has transmission-show
// and aria2c read them: same info-hash, name, piece count and files.
func TestInteropOursAccepted(t *testing.T) {
	show := testkit.Peer(t, "transmission-show")
	aria := testkit.Peer(t, "aria2c")
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "tree", "x", "a.bin"), pattern(70000, 8))
	writeFile(t, filepath.Join(dir, "tree", "b.bin"), pattern(40000, 9))
	m, err := Create(filepath.Join(dir, "tree"), CreateOptions{
		Trackers: [][]string{{"http://127.0.0.1:6969/announce"}, {"udp://127.0.0.1:6969"}},
		Private:  true, WebSeeds: []string{"http://127.0.0.1:8080/tree/"},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "ours.torrent")
	if err := os.WriteFile(p, m.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := showHash(t, show, p); got != m.InfoHash.String() {
		t.Errorf("transmission-show info-hash %s, ours %s", got, m.InfoHash)
	}
	b, err := exec.Command(aria, "--show-files", p).CombinedOutput()
	if err != nil {
		t.Fatalf("aria2c --show-files: %v\n%s", err, b)
	}
	s := string(b)
	for _, want := range []string{"Info Hash: " + m.InfoHash.String(), "Mode: multi", "The Number of Pieces: 7", "tree/b.bin", "tree/x/a.bin", "udp://127.0.0.1:6969", "http://127.0.0.1:8080/tree/"} {
		if !strings.Contains(s, want) {
			t.Errorf("aria2c output lacks %q:\n%s", want, s)
		}
	}
}

func showHash(t *testing.T, show, path string) string {
	t.Helper()
	b, err := exec.Command(show, path).CombinedOutput()
	if err != nil {
		t.Fatalf("transmission-show: %v\n%s", err, b)
	}
	m := regexp.MustCompile(`Hash: ([0-9a-f]{40})`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no hash in transmission-show output:\n%s", b)
	}
	return string(m[1])
}
